"""One-pass multi-task inference: the encoder runs once per batch and every requested head reads it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from mtl.config import TaskConfig
from mtl.model import MultitaskModel


@torch.no_grad()
def predict(
    model: MultitaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    tasks: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> dict[str, torch.Tensor]:
    """Class probabilities (len(texts) x classes) per task, in the order of ``texts``.

    Texts are batched by length (less padding); each batch runs the encoder once for all heads.

    Example:
        >>> probs = predict(model, tokenizer, ["free ringtones!!"], ["sms"])  # doctest: +SKIP
        >>> probs["sms"].shape
        torch.Size([1, 2])
    """
    names = list(tasks) if tasks else list(model.heads)
    unknown = [t for t in names if t not in model.heads]
    if unknown:
        raise KeyError(f"no head for task(s) {unknown} in this model; heads: {sorted(model.heads)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = {t: torch.empty(len(texts), model.num_classes[t]) for t in names}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        ).to(device)
        for task, logits in model.forward_all(batch, names).items():
            out[task][idx] = logits.float().softmax(-1).cpu()
    model.train(was_training)
    return out


def prediction_records(
    texts: Sequence[str], probs: dict[str, torch.Tensor], tasks: dict[str, TaskConfig]
) -> list[dict[str, object]]:
    """JSON-ready records: per text, per task the predicted label name and each class's probability."""
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
