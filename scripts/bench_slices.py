"""Plain vs upweight vs slice-aware heads, with and without augmentation, over seeds, on weak labels.

For each task set (the six tweet domains: experiment=tweets; the spam pair: experiment=spam_weak), each
head type, each augmentation setting and each seed, runs `mtl-train` (a fresh process) and reads its
report: the test metric of every task overall and on every slice. Prints, per set and setting, the
overall metric (mean over tasks; mean and std over seeds), the worst slice (lowest mean test metric
among slices with at least --min-slice-n test rows), and the slice the plain head does worst on in dev,
with every head's test metric there. Finished runs are reused (delete the folder to rerun).

Run: .venv/bin/python scripts/bench_slices.py [--size quick|full] [--sets tweets,spam] [--seeds 0,1,2]
  quick: at most 1000 train rows per task, 2 epochs (1.5 to 3 min a run on 2 CPU cores); full: the
  experiments' own sizes (2-3 epochs, about 5 min a run). Writes outputs/bench/slices/<size>/results.json.
Slices are compared on the task's metric, except for tasks scored by F1 of the positive class, whose
slices are compared on accuracy (a slice without positives, like short sms, has F1 0 whatever the model).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETS = {
    "tweets": (
        "tweets",
        [f"tweets_{d}" for d in ("airline", "deflategate", "selfdriving", "apple", "coachella", "allergy")],
        "tasks/tweets.py:TFS",
    ),
    "spam": ("spam_weak", ["youtube", "sms"], "tasks/spam.py:TFS"),
}
HEADS = ("plain", "upweight", "slice_aware")


def run_one(
    folder: Path,
    experiment: str,
    tasks: list[str],
    head: str,
    seed: int,
    tfs: str | None,
    size: str,
    reuse_only: bool = False,
) -> dict[str, Any]:
    report = folder / "report.json"
    if not report.exists() and reuse_only:
        return {"failed": ["not run (--reuse-only)"]}
    if not report.exists():
        args = [f"experiment={experiment}", f"seed={seed}", f"output_dir={folder}"]
        for t in tasks:
            args.append(f"tasks.{t}.head.type={head}")
            if tfs:
                args.append(f"tasks.{t}.augment.tfs={tfs}")
            if size == "quick":
                args.append(f"++tasks.{t}.split.max_rows.train=1000")  # ++: add or override
        if size == "quick":
            args += ["trainer.epochs=2", "trainer.early_stopping_patience=0"]
        start = time.perf_counter()
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "mtl-train"), *args], capture_output=True, text=True, cwd=ROOT
        )
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-6:] or ["?"]
            print(f"  FAILED {folder.relative_to(ROOT)}: " + " | ".join(tail), flush=True)
            return {"failed": tail}
        print(f"  ran {folder.relative_to(ROOT)} in {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(report.read_text())


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def slice_score(task_metrics: dict[str, Any], sm: dict[str, Any]) -> float:
    """A slice's score: the task's metric, or accuracy where the task's metric is F1 of one class."""
    return float(sm["accuracy"] if task_metrics["metric_name"] == "f1" else sm["metric"])


