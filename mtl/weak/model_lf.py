"""Model-based labeling functions: any model's predictions, or one head of an ``mtl`` checkpoint, as votes.

They are ``ModelLabelingFunction``s (batch LFs): the applier hands them a whole batch of texts, so a
model runs once per batch, not once per row. The model is loaded lazily, once per process (``load``):
on the Ray backend each actor loads it once and keeps it; pickling the LF sends how to load the model,
never the loaded weights.

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
from typing import Any

from mtl.types import ABSTAIN, MtlError
from mtl.weak.lf import BatchLabelingFunction

Proba = Callable[[list[str]], Sequence[Sequence[float]]]


class ModelLabelingFunction(BatchLabelingFunction):
    """A batch LF over a model's class probabilities: votes the argmax class when its probability reaches
    ``min_confidence``, else abstains.

    Args:
        name: the LF's name.
        loader: returns ``predict_proba(texts) -> probabilities per text``; called once per process, on
            the first vote or by ``load()`` (a Ray actor calls it when it starts).
        min_confidence: the least top probability that votes.
        field: the example field holding the text.
    """

    def __init__(
        self, name: str, loader: Callable[[], Proba], min_confidence: float = 0.0, field: str = "text"
    ):
        super().__init__(name, self._votes, field)
        self.loader, self.min_confidence = loader, min_confidence
        self._proba: Proba | None = None

    def load(self) -> Proba:
        """Load the model (once per process) and return its ``predict_proba``."""
        if self._proba is None:
            self._proba = self.loader()
        return self._proba

    def _votes(self, texts: list[str]) -> list[int]:
        out = []
        for row in self.load()(texts):
            best = max(range(len(row)), key=lambda i: row[i])
            out.append(best if row[best] >= self.min_confidence else ABSTAIN)
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_proba"] = None  # the loaded model stays in its process; the loader travels
        return state


def model_lf(name: str, predict_proba: Proba, min_confidence: float = 0.0) -> ModelLabelingFunction:
    """An LF from any model over a batch of texts: votes its argmax class when the top probability
    reaches ``min_confidence``, else abstains. ``predict_proba`` itself is pickled to each worker; to
    load a large model once per worker instead, use ``ModelLabelingFunction(name, loader)``."""
    return ModelLabelingFunction(name, lambda: predict_proba, min_confidence)


class _CheckpointHead:
    """Picklable loader of one head of an ``mtl`` checkpoint (on the GPU when the process has one).

    ``stamp`` (each file's size and modification time) makes the LF's fingerprint change when the
    checkpoint is retrained in place, so no cache keeps votes of the old weights."""

    def __init__(self, checkpoint: Path, task: str) -> None:
        self.checkpoint, self.task = checkpoint, task
        self.stamp = sorted(
            (str(f.relative_to(checkpoint)), f.stat().st_size, f.stat().st_mtime_ns)
            for f in checkpoint.rglob("*")
            if f.is_file()
        )

    def __call__(self) -> Proba:
        import torch

        from mtl.checkpoint import load_checkpoint

        model, *_ = load_checkpoint(self.checkpoint)
        if torch.cuda.is_available():  # a Ray GPU actor sees the GPU it was given
            model = model.to("cuda")

        def proba(texts: list[str]) -> list[list[float]]:
            return model.predict(texts, [self.task])[self.task].tolist()

        return proba


def checkpoint_lf(
    name: str, checkpoint: str | Path, task: str, min_confidence: float = 0.0
) -> ModelLabelingFunction:
    """An LF voting the predictions of one head (``task``) of an ``mtl`` checkpoint; the checkpoint is
    loaded on the first vote in each process. A folder that is no checkpoint, or has no head ``task``, is
    an error at once."""
    path = Path(checkpoint).expanduser()
    if not (path / "model.json").exists():
        raise MtlError(f"checkpoint_lf {name!r}: {path} is not an mtl checkpoint (no model.json there)")
    heads = sorted(p.stem for p in (path / "heads").glob("*.safetensors"))
    if task not in heads:
        raise MtlError(f"checkpoint_lf {name!r}: checkpoint {path} has no head {task!r}; heads: {heads}")
    return ModelLabelingFunction(name, _CheckpointHead(path, task), min_confidence)


__all__ = ["ModelLabelingFunction", "checkpoint_lf", "model_lf"]
