"""kNN vote extension at scale, side by side with the plain label model, on cached sentence vectors.

A synthetic weak-supervision problem the size of a large corpus: --rows rows (default 1M) of 384-d
normalised vectors (MiniLM's width) drawn around 500 centres, each centre of one of 5 classes; 50 LFs,
each voting on the rows of a few centres (right 75 % of the time), so that about 40 % of rows are
covered. The vectors are written once to a ``.npy`` file, as ``weak.embedding`` caches them. Then, each
in a fresh process (peak RSS is the process's own):

* ``plain``: the label model (mtl's Dawid-Skene) fit and predicted on L;
* ``knn``: the vectors loaded, every uncovered row's votes extended from its 10 nearest covered rows
  (``mtl.weak.neighbours.extend_votes``: faiss, IVF past 20k covered rows searching 8 lists, chunked),
  then the same label model on the extended L.

Reported: wall time and peak RSS of each, coverage before and after, the accuracy of the extended votes
and of the label model's argmax on every row (uncovered rows take the model's prior) against the
synthetic truth. Peak RSS is each process's VmHWM (imports included: about 0.6 GB of torch,
transformers and faiss). Targets (issue 13): the knn run under 5 minutes and 4 GB at 1M rows.

Run: .venv/bin/python scripts/bench_knn.py [--rows 1000000] [--repeats 1]
Writes outputs/bench/knn.json.
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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mtl.types import ABSTAIN  # noqa: E402
from mtl.weak.label_model import LabelModel  # noqa: E402
from mtl.weak.neighbours import extend_votes  # noqa: E402

DIM, CENTRES, CLASSES, LFS, K = 384, 500, 5, 50, 10
WORK = ROOT / "outputs" / "bench" / "knn"


def make_data(n: int) -> None:
    """Write vectors (float32 .npy), L (int16) and the truth for ``n`` rows, in chunks (low memory)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
    centre_class = rng.integers(0, CLASSES, CENTRES)
    which = rng.integers(0, CENTRES, n)
    y = centre_class[which].astype(np.int16)
    feats = np.lib.format.open_memmap(WORK / "features.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, 100_000):
        c = which[start : start + 100_000]
        x = centres[c] + 0.9 * rng.normal(size=(len(c), DIM)).astype(np.float32)
        feats[start : start + len(c)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    feats.flush()
    del feats
    L = np.full((n, LFS), ABSTAIN, dtype=np.int16)
    for j in range(LFS):  # each LF fires on the rows of 8 centres, 60 % of them, right 75 % of the time
        fires = np.isin(which, rng.choice(CENTRES, 8, replace=False)) & (rng.random(n) < 0.6)
        right = rng.random(n) < 0.75
        L[fires, j] = np.where(right[fires], y[fires], rng.integers(0, CLASSES, int(fires.sum())))
    np.save(WORK / "L.npy", L)
    np.save(WORK / "y.npy", y)


def worker(which: str) -> None:
    """One run in this fresh process; prints a JSON line."""
    L, y = np.load(WORK / "L.npy"), np.load(WORK / "y.npy")
    start = time.perf_counter()
    out: dict[str, float | int | str] = {"run": which, "rows": len(L)}
    if which == "knn":
        feats = np.load(WORK / "features.npy")
        t = time.perf_counter()
        ext = extend_votes(L, feats, L, feats, K, min_similarity=0.5)
        out["extend_s"] = time.perf_counter() - t
        new = (ext != ABSTAIN).any(1) & ~(L != ABSTAIN).any(1)
        votes = ext[new]
        out["extended_vote_accuracy"] = float((votes == y[new][:, None]).sum() / (votes != ABSTAIN).sum())
        out["coverage_before"] = float((L != ABSTAIN).any(1).mean())
        L = ext
    model = LabelModel(CLASSES).fit(L)
    pred = model.predict(L)
    out["seconds"] = time.perf_counter() - start
    out["coverage"] = float((L != ABSTAIN).any(1).mean())
    out["label_model_accuracy_all_rows"] = float((pred == y).mean())
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: of this program image alone, not of the parent that
    forked it, which ``getrusage``'s ``ru_maxrss`` may carry over)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--worker", choices=["data", "plain", "knn"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "data":
        make_data(args.rows)
        return
    if args.worker:
        worker(args.worker)
        return
    import faiss
    import torch

    WORK.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()  # the data in a process of its own too: this one stays small
    subprocess.run([sys.executable, __file__, "--worker", "data", "--rows", str(args.rows)], check=True)
    print(
        f"machine: {platform.machine()}, python {platform.python_version()}, numpy {np.__version__}, "
        f"torch {torch.__version__}, faiss {faiss.__version__}, threads {faiss.omp_get_max_threads()}; "
        f"data: {args.rows} rows x {DIM} dims, {LFS} LFs, {CLASSES} classes, made in "
        f"{time.perf_counter() - t:.0f} s"
    )
    runs: dict[str, list[dict]] = {"plain": [], "knn": []}
    for _ in range(args.repeats):
        for which in runs:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", which], capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise SystemExit(f"{which} failed:\n{proc.stderr[-3000:]}")
            runs[which].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\n| run | wall s (median of {args.repeats}) | peak RSS MB | coverage | label model accuracy |")
    print("|---|---|---|---|---|")
    for which, rs in runs.items():
        med = statistics.median(r["seconds"] for r in rs)
        print(
            f"| {which} | {med:.1f} | {max(r['peak_rss_mb'] for r in rs):.0f} | {rs[0]['coverage']:.3f} | "
            f"{rs[0]['label_model_accuracy_all_rows']:.3f} |"
        )
    k = runs["knn"][0]
    extend = statistics.median(r["extend_s"] for r in runs["knn"])
    print(
        f"\nknn: neighbour search and vote extension {extend:.1f} s; "
        f"coverage {k['coverage_before']:.3f} -> {k['coverage']:.3f}; extended votes right "
        f"{k['extended_vote_accuracy']:.3f} (the LFs' own: 0.75)"
    )
    (ROOT / "outputs" / "bench" / "knn.json").write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
