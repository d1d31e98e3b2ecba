"""Hydra sweeps (``mtl-train -m``): every job in its own folder, and a table of the jobs' metrics.

``per_job_output`` points a job's ``output_dir`` at Hydra's ``hydra.sweep.dir/hydra.sweep.subdir`` (the
job number), so no job overwrites another's checkpoint or report. ``SweepSummary`` (a Hydra callback,
registered in ``conf/train.yaml``) records each finished job's overrides and returned metric (the best
mean dev metric: what sweepers such as Optuna or Ax maximise) in ``<sweep dir>/sweep.jsonl`` and, when the
sweep ends, writes ``sweep.md`` (jobs ranked by the metric) and prints it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from mtl.types import MtlError


def override_key(override: str) -> str:
    """The key an override sets: ``+a.b=1`` -> ``a.b``, ``~x`` -> ``x``."""
    return override.split("=", 1)[0].lstrip("+~")


def per_job_output(cfg: DictConfig) -> bool:
    """In a sweep (``-m``), set ``output_dir`` to this job's folder (``hydra.sweep.dir/<job number>``) and
    return True; an ``output_dir`` given with ``-m`` would be one folder for every job, and is refused."""
    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return False
    if any(override_key(o) == "output_dir" for o in hc.overrides.task):
        raise MtlError(
            "output_dir cannot be set in a sweep (-m): every job writes to its own folder, "
            "<hydra.sweep.dir>/<job number>; set hydra.sweep.dir=... instead"
        )
    with open_dict(cfg):
        cfg.output_dir = hc.runtime.output_dir
    return True


class SweepSummary(Callback):
    """Hydra callback: each sweep job's metric in ``sweep.jsonl``, the ranked table in ``sweep.md``."""

    @staticmethod
    def _log(config: DictConfig) -> Path:
        return Path(config.hydra.sweep.dir) / "sweep.jsonl"

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        path = self._log(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")  # a rerun of the same sweep folder (resume=true) records its jobs anew

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        ok = job_return.status == JobStatus.COMPLETED
        value = job_return._return_value  # .return_value re-raises a failed job's exception
        record = {
            "job": int(config.hydra.job.num),
            "overrides": list(job_return.overrides or []),
            "metric": float(value) if ok and isinstance(value, int | float) else None,
            "error": None if ok else f"{type(value).__name__}: {value}",
            "output_dir": str(config.hydra.runtime.output_dir),
        }
        with self._log(config).open("a") as f:
            f.write(json.dumps(record) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = self._log(config)
        if not path.exists():
            return
        jobs = [json.loads(line) for line in path.read_text().splitlines() if line]
        table = sweep_table(jobs)
        path.with_suffix(".md").write_text(table + "\n")
        print(f"\n{table}\n\nsweep: {path.parent.resolve()}")


def sweep_table(jobs: list[dict[str, Any]]) -> str:
    """A Markdown table of sweep jobs, best metric first (failed jobs last, with their error); the
    overrides shown are those that differ between jobs (the ones shared by all are listed below).

    Example:
        >>> jobs = [{"job": 0, "overrides": ["encoder=tiny", "seed=1"], "metric": 0.5, "error": None},
        ...         {"job": 1, "overrides": ["encoder=tiny", "seed=2"], "metric": 0.75, "error": None}]
        >>> print(sweep_table(jobs))
        | job | overrides | mean dev metric |
        |---|---|---|
        | 1 | seed=2 | 0.7500 |
        | 0 | seed=1 | 0.5000 |
        <BLANKLINE>
        every job: encoder=tiny
    """
    common = set.intersection(*(set(j["overrides"]) for j in jobs)) if len(jobs) > 1 else set()
    rows = ["| job | overrides | mean dev metric |", "|---|---|---|"]
    for j in sorted(jobs, key=lambda j: (j["metric"] is None, -(j["metric"] or 0.0), j["job"])):
        shown = f"{j['metric']:.4f}" if j["metric"] is not None else f"failed: {j['error']}"
        rows.append(f"| {j['job']} | {' '.join(o for o in j['overrides'] if o not in common)} | {shown} |")
    shared = [o for o in jobs[0]["overrides"] if o in common] if jobs else []
    return "\n".join(rows + ([f"\nevery job: {' '.join(shared)}"] if shared else []))
