"""Applying labeling functions: mtl's ``apply_lfs`` against snorkel 0.10.0's appliers, side by side.

--rows texts (real texts of WRENCH youtube, sms and trec, cycled, each with its row number appended so
that no two rows are equal) x 20 Python LFs (keyword lists, regular expressions and small functions of
the text, the kinds users write), the same LF bodies wrapped for each library. Runs, interleaved over
repeats (median wall time): snorkel's ``PandasLFApplier`` (serial), snorkel's ``PandasParallelLFApplier``
(dask, 2 partitions) when it runs, mtl with 1 process and mtl with 2 processes (``num_proc``). mtl runs on
an in-memory ``datasets.Dataset`` (nothing cached, every run computes). The label matrices must be
equal. Target: mtl on 2 processes at least 5x snorkel's serial throughput.

Run: make bench-lf  (installs snorkel==0.10.0 into .venv), or
     .venv/bin/python scripts/bench_lf_apply.py [--rows 100000] [--repeats 3]
Writes outputs/bench/lf_apply.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from mtl.weak.apply import apply_lfs
from mtl.weak.lf import LabelingFunction

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "wrench"
ABSTAIN = -1

KEYWORDS = {
    "kw_subscribe": (["subscribe", "channel"], 1),
    "kw_free": (["free", "prize", "winner", "win"], 1),
    "kw_call": (["call", "txt", "text", "reply"], 1),
    "kw_check": (["check", "visit", "click"], 1),
    "kw_love": (["love", "great", "awesome", "nice"], 0),
    "kw_song": (["song", "music", "video", "lyrics"], 0),
    "kw_greet": (["hi", "hello", "hey", "thanks"], 0),
    "kw_question": (["what", "who", "how", "why", "when"], 0),
}
REGEXES = {
    "re_url": (r"https?://|www\.", 1),
    "re_phone": (r"\b0\d{9,10}\b", 1),
    "re_money": (r"[£$€]\s?\d+", 1),
    "re_caps_word": (r"\b[A-Z]{4,}\b", 1),
    "re_exclaim": (r"!{2,}", 1),
    "re_emoji": (r"[:;]-?[)(DP]", 0),
    "re_handle": (r"@\w+", 0),
    "re_number": (r"\b\d{5,}\b", 1),
}


def _keyword(words: list[str], label: int) -> Callable[[str], int]:
    rx = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
    return lambda t: label if rx.search(t) else ABSTAIN


def _regex(pattern: str, label: int) -> Callable[[str], int]:
    rx = re.compile(pattern)
    return lambda t: label if rx.search(t) else ABSTAIN


def bodies() -> dict[str, Callable[[str], int]]:
    """The 20 LF bodies, functions of the text."""
    out = {n: _keyword(w, y) for n, (w, y) in KEYWORDS.items()}
    out |= {n: _regex(p, y) for n, (p, y) in REGEXES.items()}
    out["short"] = lambda t: 0 if len(t.split()) < 5 else ABSTAIN
    out["long"] = lambda t: 1 if len(t.split()) > 25 else ABSTAIN
    out["caps_ratio"] = lambda t: 1 if sum(c.isupper() for c in t) > 0.3 * max(len(t), 1) else ABSTAIN
    out["digits"] = lambda t: 1 if sum(c.isdigit() for c in t) >= 6 else ABSTAIN
    return out


def texts(rows: int) -> list[str]:
    base = []
    for task in ("youtube", "sms", "trec"):
        for split in ("train", "valid", "test"):
            base += [
                r["data"]["text"] for r in json.loads((DATA / task / f"{split}.json").read_text()).values()
            ]
    return [f"{base[i % len(base)]} {i}" for i in range(rows)]


def run_mtl(data: list[str], num_proc: int) -> np.ndarray:
    lfs = [LabelingFunction(n, lambda x, f=f: f(x["text"])) for n, f in bodies().items()]
    ds = datasets.Dataset.from_dict({"text": data})  # in memory: nothing is cached
    return apply_lfs(ds, lfs, 2, num_proc=num_proc).L


def _snorkel_lfs() -> list[Any]:
    from snorkel.labeling import LabelingFunction as SnorkelLF

    # str(): dask infers the output type by calling the LFs on a row of NA values
    return [SnorkelLF(n, f=lambda x, f=f: f(str(x.text))) for n, f in bodies().items()]


def run_snorkel(data: list[str]) -> np.ndarray:
    import pandas as pd
    from snorkel.labeling import PandasLFApplier

    return np.asarray(PandasLFApplier(_snorkel_lfs()).apply(pd.DataFrame({"text": data}), progress_bar=False))


def run_snorkel_parallel(data: list[str]) -> np.ndarray:
    import pandas as pd
    from snorkel.labeling.apply.dask import PandasParallelLFApplier

    return np.asarray(
        PandasParallelLFApplier(_snorkel_lfs()).apply(pd.DataFrame({"text": data}), n_parallel=2)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    datasets.disable_progress_bars()
    data = texts(args.rows)
    runs: dict[str, Callable[[], np.ndarray]] = {
        "snorkel PandasLFApplier": lambda: run_snorkel(data),
        "snorkel PandasParallelLFApplier (dask, 2)": lambda: run_snorkel_parallel(data),
        "mtl apply_lfs, 1 process": lambda: run_mtl(data, 1),
        "mtl apply_lfs, 2 processes": lambda: run_mtl(data, 2),
    }
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
        f"{len(data)} rows x {len(bodies())} LFs, median of {args.repeats} (interleaved)"
    )
    times: dict[str, list[float]] = {k: [] for k in runs}
    failed: dict[str, str] = {}
    reference: np.ndarray | None = None
    for _ in range(args.repeats):
        for name, fn in runs.items():
            if name in failed:
                continue
            start = time.perf_counter()
            try:
                L = fn()
            except Exception as e:  # an applier that cannot run here is reported, not fatal
                failed[name] = f"{type(e).__name__}: {e}"
                print(f"  {name}: does not run here ({failed[name][:200]})", flush=True)
                continue
            times[name].append(time.perf_counter() - start)
            if reference is None:
                reference = L
            elif not np.array_equal(reference, L):
                raise SystemExit(f"{name}: its label matrix differs from the first applier's")
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    base = med.get("snorkel PandasLFApplier")
    print("\n| applier | median s | rows/s | vs snorkel serial |\n|---|---|---|---|")
    for name, t in med.items():
        ratio = f"{base / t:.2f}x" if base else "-"
        print(f"| {name} | {t:.2f} | {len(data) / t:,.0f} | {ratio} |")
    for name, why in failed.items():
        print(f"| {name} | did not run: {why[:120]} | | |")
    if base and "mtl apply_lfs, 2 processes" in med:
        r = base / med["mtl apply_lfs, 2 processes"]
        print(
            f"mtl on 2 processes vs snorkel serial: {r:.2f}x (target >= 5x: {'met' if r >= 5 else 'NOT met'})"
        )
    out = ROOT / "outputs" / "bench" / "lf_apply.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"rows": len(data), "lfs": len(bodies()), "seconds": times, "failed": failed}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
