"""LF analysis: coverage, overlaps, conflicts and (with gold) accuracy of each labeling function."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtl.types import ABSTAIN


def lf_summary(L: np.ndarray, names: Sequence[str], gold: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per LF, plus a final ``*all*`` row for the set.

    Columns: ``polarity`` (classes the LF voted), ``coverage`` (fraction of rows it votes on),
    ``overlaps`` (fraction of rows where it and another LF vote), ``conflicts`` (fraction of rows where
    another LF votes a different class) and, when ``gold`` is given (``ABSTAIN`` rows skipped),
    ``accuracy`` of its votes with their count ``n_gold``.

    Example:
        >>> rows = lf_summary(np.array([[0, 0], [1, -1], [-1, 0]]), ["a", "b"], np.array([0, 1, 1]))
        >>> rows[0]["coverage"], rows[1]["accuracy"]
        (0.6666666666666666, 0.5)
    """
    L = np.asarray(L)
    n, m = L.shape
    if len(names) != m:
        raise ValueError(f"{len(names)} LF names for a label matrix with {m} columns")
    voted = L != ABSTAIN
    n_votes = voted.sum(1)
    counts = (
        np.stack([np.equal(L, c).sum(1) for c in range(int(L.max(initial=0)) + 1)], axis=1)
        if n
        else np.zeros((0, 1))
    )
    rows: list[dict[str, Any]] = []
    denom = max(n, 1)
    for j, name in enumerate(names):
        col, on = L[:, j], voted[:, j]
        others = n_votes - on
        # another LF votes a class different from this LF's vote on the row
        disagree = on & ((others - (counts[np.arange(n), np.where(on, col, 0)] - 1)) > 0)
        row: dict[str, Any] = {
            "lf": name,
            "polarity": sorted(int(c) for c in np.unique(col[on])),
            "coverage": float(on.sum() / denom),
            "overlaps": float((on & (others > 0)).sum() / denom),
            "conflicts": float(disagree.sum() / denom),
        }
        if gold is not None:
            has = on & (np.asarray(gold) != ABSTAIN)
            row["n_gold"] = int(has.sum())
            row["accuracy"] = float((col[has] == np.asarray(gold)[has]).mean()) if has.any() else float("nan")
        rows.append(row)
    conflict_rows = (counts > 0).sum(1) > 1 if n else np.zeros(0, bool)
    total: dict[str, Any] = {
        "lf": "*all*",
        "polarity": sorted({c for r in rows for c in r["polarity"]}),
        "coverage": float((n_votes > 0).sum() / denom),
        "overlaps": float((n_votes > 1).sum() / denom),
        "conflicts": float(conflict_rows.sum() / denom),
    }
    if gold is not None:
        total["n_gold"] = int(sum(r["n_gold"] for r in rows))
        hits = sum(r["accuracy"] * r["n_gold"] for r in rows if r["n_gold"])
        total["accuracy"] = float(hits / total["n_gold"]) if total["n_gold"] else float("nan")
    rows.append(total)
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of ``lf_summary`` rows for the terminal."""
    has_gold = "accuracy" in rows[0]
    head = f"{'lf':<32} {'polarity':<12} {'coverage':>8} {'overlaps':>8} {'conflicts':>9}"
    head += f" {'accuracy':>8} {'n_gold':>6}" if has_gold else ""
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (
            f"{r['lf'][:32]:<32} {','.join(map(str, r['polarity']))[:12]:<12} {r['coverage']:>8.3f} "
            f"{r['overlaps']:>8.3f} {r['conflicts']:>9.3f}"
        )
        if has_gold:
            line += f" {r['accuracy']:>8.3f} {r['n_gold']:>6}"
        lines.append(line)
    return "\n".join(lines)


def write_summary(rows: list[dict[str, Any]], folder: str | Path, stem: str = "lf_analysis") -> None:
    """Write ``<stem>.csv`` and ``<stem>.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(rows, indent=2))
    with open(folder / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "polarity": " ".join(map(str, r["polarity"]))})
