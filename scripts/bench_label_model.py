"""Label models side by side: mtl's majority vote and Dawid-Skene vs snorkel 0.10.0, on the same L matrices.

Quality: test metric of each label model on WRENCH youtube and trec (the published LF votes, and for
youtube also with the LFs of tasks/spam.py added) and sms (the LFs of tasks/spam.py only: in the copy in
../shared/data the published votes of sms's dev and test rows do not belong to their texts, so no model
can be scored on them), fit on train without gold; mtl's ``auto``
picks its variant by the dev metric. Every model is scored by the argmax of its probabilities on all
test rows (uncovered rows get the model's prior), so coverage counts against every model alike.
Speed: median fit time over repeats on each set. Memory: peak RSS of fitting each model on a synthetic
L of --scale-rows x 50 LFs x 5 classes, each in a fresh process.

Run: make bench-label   (installs snorkel==0.10.0 into .venv first), or
     .venv/bin/python scripts/bench_label_model.py [--repeats 3] [--scale-rows 1000000]
Writes outputs/bench/label_model.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mtl.config import SourceConfig, TaskConfig  # noqa: E402
from mtl.metrics import compute_metrics  # noqa: E402
from mtl.prepare import load_task_splits  # noqa: E402
from mtl.task import Task  # noqa: E402
from mtl.weak import load_lfs  # noqa: E402
from mtl.weak.apply import apply_lfs  # noqa: E402
from mtl.weak.label_model import (  # noqa: E402
    LabelModel,
    MajorityVote,
    fit_or_majority_vote,
    select_label_model,
)

DATA = ROOT.parent / "shared" / "data" / "wrench"
SETS = {"youtube": (2, "accuracy"), "sms": (2, "f1"), "trec": (6, "accuracy")}


def wrench(task: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """L (published votes) and gold per split, read as published (no dedup), like snorkel users do."""
    out = {}
    for split, fname in (("train", "train"), ("dev", "valid"), ("test", "test")):
        rows = json.loads((DATA / task / f"{fname}.json").read_text()).values()
        out[split] = (np.array([r["weak_labels"] for r in rows]), np.array([r["label"] for r in rows]))
    return out


def with_our_lfs(task: str, published: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The tasks/spam.py LFs (after the published votes when ``published``), on the rows mtl trains on
    (deduplicated train)."""
    ref = {"youtube": "tasks/spam.py:YOUTUBE_LFS", "sms": "tasks/spam.py:SMS_LFS"}.get(task)
    if ref is None:
        return None
    cfg = TaskConfig(label_names=["ham", "spam"], source=SourceConfig(format="wrench", path=str(DATA / task)))
    dsd = load_task_splits(Task(task, cfg), ROOT / ".cache" / "bench")
    lfs = load_lfs(ref)
    out = {}
    for split in ("train", "dev", "test"):
        ds = dsd[split]
        L = apply_lfs(ds, lfs, 2).L
        if published:
            L = np.concatenate([np.array(list(ds["weak_labels"])), L], axis=1)
        out[split] = (L, np.array(list(ds["label"])))
    return out


def snorkel_models(k: int, y_dev: np.ndarray) -> dict[str, Callable[[np.ndarray], Any]]:
    from snorkel.labeling.model import LabelModel as SnorkelLM
    from snorkel.labeling.model import MajorityLabelVoter

    def fit(epochs: int, balance: list[float] | None) -> Callable[[np.ndarray], Any]:
        def run(L: np.ndarray) -> Any:
            m = SnorkelLM(cardinality=k, verbose=False)
            m.fit(L, n_epochs=epochs, class_balance=balance, seed=0, progress_bar=False)
            return m

        return run

    dev_balance = list((np.bincount(y_dev, minlength=k) + 1) / (len(y_dev) + k))
    return {
        "snorkel MajorityLabelVoter": lambda L: MajorityLabelVoter(cardinality=k),
        "snorkel LabelModel (defaults: 100 epochs)": fit(100, None),
        "snorkel LabelModel (500 epochs)": fit(500, None),
        "snorkel LabelModel (class balance from dev)": fit(100, dev_balance),
    }


