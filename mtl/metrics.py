"""Classification metrics over integer predictions and gold labels (rows with gold ``ABSTAIN`` skipped)."""

from __future__ import annotations

import numpy as np

from mtl.types import ABSTAIN


def _f1(pred: np.ndarray, gold: np.ndarray, cls: int) -> float:
    tp = float(np.sum((pred == cls) & (gold == cls)))
    fp = float(np.sum((pred == cls) & (gold != cls)))
    fn = float(np.sum((pred != cls) & (gold == cls)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def compute_metrics(pred: np.ndarray, gold: np.ndarray, num_classes: int) -> dict[str, float]:
    """Return accuracy, macro F1 and, for binary tasks only, ``f1``: the F1 of class 1 (the positive class).

    Example:
        >>> compute_metrics(np.array([1, 0, 1]), np.array([1, 1, 1]), 2)["accuracy"]
        0.6666666666666666
    """
    keep = gold != ABSTAIN
    pred, gold = pred[keep], gold[keep]
    if len(gold) == 0:
        empty: dict[str, float] = {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
        return empty | ({"f1": float("nan")} if num_classes == 2 else {})
    out: dict[str, float] = {
        "accuracy": float(np.mean(pred == gold)),
        "macro_f1": float(np.mean([_f1(pred, gold, c) for c in range(num_classes)])),
        "n": len(gold),
    }
    return out | ({"f1": _f1(pred, gold, 1)} if num_classes == 2 else {})
