"""Weak-label error detection: planted errors are found, reported, dropped or down-weighted."""

from __future__ import annotations

import numpy as np
import pytest

from mtl.types import MtlError
from mtl.weak.denoise import flag_label_issues, flag_report
from mtl.weak.neighbours import normalise


def _planted(n_per: int = 100, classes: int = 3, flip: float = 0.1, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    feats = normalise(np.eye(16, dtype=np.float32)[y] * 3 + rng.normal(size=(len(y), 16)).astype(np.float32))
    noisy = y.copy()
    planted = rng.choice(len(y), int(flip * len(y)), replace=False)
    noisy[planted] = (noisy[planted] + rng.integers(1, classes, len(planted))) % classes
    return feats, y, noisy, planted


def test_flags_find_planted_label_errors() -> None:
    feats, y, noisy, planted = _planted()
    probs = np.eye(3)[noisy] * 0.9 + 0.1 / 3  # soft weak targets, argmax = the noisy label
    probs[:5] = 0.0  # rows without a target are neither flagged nor scored
    flags, scores = flag_label_issues(feats, probs, folds=5)
    assert not flags[:5].any() and np.isnan(scores[:5]).all() and not np.isnan(scores[5:]).any()
    found = set(np.flatnonzero(flags))
    recall = len(found & set(planted)) / len(set(planted) - set(range(5)))
    assert recall > 0.8 and len(found) < 2 * len(planted)  # most planted errors, few false alarms
    report = flag_report(flags, scores, noisy, y, at=(10, 30))
    assert report["rows"] == len(y) - 5 and report["flagged"] == len(found)
    assert report["error_rate"] == pytest.approx((noisy != y)[5:].mean(), abs=1e-4)
    assert report["precision_at"]["10"] == 1.0 and report["precision_at"]["30"] > 0.8
    assert report["flagged_precision"] > 0.5


def test_flags_are_seeded_and_need_enough_rows_per_class() -> None:
    feats, _, noisy, _ = _planted(n_per=40)
    a = flag_label_issues(feats, np.eye(3)[noisy], folds=3, seed=1)
    b = flag_label_issues(feats, np.eye(3)[noisy], folds=3, seed=1)
    assert (a[0] == b[0]).all() and np.allclose(a[1], b[1])
    few = np.eye(3)[np.array([0] * 30 + [1] * 2)]
    with pytest.raises(MtlError, match=r"weak.denoise: needs at least 5 weakly labeled rows .* \[30, 2\]"):
        flag_label_issues(feats[:32], few, folds=5)
