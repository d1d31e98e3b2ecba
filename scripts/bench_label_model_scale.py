"""The label model at scale: mtl's Dawid-Skene vs snorkel 0.10.0 on 1M rows, and mtl alone on 10M rows.

(a) --rows (1,000,000) x 50 LFs x 5 classes, the synthetic L of scripts/bench_label_model.py: each LF fires
    on a row with probability 0.1, independently; its vote is the row's true class with probability 0.7,
    else a uniformly drawn class (so right 76 % of the time); about 5.0M votes. Three runs on the same L:
    mtl ``LabelModel(5)`` (the named default) on the dense int16 L, mtl on the same votes as a scipy CSR
    matrix (class + 1 stored, abstains left out), and snorkel's ``LabelModel(cardinality=5).fit(L,
    n_epochs=100, seed=0)`` (the defaults, as in scripts/bench_label_model.py).
(b) --big-rows (10,000,000) x 100 LFs x 10 classes at 10 % density, generated the same way but block by
    block straight into a CSR matrix (int8 values, int32 indices: never a dense n x m array); about 100M
    votes; mtl only.

Each run is a fresh process. Time: ``fit`` + ``predict_proba`` on all rows, median of --repeats
(--big-repeats for b) in that process. Memory: the process builds its input and imports its libraries,
then resets its peak RSS (``/proc/self/clear_refs``) and reads its RSS (``base``); ``peak`` is VmHWM after
the repeats, so ``peak - base`` is what fit + predict add over their input, and ``peak`` is the whole
process during them (input, interpreter and libraries included). Also reported: EM iterations (snorkel:
epochs), accuracy against the generating classes, and the share of rows where mtl and snorkel predict the
same class.

Run: .venv/bin/python scripts/bench_label_model_scale.py [--repeats 3] [--big-repeats 1] [--rows N]
     [--big-rows N] [--skip-snorkel] [--skip-big] [--baseline FILE]
snorkel 0.10.0 must be importable for its run (``make bench-label`` installs it into .venv); without it the
run is reported as failed and the rest goes on. --baseline FILE times another revision's label_model.py on
(a) too (e.g. ``git show REV:mtl/weak/label_model.py > /tmp/lm_old.py``; it runs as a module of mtl.weak).
Writes outputs/bench/label_model_scale.json (every run's figures, the ratios, the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DENSITY, RIGHT = 0.1, 0.7  # an LF fires on 10 % of rows; a vote is the true class with p 0.7, else random
MEDIUM = (50, 5)  # (a): LFs, classes
BIG = (100, 10)  # (b)


def dense_matrix(n: int, m: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(a)'s L (n x m int16, -1 = abstain) and true classes: the generator of scripts/bench_label_model.py."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n).astype(np.int16)
    L = np.full((n, m), -1, dtype=np.int16)
    for j in range(m):  # column by column, so that no n x m temporary exists beside L
        fires = rng.random(n) < DENSITY
        right = rng.random(n) < RIGHT
        L[fires, j] = np.where(right[fires], y[fires], rng.integers(0, k, int(fires.sum())))
    return L, y


def sparse_matrix(n: int, m: int, k: int, seed: int = 0, block: int = 1 << 16) -> tuple[Any, np.ndarray]:
    """(b)'s votes as an (n x m) CSR matrix storing class + 1 (int8), generated a block of rows at a time
    (a block x m mask at most, never n x m) into arrays sized once (the expected votes + 10 sd: the unused
    tail is never touched, so never resident), and the true classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n).astype(np.int8)
    mean = n * m * DENSITY
    room = int(mean + 10 * np.sqrt(mean * (1 - DENSITY))) + 1
    data, indices = np.empty(room, dtype=np.int8), np.empty(room, dtype=np.int32)
    indptr = np.zeros(n + 1, dtype=np.int32 if room < 2**31 else np.int64)  # int64 would widen indices too
    for s in range(0, n, block):
        fires = rng.random((min(block, n - s), m), dtype=np.float32) < DENSITY
        r, c = np.nonzero(fires)
        vote = np.where(rng.random(len(r), dtype=np.float32) < RIGHT, y[s + r], rng.integers(0, k, len(r)))
        a = indptr[s]
        data[a : a + len(r)], indices[a : a + len(r)] = vote + 1, c
        indptr[s + 1 : s + 1 + len(fires)] = a + np.cumsum(fires.sum(1))
    nnz = int(indptr[-1])
    return sp.csr_array((data[:nnz], indices[:nnz], indptr), shape=(n, m)), y


