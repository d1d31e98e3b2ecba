"""Model-based labeling functions: any model's predictions, or one head of an ``mtl`` checkpoint, as votes.

They are ``BatchLabelingFunction``s: the applier hands them a whole batch of texts, so a model runs once
per batch, not once per row.

Example:
    >>> from mtl.weak import model_lf
    >>> lf = model_lf("shouting", lambda texts: [[0.1, 0.9] if t.isupper() else [0.5, 0.5] for t in texts],
    ...               min_confidence=0.8)
    >>> lf.vote_batch([{"text": "WIN NOW"}, {"text": "see you"}])
    [1, -1]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mtl.checkpoint import load_checkpoint
from mtl.types import ABSTAIN
from mtl.weak.lf import BatchLabelingFunction


def model_lf(
    name: str, predict_proba: Callable[[list[str]], Sequence[Sequence[float]]], min_confidence: float = 0.0
) -> BatchLabelingFunction:
    """An LF from any model over a batch of texts: votes its argmax class when the top probability
    reaches ``min_confidence``, else abstains."""

    def f(texts: list[str]) -> list[int]:
        out = []
        for row in predict_proba(texts):
            best = max(range(len(row)), key=lambda i: row[i])
            out.append(best if row[best] >= min_confidence else ABSTAIN)
        return out

    return BatchLabelingFunction(name, f)


def checkpoint_lf(
    name: str, checkpoint: str | Path, task: str, min_confidence: float = 0.0
) -> BatchLabelingFunction:
    """An LF voting the predictions of one head (``task``) of an ``mtl`` checkpoint."""
    model, *_ = load_checkpoint(checkpoint)

    def proba(texts: list[str]) -> list[list[float]]:
        return model.predict(texts, [task])[task].tolist()

    return model_lf(name, proba, min_confidence)


__all__ = ["checkpoint_lf", "model_lf"]
