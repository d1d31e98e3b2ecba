"""Applying LFs to a ``datasets.Dataset``: batched, optionally in parallel processes, cached by ``datasets``.

The result is a label matrix L (n x m, int16, ``ABSTAIN`` = -1) with one column per LF, in LF order.
``Dataset.map`` fingerprints the LFs (their code and resources), so re-applying unchanged LFs to a
dataset that lives on disk reads the cached result instead of running them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np

from mtl.types import ABSTAIN, MtlError
from mtl.weak.lf import BatchLabelingFunction, Example, LabelingFunction


class LFApplicationError(MtlError):
    """An LF raised or returned something other than a class index or ABSTAIN; names the LF and the row."""


@dataclass
class LFOutput:
    """A label matrix and, with ``fault_tolerant``, how many rows each LF failed on (recorded as abstains)."""

    L: np.ndarray
    names: list[str]
    failures: dict[str, int] = field(default_factory=dict)


def _check_names(lfs: Sequence[LabelingFunction]) -> list[str]:
    names = [lf.name for lf in lfs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MtlError(f"{lfs[0].kind} names must be unique; repeated: {dupes}")
    if not names:
        raise MtlError("no labeling or slicing functions given")
    return names


def _vote(
    lf: LabelingFunction, x: Example, row: int, cardinality: int, fault_tolerant: bool
) -> tuple[int, bool]:
    try:
        v = lf(x)
    except Exception as e:
        if fault_tolerant:
            return ABSTAIN, True
        text = str(x.get("text", ""))[:60]
        raise LFApplicationError(
            f"{lf.kind} {lf.name!r} failed on row {row} ({text!r}): {type(e).__name__}: {e}"
        ) from e
    return _check_vote(lf, v, row, cardinality, fault_tolerant)


def label_rows(
    examples: Sequence[Example],
    rows: Sequence[int],
    lfs: Sequence[LabelingFunction],
    cardinality: int,
    fault_tolerant: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The votes (len(examples) x len(lfs), int16) of ``lfs`` on ``examples`` and which of them failed
    (bool): the one labeling loop of every backend, so each gives the same matrix and the same errors.
    ``rows`` are the examples' row numbers in their split, for error messages."""
    n = len(examples)
    L = np.empty((n, len(lfs)), dtype=np.int16)
    failed = np.zeros((n, len(lfs)), dtype=bool)
    for j, lf in enumerate(lfs):
        if isinstance(lf, BatchLabelingFunction):
            L[:, j] = ABSTAIN
            try:
                batch_votes = lf.vote_batch(list(examples))
            except Exception as e:
                if not fault_tolerant:
                    raise LFApplicationError(
                        f"{lf.kind} {lf.name!r} failed on rows {rows[0]}..{rows[-1]}: {type(e).__name__}: {e}"
                    ) from e
                failed[:, j] = True
                batch_votes = []
            for i, v in enumerate(batch_votes):
                L[i, j], failed[i, j] = _check_vote(lf, v, rows[i], cardinality, fault_tolerant)
            continue
        for i, x in enumerate(examples):
            try:  # the fast path: a valid vote is kept as is; anything else goes through _vote
                v = lf(x)
                ok = type(v) is int and ABSTAIN <= v < cardinality
            except Exception:
                ok = False
            if not ok:  # _vote runs the LF again and raises, or records the failure
                v, failed[i, j] = _vote(lf, x, rows[i], cardinality, fault_tolerant)
            L[i, j] = v
    return L, failed


def apply_lfs(
    ds: datasets.Dataset,
    lfs: Sequence[LabelingFunction],
    cardinality: int,
    *,
    num_proc: int | None = None,
    batch_size: int = 1000,
    fault_tolerant: bool = False,
) -> LFOutput:
    """Apply ``lfs`` to every row of ``ds`` and return the label matrix.

    Args:
        ds: rows as dicts (at least the fields the LFs read).
        lfs: labeling functions; their names must be unique.
        cardinality: number of classes; a vote outside ``-1..cardinality-1`` is an error.
        num_proc: worker processes (``Dataset.map``); None or 1 runs in this process.
        batch_size: rows per map batch (batch LFs see this many texts at a time).
        fault_tolerant: record an LF that raises (or returns a bad value) as an abstain, count it per LF,
            and go on; otherwise the first failure stops with an error naming the LF and the row.
    """
    names = _check_names(lfs)
    lf_list = list(lfs)

    def label_batch(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        keys = list(batch)
        examples = [{k: batch[k][i] for k in keys} for i in range(len(indices))]
        L, failed = label_rows(examples, indices, lf_list, cardinality, fault_tolerant)
        return {"__L": L.tolist(), "__failed": failed.tolist()}

    out = ds.map(
        label_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        num_proc=num_proc if num_proc and num_proc > 1 else None,  # datasets pools even num_proc=1
        remove_columns=ds.column_names,
        desc="labeling functions",
    )
    L = _matrix(out, "__L", len(lf_list)).astype(np.int16)
    failed = _matrix(out, "__failed", len(lf_list)).astype(bool)
    failures = {n: int(c) for n, c in zip(names, failed.sum(0), strict=True) if c}
    return LFOutput(L, names, failures)


def _matrix(ds: datasets.Dataset, column: str, width: int) -> np.ndarray:
    """A column of equal-length lists as an (n x width) array, read from Arrow in one go (not row by row)."""
    chunks = [c.flatten().to_numpy(zero_copy_only=False) for c in ds.data.column(column).chunks]
    flat = np.concatenate(chunks) if chunks else np.zeros(0)
    return flat.reshape(len(ds), width)


def _check_vote(
    lf: LabelingFunction, v: Any, row: int, cardinality: int, fault_tolerant: bool
) -> tuple[int, bool]:
    if not isinstance(v, int | np.integer) or isinstance(v, bool) or not ABSTAIN <= v < cardinality:
        if fault_tolerant:
            return ABSTAIN, True
        raise LFApplicationError(
            f"{lf.kind} {lf.name!r} returned {v!r} on row {row}; expected ABSTAIN (-1) or a class index "
            f"in 0..{cardinality - 1}"
        )
    return int(v), False


def label_matrix_from_column(ds: datasets.Dataset, column: str, cardinality: int) -> LFOutput:
    """A label matrix from precomputed votes (WRENCH's ``weak_labels``: one list of votes per row)."""
    if column not in ds.column_names:
        raise MtlError(
            f"column {column!r} with precomputed weak labels not found; columns: {ds.column_names}"
        )
    rows = ds[column]
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise MtlError(f"column {column!r}: rows have different numbers of votes {sorted(widths)}")
    L = np.asarray(list(rows), dtype=np.int16)
    if L.size and (L.min() < ABSTAIN or L.max() >= cardinality):
        i, j = np.argwhere((L < ABSTAIN) | (cardinality <= L))[0]
        raise MtlError(f"column {column!r}: row {i} vote {j} is {L[i, j]}, outside -1..{cardinality - 1}")
    return LFOutput(L, [f"{column}[{j}]" for j in range(L.shape[1])])


def to_sparse(L: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO form (rows, cols, votes) of the non-abstain entries: the memory-light form for large m."""
    rows, cols = np.nonzero(L != ABSTAIN)
    return rows.astype(np.int64), cols.astype(np.int32), L[rows, cols].astype(np.int16)


def from_sparse(rows: np.ndarray, cols: np.ndarray, votes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Dense label matrix from ``to_sparse`` output."""
    L = np.full(shape, ABSTAIN, dtype=np.int16)
    L[rows, cols] = votes
    return L
