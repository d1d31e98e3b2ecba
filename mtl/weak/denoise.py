"""Weak-label error detection by confident learning (``cleanlab``).

A logistic regression on the rows' sentence vectors (``mtl.weak.neighbours``), cross-validated so that
each row is scored by a model that did not see it, gives out-of-fold class probabilities; cleanlab's
``find_label_issues`` flags the rows whose weak label (the label model's argmax) those probabilities
contradict, and ``get_label_quality_scores`` ranks every row (``self_confidence``: lowest first is most
suspect). ``mtl.weak.pipeline`` then drops the flagged rows or scales their targets down
(``weak.denoise``). cleanlab (and scikit-learn) load only when denoising is on: ``pip install
'mtl[denoise]'``.

Example (a constructed set: two clusters, 10 % of the labels flipped):
    >>> import numpy as np
    >>> from mtl.weak.neighbours import normalise
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 100)
    >>> feats = normalise(np.eye(8, dtype=np.float32)[y] * 3 + rng.normal(size=(200, 8)).astype(np.float32))
    >>> noisy = y.copy(); flipped = rng.choice(200, 20, replace=False); noisy[flipped] ^= 1
    >>> flags, scores = flag_label_issues(feats, np.eye(2)[noisy], folds=5)
    >>> report = flag_report(flags, scores, noisy, y, at=(20,))
    >>> report["precision_at"]["20"] > 0.8, report["error_rate"]
    (True, 0.1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mtl.types import MtlError


def flag_label_issues(
    feats: np.ndarray, probs: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Flags (bool per row) and label-quality scores (per row, lower is more suspect; nan for rows
    without a target) of the weak labels ``probs.argmax(1)`` of the rows whose targets are not all zero.
    Classes the weak labels never use are left out of the classifier."""
    try:
        from cleanlab.count import estimate_cv_predicted_probabilities
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:
        raise MtlError(f"weak.denoise needs cleanlab: pip install 'mtl[denoise]' ({e})") from e
    rows = np.flatnonzero(probs.sum(1) > 0)
    flags = np.zeros(len(probs), dtype=bool)
    scores = np.full(len(probs), np.nan)
    present, labels = np.unique(probs[rows].argmax(1), return_inverse=True)  # contiguous class ids
    smallest = np.bincount(labels).min() if len(rows) else 0
    if len(present) < 2 or smallest < folds:
        raise MtlError(
            f"weak.denoise: needs at least {folds} weakly labeled rows (weak.denoise.folds) of each of at "
            f"least two classes; the weak labels have {np.bincount(labels).tolist()} of classes "
            f"{present.tolist()}"
        )
    clf = LogisticRegression(max_iter=1000)
    pred = estimate_cv_predicted_probabilities(feats[rows], labels, clf=clf, cv_n_folds=folds, seed=seed)
    flags[rows] = find_label_issues(labels, pred)
    scores[rows] = get_label_quality_scores(labels, pred)
    return flags, scores


def flag_report(
    flags: np.ndarray,
    scores: np.ndarray,
    weak: np.ndarray,
    gold: np.ndarray,
    at: Sequence[int] = (100, 500),
) -> dict[str, Any]:
    """How well the flags find wrong weak labels, against gold labels of the same rows: the weak labels'
    error rate (the precision of flagging at random), the precision of the flagged rows, and the
    precision of the ``k`` lowest-scored rows for each ``k`` in ``at`` (fewer rows: all of them)."""
    scored = np.flatnonzero(~np.isnan(scores))
    wrong = np.asarray(weak) != np.asarray(gold)
    ranked = scored[np.argsort(scores[scored], kind="stable")]
    return {
        "rows": len(scored),
        "flagged": int(flags.sum()),
        "error_rate": round(float(wrong[scored].mean()), 4) if len(scored) else float("nan"),
        "flagged_precision": round(float(wrong[flags].mean()), 4) if flags.any() else float("nan"),
        "precision_at": {str(k): round(float(wrong[ranked[:k]].mean()), 4) for k in at if len(ranked)},
    }


__all__ = ["flag_label_issues", "flag_report"]
