"""Checkpoints: round trip, plain AutoModel loading, no pickles, atomic replacement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel

import mtl.checkpoint as ckpt_mod
from mtl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtl.config import EncoderConfig, HeadConfig, SourceConfig, TaskConfig
from mtl.heads import build_head
from mtl.model import MultitaskModel, build_encoder
from mtl.types import MtlError

TASKS = {
    "spam": TaskConfig(label_names=["ham", "spam"], source=SourceConfig(format="wrench", path="/x")),
    "topic": TaskConfig(
        label_names=["a", "b", "c"],
        metric="macro_f1",
        head=HeadConfig(hidden_size=8),
        source=SourceConfig(format="csv", path="/y.csv"),
    ),
}


@pytest.fixture
def model_and_tok(tiny_encoder_dir: Path):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    enc, tok = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    heads = {t: build_head(32, len(c.label_names), c.head) for t, c in TASKS.items()}
    return MultitaskModel(enc, heads, pooling="cls").eval(), tok


def test_round_trip_gives_identical_outputs(model_and_tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    save_checkpoint(
        tmp_path / "ck", model, tok, TASKS, max_length=48, config={"seed": 3}, metrics={"dev": 0.5}
    )
    loaded, tok2, tasks, info = load_checkpoint(tmp_path / "ck")
    batch = tok(["win cash now", "hello"], padding=True, return_tensors="pt")
    for task in TASKS:
        torch.testing.assert_close(loaded(batch, task), model(batch, task))
    assert tasks["topic"].label_names == ["a", "b", "c"] and tasks["topic"].metric == "macro_f1"
    assert info["max_length"] == 48 and info["pooling"] == "cls"
    assert tok2("win cash now")["input_ids"] == tok("win cash now")["input_ids"]
    assert "seed: 3" in (tmp_path / "ck" / "config.yaml").read_text()


def test_encoder_loads_with_plain_automodel_and_nothing_is_pickled(model_and_tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    save_checkpoint(tmp_path / "ck", model, tok, TASKS, max_length=32)
    enc = AutoModel.from_pretrained(tmp_path / "ck" / "encoder")
    batch = tok(["hello"], return_tensors="pt")
    torch.testing.assert_close(enc(**batch).last_hidden_state, model.encoder(**batch).last_hidden_state)
    for f in (tmp_path / "ck").rglob("*"):  # readable by others, like any output (umask 022 here)
        assert f.stat().st_mode & 0o044 == 0o044, f
    files = {p.suffix for p in (tmp_path / "ck").rglob("*") if p.is_file()}
    assert not files & {".bin", ".pt", ".pkl", ".pickle"}
    assert sorted(p.name for p in (tmp_path / "ck" / "heads").iterdir()) == [
        "spam.json",
        "spam.safetensors",
        "topic.json",
        "topic.safetensors",
    ]


def test_crash_mid_save_leaves_previous_checkpoint(model_and_tok, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    save_checkpoint(tmp_path / "ck", model, tok, TASKS, max_length=32, metrics={"step": 1})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ck", model, tok, TASKS, max_length=32, metrics={"step": 2})
    loaded, *_ = load_checkpoint(tmp_path / "ck")
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_interrupted_swap_falls_back_to_old_copy(model_and_tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    save_checkpoint(tmp_path / "ck", model, tok, TASKS, max_length=32)
    (tmp_path / "ck").rename(tmp_path / "ck.old")  # the state between the two renames
    loaded, *_ = load_checkpoint(tmp_path / "ck")
    assert sorted(loaded.heads) == ["spam", "topic"]


def test_missing_and_foreign_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere' does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "foreign").mkdir()
    with pytest.raises(CheckpointError, match="foreign' is not an mtl checkpoint"):
        load_checkpoint(tmp_path / "foreign")


@pytest.mark.parametrize("part", ["heads/spam.safetensors", "encoder/model.safetensors"])
def test_truncated_weights_are_a_named_error(model_and_tok, tmp_path: Path, part: str) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    save_checkpoint(tmp_path / "ck", model, tok, TASKS, max_length=48)
    weights = tmp_path / "ck" / part
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    named = str(weights) if part.startswith("heads") else f"{tmp_path / 'ck' / 'encoder'}'.*model.safetensors"
    with pytest.raises(MtlError, match=rf"{named}.*truncated or corrupted"):
        load_checkpoint(tmp_path / "ck")