def summarise(runs: dict[str, list[dict[str, Any]]], min_n: int) -> dict[str, Any]:
    """runs: head -> one report per seed. Overall and per-slice test metrics, mean/std over seeds."""
    out: dict[str, Any] = {}
    dev_plain: dict[str, list[float]] = {}
    for r in runs["plain"]:
        for task, m in r["metrics"]["dev"].items():
            for name, sm in m.get("slices", {}).items():
                if sm["n"] >= min_n:
                    dev_plain.setdefault(f"{task}/{name}", []).append(slice_score(m, sm))
    plain_worst_dev = min(dev_plain, key=lambda k: statistics.mean(dev_plain[k])) if dev_plain else None
    for head, reports in runs.items():
        overall = [statistics.mean(m["metric"] for m in r["metrics"]["test"].values()) for r in reports]
        slices: dict[str, list[float]] = {}
        sizes: dict[str, int] = {}
        for r in reports:
            for task, m in r["metrics"]["test"].items():
                for name, sm in m.get("slices", {}).items():
                    if sm["n"] >= min_n:
                        slices.setdefault(f"{task}/{name}", []).append(slice_score(m, sm))
                        sizes[f"{task}/{name}"] = sm["n"]
        per_slice = {
            k: dict(zip(("mean", "std"), mean_std(v), strict=True)) | {"n": sizes[k]}
            for k, v in slices.items()
        }
        worst = min(per_slice, key=lambda k: per_slice[k]["mean"]) if per_slice else None
        out[head] = {
            "overall": dict(zip(("mean", "std"), mean_std(overall), strict=True)),
            "worst_slice": worst,
            "worst": per_slice.get(worst) if worst else None,
            "plain_worst_dev_slice": plain_worst_dev,
            "on_plain_worst_dev_slice": per_slice.get(plain_worst_dev) if plain_worst_dev else None,
            "slices": per_slice,
            "seeds": len(reports),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["quick", "full"], default="quick")
    ap.add_argument("--sets", default="spam,tweets")
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--augment", choices=["both", "off", "on"], default="both")
    ap.add_argument("--min-slice-n", type=int, default=20)
    ap.add_argument("--reuse-only", action="store_true", help="summarise finished runs, start none")
    args = ap.parse_args()
    import torch

    seeds = [int(s) for s in args.seeds.split(",")]
    heads = args.heads.split(",")
    augs = {"both": [False, True], "off": [False], "on": [True]}[args.augment]
    base = ROOT / "outputs" / "bench" / "slices" / args.size
    print(
        f"machine: {platform.machine()}, python {platform.python_version()}, torch {torch.__version__}; "
        f"size {args.size}, seeds {seeds}, heads {heads}, slices with >= {args.min_slice_n} test rows"
    )
    results: dict[str, Any] = {}
    for set_name in args.sets.split(","):
        experiment, tasks, tfs = SETS[set_name]
        for aug in augs:
            key = f"{set_name} {'+aug' if aug else 'no aug'}"
            runs: dict[str, list[dict[str, Any]]] = {}
            failed = []
            for head in heads:
                for seed in seeds:
                    folder = base / set_name / ("aug" if aug else "noaug") / head / f"seed{seed}"
                    rep = run_one(
                        folder,
                        experiment,
                        tasks,
                        head,
                        seed,
                        tfs if aug else None,
                        args.size,
                        args.reuse_only,
                    )
                    if "failed" in rep:
                        failed.append(f"{head}/seed{seed}: {rep['failed']}")
                    else:
                        runs.setdefault(head, []).append(rep)
            results[key] = {
                "summary": summarise(runs, args.min_slice_n) if "plain" in runs else {},
                "failed": failed,
            }
    print(
        "\n| set | head | overall test (mean ± std) | worst test slice | its metric | plain's worst dev "
        "slice | its test metric |\n|---|---|---|---|---|---|---|"
    )
    for key, res in results.items():
        for head, s in res["summary"].items():
            o, w, p = s["overall"], s["worst"], s["on_plain_worst_dev_slice"]
            print(
                f"| {key} | {head} | {o['mean']:.4f} ± {o['std']:.4f} | {s['worst_slice']} (n={w['n']}) | "
                f"{w['mean']:.4f} ± {w['std']:.4f} | {s['plain_worst_dev_slice']} | "
                f"{p['mean']:.4f} ± {p['std']:.4f} |"
                if w and p
                else f"| {key} | {head} | {o['mean']:.4f} |"
            )
        for f in res["failed"]:
            print(f"| {key} | FAILED {f} |")
    for key, res in results.items():
        s = res["summary"]
        if "plain" in s and "slice_aware" in s and s["plain"]["on_plain_worst_dev_slice"]:
            gain = (
                s["slice_aware"]["on_plain_worst_dev_slice"]["mean"]
                - s["plain"]["on_plain_worst_dev_slice"]["mean"]
            )
            drop = s["plain"]["overall"]["mean"] - s["slice_aware"]["overall"]["mean"]
            ok = gain >= 0.03 and drop <= 0.005
            print(
                f"{key}: slice-aware vs plain on plain's worst dev slice {gain * 100:+.1f} points, overall "
                f"{-drop * 100:+.1f} points -> target (>= +3, >= -0.5) {'met' if ok else 'NOT met'}"
            )
    base.mkdir(parents=True, exist_ok=True)
    (base / "results.json").write_text(json.dumps(results, indent=2))
    print(f"written: {base / 'results.json'}")


if __name__ == "__main__":
    main()
