from __future__ import annotations

import math

import numpy as np
import pytest

from mtl.metrics import compute_metrics
from mtl.types import ABSTAIN


def test_known_values() -> None:
    pred = np.array([1, 1, 0, 0, 2])
    gold = np.array([1, 0, 0, 1, 2])
    m = compute_metrics(pred, gold, 3)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert m["n"] == 5
    assert "f1" not in m  # F1 of class 1 means something only for a binary task
    binary = compute_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 1]), 2)
    assert binary["f1"] == pytest.approx(0.5)  # class 1: tp 1, fp 1, fn 1


def test_abstained_gold_is_skipped_and_empty_is_nan() -> None:
    m = compute_metrics(np.array([1, 0]), np.array([1, ABSTAIN]), 2)
    assert m["accuracy"] == 1.0 and m["n"] == 1
    assert math.isnan(compute_metrics(np.array([0]), np.array([ABSTAIN]), 2)["accuracy"])
