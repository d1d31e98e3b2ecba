"""``mtl-label``: per task, apply the LFs, print the LF analysis, fit and pick a label model, report it.

The results land in the cache that ``mtl-train`` reads for ``labels: weak``, and are copied into the
run folder (``<task>/lf_analysis.csv``, ``summary.json``, ``train_probs.npy``, ``label_model.json``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from mtl.cli import run_tasks, user_errors
from mtl.cli.sweep import per_job_output
from mtl.config import CONF_DIR
from mtl.prepare import load_task_splits
from mtl.weak.analysis import format_summary
from mtl.weak.pipeline import weak_label


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="label")
@user_errors
def main(cfg: DictConfig) -> float:
    per_job_output(cfg)  # a sweep job (-m) writes to its own folder
    scores = []
    for name, task in run_tasks(cfg).items():
        metric = task.metric.value
        dsd = load_task_splits(task, cfg.cache_dir, cfg.seed)
        wl = weak_label(task, dsd, cfg.cache_dir)
        s = wl.summary
        print(f"\n== {name}: {len(wl.lf_names)} LFs, analysis on dev gold ({s['dev']['rows']} rows)\n")
        print(format_summary(wl.analysis))
        print(f"\nlabel model: {s['label_model']} (uncovered train rows: {s['uncovered_policy']})")
        for row in s["selection"]:
            print(f"  candidate {row['label_model']:<58} dev {metric} {row[f'dev_{metric}']:.4f}")
        for split in ("train", "dev", "test"):
            m = s[split]
            print(
                f"  {split:<5} coverage {m['coverage']:.3f}  {metric} all rows "
                f"{m[f'{metric}_all_rows']:.4f}  covered rows {m[f'{metric}_covered_rows']:.4f}"
            )
        if s.get("calibration"):
            c = s["calibration"]
            print(
                f"  calibrated on dev: temperature {c['temperature']:.3g}, dev log-loss "
                f"{c['dev_nll_before']:.3f} -> {c['dev_nll_after']:.3f}, mean train confidence "
                f"{c['train_confidence_before']:.3f} -> {c['train_confidence_after']:.3f}"
            )
        if s["lf_failures"]:
            print(f"  LF failures recorded as abstains: {s['lf_failures']}")
        kept = int((wl.train_probs.sum(1) > 0).sum())
        print(f"  training rows with a target: {kept} of {len(wl.train_probs)}")
        shutil.copytree(wl.folder, Path(cfg.output_dir) / name, dirs_exist_ok=True)
        scores.append(s["dev"][f"{metric}_all_rows"])
    print(f"\nwritten: {Path(cfg.output_dir).resolve()}")
    return float(np.mean(scores))


if __name__ == "__main__":
    main()
