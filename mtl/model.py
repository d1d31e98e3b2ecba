"""The multi-task model: one shared encoder, a pooled vector, a head per task.

Example:
    >>> from mtl.config import EncoderConfig, HeadConfig
    >>> enc, tok = build_encoder(EncoderConfig(name_or_path="path/to/bert"))  # doctest: +SKIP
    >>> model = MultitaskModel(enc, {"spam": ClassificationHead(384, 2, HeadConfig())})  # doctest: +SKIP
    >>> logits = model(tok(["hi"], return_tensors="pt"), "spam")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from mtl.config import EncoderConfig, HeadConfig
from mtl.types import ABSTAIN

POOLINGS = ("mean", "cls")
_ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def build_encoder(cfg: EncoderConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the shared encoder and its tokenizer (or build a random BERT when ``random_init`` is set)."""
    if cfg.pooling not in POOLINGS:
        raise ValueError(f"encoder.pooling must be one of {POOLINGS}, got {cfg.pooling!r}")
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.name_or_path)
    if cfg.random_init:
        config = AutoConfig.for_model(
            "bert", vocab_size=tokenizer.vocab_size, max_position_embeddings=512, **dict(cfg.random_init)
        )
        encoder = AutoModel.from_config(config)
    else:
        encoder = AutoModel.from_pretrained(cfg.name_or_path)
    return encoder, tokenizer


class ClassificationHead(nn.Module):
    """Dropout, an optional hidden layer (GELU), then a linear layer to ``num_classes`` logits."""

    def __init__(self, in_features: int, num_classes: int, cfg: HeadConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(cfg.dropout)]
        if cfg.hidden_size > 0:
            layers += [nn.Linear(in_features, cfg.hidden_size), nn.GELU(), nn.Dropout(cfg.dropout)]
            in_features = cfg.hidden_size
        layers.append(nn.Linear(in_features, num_classes))
        self.net = nn.Sequential(*layers)
        self.num_classes = num_classes

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


class MultitaskModel(nn.Module):
    """A shared encoder feeding one head per task.

    Args:
        encoder: any ``transformers`` encoder returning ``last_hidden_state``.
        heads: task name to head module.
        pooling: ``mean`` over non-padding tokens, or ``cls`` (the first token).
    """

    def __init__(
        self, encoder: PreTrainedModel, heads: Mapping[str, ClassificationHead], pooling: str = "mean"
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        bad = [t for t in heads if "." in t or not t]
        if bad:
            raise ValueError(f"task names must be non-empty and contain no '.': {bad}")
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))
        self.num_classes = {task: head.num_classes for task, head in heads.items()}
        self.pooling = pooling

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Return the pooled sentence vector (batch x hidden) for a tokenized batch."""
        inputs = {k: batch[k] for k in _ENCODER_INPUTS if k in batch}
        hidden = self.encoder(**inputs).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, batch: Mapping[str, torch.Tensor], task: str) -> torch.Tensor:
        """Return the logits (batch x classes) of ``task``'s head."""
        if task not in self.heads:
            raise KeyError(f"no head for task {task!r}; heads: {sorted(self.heads)}")
        return self.heads[task](self.encode(batch))

    def forward_all(self, batch: Mapping[str, torch.Tensor], tasks: list[str]) -> dict[str, torch.Tensor]:
        """One encoder pass, every requested head on it: task name to logits."""
        pooled = self.encode(batch)
        return {t: self.heads[t](pooled) for t in tasks}


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against hard labels (ints, ``ABSTAIN`` masked) or soft labels (probability rows).

    A soft row is a distribution scaled by its weight: a row summing to w (0 < w <= 1) is the normalised
    distribution counted with weight w (how uncovered rows are kept at low weight), a row of zeros is
    masked like an abstain. The mean is over unmasked rows. Returns 0 (with a gradient path) when every
    row in the batch is masked, so a batch of abstains does not produce NaN.
    """
    logits = logits.float()
    if labels.dtype.is_floating_point:
        if labels.shape != logits.shape:
            raise ValueError(
                f"soft labels of shape {tuple(labels.shape)} do not match logits {tuple(logits.shape)}"
            )
        weight = labels.sum(-1)
        mask = weight > 0
        target = labels / weight.unsqueeze(-1).clamp(min=1e-12)
        per_row = -(target * F.log_softmax(logits, -1)).sum(-1) * weight.clamp(max=1.0)
    else:
        mask = labels != ABSTAIN
        per_row = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return per_row[mask].mean()