def _status(key: str) -> float:
    """VmRSS or VmHWM of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _release_freed_heap() -> None:
    """Hand the heap the generator freed back to the OS (glibc ``malloc_trim``), so that ``base`` is the
    input and not the generator's garbage; a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def worker(which: str, n: int, repeats: int, preds: str, baseline: str | None) -> dict[str, Any]:
    """One run in this (fresh) process: build the input, reset the peak, time fit + predict_proba."""
    m, k = BIG if which == "mtl-big" else MEDIUM
    if which == "mtl-big":
        L, y = sparse_matrix(n, m, k)
    else:
        L, y = dense_matrix(n, m, k)
        if which == "mtl-sparse":
            L = sp.csr_array(L + 1)
    if which == "snorkel":
        from snorkel.labeling.model import LabelModel as SnorkelLM

        def run() -> tuple[np.ndarray, int]:
            model = SnorkelLM(cardinality=k, verbose=False)
            model.fit(L, n_epochs=100, seed=0, progress_bar=False)
            return model.predict_proba(L), 100
    else:
        if which == "mtl-baseline":
            assert baseline is not None
            spec = importlib.util.spec_from_file_location("mtl.weak._baseline_label_model", baseline)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up
            spec.loader.exec_module(module)
            LabelModel = module.LabelModel
        else:
            from mtl.weak.label_model import LabelModel

        def run() -> tuple[np.ndarray, int]:
            model = LabelModel(k).fit(L)
            return model.predict_proba(L), model.n_iter

    votes = int(L.nnz) if sp.issparse(L) else int((L != -1).sum())
    _release_freed_heap()
    reset = _reset_peak()
    base = _status("VmRSS")
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        probs, iterations = run()
        times.append(time.perf_counter() - t)
        pred = np.asarray(probs).argmax(1).astype(np.int8)
        del probs
    peak = _status("VmHWM")
    np.save(preds, pred)
    return {
        "run": which,
        "rows": n,
        "lfs": m,
        "classes": k,
        "votes": votes,
        "fit_predict_s": times,
        "fit_predict_s_median": statistics.median(times),
        "iterations": iterations,
        "accuracy_vs_generating_class": float((pred == y).mean()),
        "rss_base_mb": base,
        "peak_rss_mb": peak,
        "peak_over_base_mb": peak - base,
        "peak_reset_after_input": reset,
    }


def spawn(which: str, n: int, repeats: int, preds: Path, baseline: str | None) -> dict[str, Any]:
    """Run ``worker`` in a fresh interpreter; its last stdout line is its JSON (an error row if it failed)."""
    cmd = [sys.executable, __file__, "--worker", which, "--rows", str(n), "--repeats", str(repeats)]
    cmd += ["--preds", str(preds)] + (["--baseline", baseline] if baseline else [])
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"run": which, "rows": n, "error": proc.stderr.strip().splitlines()[-1:], "process_s": wall}
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_s"] = wall  # input generation included
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="fit + predict repeats per run of (a)")
    ap.add_argument("--big-repeats", type=int, default=1, help="fit + predict repeats of (b)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of (a)")
    ap.add_argument("--big-rows", type=int, default=10_000_000, help="rows of (b)")
    ap.add_argument("--skip-snorkel", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--baseline", help="another revision's label_model.py, also timed on (a)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--preds", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.repeats, args.preds, args.baseline)))
        return

    t0 = time.perf_counter()
    runs = ["mtl-dense", "mtl-sparse"] + ([] if args.skip_snorkel else ["snorkel"])
    runs += ["mtl-baseline"] if args.baseline else []
    out: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        "versions": _versions(),
        "generator": {"density": DENSITY, "p_true_class": RIGHT, "seed": 0},
        "medium": [],
        "big": None,
    }
    with tempfile.TemporaryDirectory() as tmp:
        preds = {}
        for which in runs:
            preds[which] = Path(tmp) / f"{which}.npy"
            out["medium"].append(spawn(which, args.rows, args.repeats, preds[which], args.baseline))
            print(_line(out["medium"][-1]), flush=True)
        ok = {r["run"]: r for r in out["medium"] if "error" not in r}
        if "snorkel" in ok:
            for name in [r for r in ok if r != "snorkel"]:
                mine, theirs = ok[name], ok["snorkel"]
                ok[name]["vs_snorkel"] = {
                    "speed_up": theirs["fit_predict_s_median"] / mine["fit_predict_s_median"],
                    "memory_share": mine["peak_over_base_mb"] / theirs["peak_over_base_mb"],
                    "same_prediction": float((np.load(preds[name]) == np.load(preds["snorkel"])).mean()),
                }
                print(f"  {name} vs snorkel: {ok[name]['vs_snorkel']}", flush=True)
        if not args.skip_big:
            out["big"] = spawn("mtl-big", args.big_rows, args.big_repeats, Path(tmp) / "big.npy", None)
            print(_line(out["big"]), flush=True)
    out["wall_s"] = time.perf_counter() - t0
    path = ROOT / "outputs" / "bench" / "label_model_scale.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wall {out['wall_s']:.0f} s; written: {path}")


def _line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['run']}: failed: {r['error']}"
    return (
        f"{r['run']:<12} {r['rows']:>10,} x {r['lfs']} x {r['classes']} ({r['votes']:,} votes): fit+predict "
        f"{r['fit_predict_s_median']:.2f} s (median of {len(r['fit_predict_s'])}), {r['iterations']} "
        f"iterations (snorkel: epochs), peak RSS {r['peak_rss_mb']:.0f} MB "
        f"(+{r['peak_over_base_mb']:.0f} over {r['rss_base_mb']:.0f} MB after input), "
        f"accuracy {r['accuracy_vs_generating_class']:.4f}"
    )


def _versions() -> dict[str, str]:
    import scipy

    versions = {"numpy": np.__version__, "scipy": scipy.__version__}
    try:
        import snorkel
        import torch

        versions |= {"snorkel": snorkel.__version__, "torch": torch.__version__}
    except ImportError:
        pass
    return versions


if __name__ == "__main__":
    main()
