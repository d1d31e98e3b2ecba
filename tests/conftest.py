"""Shared fixtures: a tiny random BERT with a WordPiece tokenizer trained here, and small task files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: a missing Hub id fails at once

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertConfig, BertModel, BertTokenizerFast

from mtl.config import AugmentConfig, EncoderConfig, SourceConfig, TaskConfig, TrainerConfig
from mtl.heads import build_head
from mtl.model import MultitaskModel, build_encoder
from mtl.prepare import load_tasks
from mtl.task import resolve_tasks
from mtl.trainer import Trainer

CORPUS = [
    "free entry win cash now call",
    "check out my channel and subscribe",
    "hello how are you today",
    "see you at lunch tomorrow",
    "great video love this song",
    "my flight was delayed again terrible service",
    "thanks for the quick help",
    "what a wonderful day at the festival",
] * 4


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local folder with a random 2-layer BERT (hidden 32) and a WordPiece tokenizer trained here."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=200, special_tokens=special))
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def _write_wrench(folder: Path, rows: dict[str, list[tuple[str, int]]]) -> Path:
    """Write a WRENCH-format task folder (train/valid/test.json keyed by id)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {"train": "train.json", "dev": "valid.json", "test": "test.json"}
    for split, items in rows.items():
        data = {
            str(i): {"label": y, "data": {"text": t}, "weak_labels": [y, -1]}
            for i, (t, y) in enumerate(items)
        }
        (folder / names[split]).write_text(json.dumps(data))
    return folder


@pytest.fixture
def spam_folder(tmp_path: Path) -> Path:
    """A small, learnable WRENCH-style spam task: spam texts mention cash/channel, ham texts do not."""
    spam = [
        "free entry win cash now call",
        "check out my channel and subscribe",
        "win cash now",
        "subscribe to my channel",
    ]
    ham = [
        "hello how are you today",
        "see you at lunch tomorrow",
        "great video love this song",
        "thanks for the quick help",
    ]
    train = [(f"{t} {i}", 1) for i in range(6) for t in spam] + [
        (f"{t} {i}", 0) for i in range(6) for t in ham
    ]
    dev = [(t, 1) for t in spam] + [(t, 0) for t in ham]
    return _write_wrench(tmp_path / "spam", {"train": train, "dev": dev, "test": dev})


@pytest.fixture
def write_wrench() -> Callable[[Path, dict[str, list[tuple[str, int]]]], Path]:
    """Write a WRENCH-format task folder: ``write_wrench(folder, {split: [(text, label), ...]})``."""
    return _write_wrench


@pytest.fixture
def make_trainer(tiny_encoder_dir: Path, spam_folder: Path) -> Callable[..., Trainer]:
    """``make_trainer(out, augment=None, **trainer_settings)``: a Trainer of two copies of the spam task
    (``spam2`` at loss weight 0.5) on the tiny BERT, seeded; settings override a small default."""

    def make(out: Path, augment: AugmentConfig | None = None, **overrides: object) -> Trainer:
        torch.manual_seed(0)
        enc, tok = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
        source = SourceConfig(format="wrench", path=str(spam_folder))  # type: ignore[arg-type]
        tasks = resolve_tasks(
            {
                "spam": TaskConfig(
                    label_names=["ham", "spam"], source=source, augment=augment or AugmentConfig()
                ),
                "spam2": TaskConfig(label_names=["ham", "spam"], loss_weight=0.5, source=source),
            }
        )
        data = load_tasks(tasks, tok, 32, out / "cache")
        heads = {t: build_head(32, 2, task.config.head) for t, task in tasks.items()}
        settings: dict[str, object] = {
            "epochs": 4,
            "batch_size": 8,
            "eval_batch_size": 16,
            "log_every_steps": 1,
            "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
        }
        cfg = TrainerConfig(**{**settings, **overrides})  # type: ignore[arg-type]
        return Trainer(MultitaskModel(enc, heads), tok, tasks, data, cfg, out, max_length=32, seed=0)

    return make
