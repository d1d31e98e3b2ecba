"""``mtl-bench``: run a benchmark's transfer setups over seeds; write a results table and plots.

Usage: ``mtl-bench bench=spam [size=quick] [force=true] [bench.seeds=[0,1]] [output_dir=...]``
(Hydra overrides of ``conf/benchmark.yaml``; ``conf/bench/*.yaml`` are the benchmarks).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf

from mtl.bench import expand, plots, run_cell, summarise, validate
from mtl.cli import resolved, user_errors
from mtl.cli.train import train
from mtl.config import CONF_DIR, BenchSpec, check_config, shipped_tasks
from mtl.types import MtlError


def _run_train(overrides: list[str]) -> dict:
    cfg = compose("train", overrides=overrides)
    return {**train(cfg, echo=False), "config": resolved(cfg)}


@user_errors
def run(overrides: list[str]) -> Path:
    """Compose ``benchmark`` with ``overrides``, run every cell, write the table and plots; return the
    output folder."""
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        try:
            cfg = compose("benchmark", overrides=overrides)
        except HydraException as e:  # an unknown benchmark (bench=nosuch), a mistyped key, a bad value
            why = f": {str(e.__cause__).splitlines()[0]}" if e.__cause__ else ""  # "Invalid value 'x', ..."
            raise MtlError(f"mtl-bench {' '.join(overrides)}: {e}{why}") from e
        check_config(cfg)
        spec: BenchSpec = OmegaConf.to_object(cfg.bench)  # type: ignore[assignment]
        validate(spec, shipped_tasks())
        out = Path(cfg.output_dir)
        # a cell is the unit of reuse: an interrupted cell reruns, so no resumable state is written
        base = [
            f"data_root={cfg.data_root}",
            f"cache_dir={cfg.cache_dir}",
            "trainer.save_state_every_steps=-1",
        ]
        cells = expand(spec, cfg.size, out, base)
        pre = list({c.pretrain.key: c.pretrain for c in cells if c.pretrain is not None}.values())
        todo = [*pre, *cells]
        for i, cell in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {cell.setup} seed {cell.seed} -> {cell.folder}", flush=True)
            res = run_cell(cell, _run_train, cfg.force, cfg.keep_checkpoints)
            status = res["status"] + (" (finished before: reused)" if res.get("reused") else "")
            print(f"[{i}/{len(todo)}] {status}" + (f": {res['error']}" if res["status"] != "ok" else ""))
        rows = summarise(spec, cells, out, cfg.size)
        written = plots(spec, rows, cells, out)
    print((out / "results.md").read_text())
    print("written:", ", ".join(str(p) for p in [out / "results.md", out / "results.csv", *written]))
    return out


def benchmarks(conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """The shipped benchmarks (``conf/bench/*.yaml``), each with the first line of its file's comment."""
    out = {}
    for path in sorted((conf_dir / "bench").glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        out[path.stem] = first.lstrip("# ").split("  Run:")[0]
    return out


def usage() -> str:
    """``mtl-bench --help``: what it does, the common invocations and the benchmarks."""
    names = benchmarks()
    listing = "\n".join(f"  {name:<14} {about}" for name, about in names.items())
    return f"""mtl-bench: run a benchmark's transfer setups over seeds (one mtl-train run per cell, finished
cells reused), then write results.md/results.csv (per task and setup: mean and spread over seeds) and
plots in output_dir (default outputs/bench/<bench>/<size>).

Common invocations:
  mtl-bench bench=spam                    full size: MiniLM, the seeds of conf/bench/spam.yaml
  mtl-bench bench=sentiment size=quick    tiny encoder, a few steps, one seed: checks the pipeline in minutes
  mtl-bench bench=trec 'bench.seeds=[0,1,2,3,4]' force=true   more seeds; rerun finished cells
  mtl-bench bench=spam keep_checkpoints=true                  keep every cell's checkpoint
  mtl-bench bench=weak_vs_gold 'bench.tasks=[mine]' bench.folds_per_seed=1
                                          do my task's weak labels beat its dev gold labels alone?

Benchmarks (bench=NAME; conf/bench/NAME.yaml):
{listing}

Keys (Hydra overrides of conf/benchmark.yaml): bench, size (full|quick), force, keep_checkpoints,
output_dir, data_root, cache_dir, and any bench.* key (bench.seeds, bench.setups.<setup>.overrides...).
The README's "Benchmarks" section is the reference."""


def main() -> None:
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(usage())
        return
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
