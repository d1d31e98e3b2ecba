"""The frozen-encoder fast path: pooled features computed once per split, cached, and fed to the heads.

When ``trainer.freeze_encoder`` is set, the encoder's output for a text never changes during training,
so the trainer computes every split's pooled vectors once (``add_features``), in eval mode, and the
heads train on them: the encoder runs once per example instead of once per example per epoch. The
result is cached by ``datasets`` under a fingerprint of the tokenized split (its texts and tokenization
settings), the encoder's weights and the pooling, so a second run with the same encoder reads it back.
Training on the cache matches training the frozen model end to end (same batches, same head dropout),
up to float rounding.
"""

from __future__ import annotations

import hashlib
from typing import Any

import datasets
import torch

from mtl.data import Collator
from mtl.model import MultitaskModel

FEATURES = "features"


def encoder_fingerprint(model: MultitaskModel) -> str:
    """A hash of the encoder's weights and the pooling (what the pooled features depend on)."""
    h = hashlib.sha256(model.pooling.encode())
    for name, tensor in sorted(model.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def add_features(
    ds: datasets.Dataset, model: MultitaskModel, collate: Collator, key: str, batch_size: int = 128
) -> datasets.Dataset:
    """``ds`` (tokenized) with a ``features`` column: the encoder's pooled vector of each row, computed
    in eval mode on the model's device, cached under ``key`` (``encoder_fingerprint``) and the split's
    fingerprint."""
    device = next(model.encoder.parameters()).device
    was_training = model.encoder.training
    model.encoder.eval()

    def fn(batch: dict[str, list[Any]]) -> dict[str, Any]:
        rows = [{k: batch[k][i] for k in batch} for i in range(len(batch["input_ids"]))]
        inputs = {k: v.to(device) for k, v in collate(rows).items() if k != "labels"}
        return {FEATURES: model.encode(inputs).float().cpu().numpy()}

    out = ds.map(
        fn,
        batched=True,
        batch_size=batch_size,
        new_fingerprint=f"{ds._fingerprint}-features-{key}",
        desc="encoder features (frozen encoder)",
    )
    model.encoder.train(was_training)
    return out
