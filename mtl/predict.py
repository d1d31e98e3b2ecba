"""One-pass multi-task inference (``MultitaskModel.predict``) and records for ``mtl-predict``.

``predict_records`` gives one record per text, in order: an empty or whitespace-only text does not go
through the model and gets ``predictions: None``, so record i always answers text i.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from mtl.config import TaskConfig
from mtl.model import MultitaskModel
from mtl.types import MtlError


def predict(
    model: MultitaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    tasks: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> dict[str, torch.Tensor]:
    """Class probabilities (len(texts) x classes) per task, in the order of ``texts``, with one encoder
    pass per batch (``MultitaskModel.predict`` with an explicit tokenizer).

    See ``MultitaskModel.predict`` (``mtl.model``) for an example.
    """
    return model.predict(texts, tasks, batch_size=batch_size, tokenizer=tokenizer, max_length=max_length)


def prediction_records(
    texts: Sequence[str], probs: dict[str, torch.Tensor], tasks: Mapping[str, TaskConfig]
) -> list[dict[str, object]]:
    """JSON-ready records: per text, per task the predicted label name and each class's probability.

    Example:
        >>> from mtl.config import SourceConfig
        >>> sms = TaskConfig(label_names=["ham", "spam"], source=SourceConfig(format="csv", path="x.csv"))
        >>> prediction_records(["WIN NOW"], {"sms": torch.tensor([[0.25, 0.75]])}, {"sms": sms})
        [{'text': 'WIN NOW', 'predictions': {'sms': {'label': 'spam', 'probs': {'ham': 0.25, 'spam': 0.75}}}}]
    """
    records: list[dict[str, object]] = []
    for i, text in enumerate(texts):
        preds: dict[str, object] = {}
        for task, p in probs.items():
            names = tasks[task].label_names
            preds[task] = {
                "label": names[int(p[i].argmax())],
                "probs": {n: round(float(v), 6) for n, v in zip(names, p[i].tolist(), strict=True)},
            }
        records.append({"text": text, "predictions": preds})
    return records


def predict_records(
    model: MultitaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    tasks: Mapping[str, TaskConfig],
    heads: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> list[dict[str, object]]:
    """One record per text, in the order of ``texts`` (``prediction_records`` of the ``heads``, all when
    None). A text that is empty or only whitespace does not go through the model: its record is
    ``{"text": text, "predictions": None}``, with the text as given."""
    unknown = [h for h in heads or [] if h not in tasks]
    if unknown:
        raise MtlError(f"no head for task(s) {unknown} in this model; set heads= to some of {sorted(tasks)}")
    keep = [i for i, text in enumerate(texts) if text.strip()]
    records: list[dict[str, object]] = [{"text": text, "predictions": None} for text in texts]
    if keep:
        kept = [texts[i] for i in keep]
        probs = predict(model, tokenizer, kept, heads, batch_size=batch_size, max_length=max_length)
        for i, record in zip(keep, prediction_records(kept, probs, tasks), strict=True):
            records[i] = record
    return records