def ours(k: int, metric: str, L_dev: np.ndarray, y_dev: np.ndarray) -> dict[str, Callable[[np.ndarray], Any]]:
    return {
        "mtl majority_vote": lambda L: MajorityVote(k).fit(L),
        "mtl dawid_skene (abstain_as_vote, uniform: the named default before 2026-12)": lambda L: LabelModel(
            k, True, "uniform"
        ).fit(L),
        "mtl dawid_skene (named default: missing-at-random, uniform, degenerate fits -> majority vote)": (
            lambda L: fit_or_majority_vote(LabelModel(k), L)[0]
        ),
        "mtl auto (variant picked on dev)": lambda L: select_label_model(L, L_dev, y_dev, k, metric)[0],
    }


def evaluate(
    name: str, data: dict[str, tuple[np.ndarray, np.ndarray]], k: int, metric: str, repeats: int
) -> list[dict]:
    (L, _), (L_dev, y_dev), (L_test, y_test) = data["train"], data["dev"], data["test"]
    rows = []
    candidates = {**ours(k, metric, L_dev, y_dev), **snorkel_models(k, y_dev)}
    for model_name, make in candidates.items():
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model = make(L)
            times.append(time.perf_counter() - t)
        pred = np.asarray(model.predict_proba(L_test)).argmax(1)
        m = compute_metrics(pred, y_test, k)
        rows.append(
            {
                "set": name,
                "model": model_name,
                metric: m[metric],
                "fit_s_median": statistics.median(times),
                "rows": len(L),
                "lfs": L.shape[1],
            }
        )
    return rows


def scale_worker(which: str, n: int) -> None:
    """Fit one model on a synthetic L in this (fresh) process and print peak RSS in MB."""
    rng = np.random.default_rng(0)
    m, k = 50, 5
    y = rng.integers(0, k, n).astype(np.int16)
    # built column by column as int16 so the high-water mark before the fit stays small
    L = np.full((n, m), -1, dtype=np.int16)
    for j in range(m):
        fires = rng.random(n) < 0.1
        right = rng.random(n) < 0.7
        L[fires, j] = np.where(right[fires], y[fires], rng.integers(0, k, int(fires.sum())))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if which == "snorkel":
        from snorkel.labeling.model import LabelModel as SnorkelLM

        SnorkelLM(cardinality=k, verbose=False).fit(L, n_epochs=100, seed=0, progress_bar=False)
    else:
        LabelModel(k, True, "uniform").fit(L)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "model": which,
                "rows": n,
                "peak_rss_mb": peak / 1024,
                "before_fit_mb": base / 1024,
                "fit_s": time.perf_counter() - t,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale-rows", type=int, default=1_000_000)
    ap.add_argument("--scale-worker", choices=["mtl", "snorkel"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scale_worker:
        scale_worker(args.scale_worker, args.scale_rows)
        return
    import snorkel
    import torch

    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {torch.__version__}, snorkel {snorkel.__version__}, "
        f"repeats {args.repeats}"
    )
    results: list[dict] = []
    for task, (k, metric) in SETS.items():
        if task == "sms":  # its published dev/test votes are misaligned: see the docstring
            ours_only = with_our_lfs(task, published=False)
            assert ours_only is not None
            results += evaluate(f"{task} (tasks/spam.py LFs)", ours_only, k, metric, args.repeats)
            continue
        results += evaluate(f"{task} (published LFs)", wrench(task), k, metric, args.repeats)
        extra = with_our_lfs(task)
        if extra is not None:
            results += evaluate(f"{task} (published + tasks/spam.py)", extra, k, metric, args.repeats)
    print(f"\n| set | label model | test metric | fit s (median of {args.repeats}) |\n|---|---|---|---|")
    for r in results:
        metric = "f1" if "f1" in r else "accuracy"
        print(f"| {r['set']} | {r['model']} | {metric} {r[metric]:.3f} | {r['fit_s_median']:.2f} |")
    scale = []
    for which in ("mtl", "snorkel"):
        proc = subprocess.run(
            [sys.executable, __file__, "--scale-worker", which, "--scale-rows", str(args.scale_rows)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            scale.append({"model": which, "error": proc.stderr.strip().splitlines()[-1:]})
        else:
            scale.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\nsynthetic L: {args.scale_rows} rows x 50 LFs x 5 classes, one fit each in a fresh process")
    for s in scale:
        if "error" in s:
            print(f"  {s['model']}: failed: {s['error']}")
        else:
            print(
                f"  {s['model']:<8} peak RSS {s['peak_rss_mb']:.0f} MB "
                f"(before fit {s['before_fit_mb']:.0f} MB), fit {s['fit_s']:.1f} s"
            )
    out = ROOT / "outputs" / "bench" / "label_model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quality_and_speed": results, "scale": scale}, indent=2))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
