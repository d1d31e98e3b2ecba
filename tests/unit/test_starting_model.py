"""Starting from a checkpoint: which weights load, passengers, freezing, encoder learning rate, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mtl.checkpoint import load_checkpoint, save_checkpoint
from mtl.cli.train import OldTasks, format_change
from mtl.config import EncoderConfig, HeadConfig, SourceConfig, TaskConfig, TrainerConfig
from mtl.heads import build_head
from mtl.model import MultitaskModel, build_encoder
from mtl.prepare import load_tasks
from mtl.starting_model import starting_model
from mtl.task import Task
from mtl.trainer import Trainer
from mtl.types import MtlError


def _config(spam: Path, labels: list[str], **kw: object) -> TaskConfig:
    return TaskConfig(label_names=labels, source=SourceConfig(format="wrench", path=str(spam)), **kw)  # type: ignore[arg-type]


def _task(name: str, spam: Path, labels: list[str], **kw: object) -> tuple[str, Task]:
    return name, Task(name, _config(spam, labels, **kw))


@pytest.fixture
def ckpt(tiny_encoder_dir: Path, spam_folder: Path, tmp_path: Path) -> Path:
    """A checkpoint with heads spam (ham/spam), old_spam (ham/spam) and topic (a/b/c), mean pooling."""
    torch.manual_seed(0)
    enc, tok = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    tasks = {
        "spam": _config(spam_folder, ["ham", "spam"]),
        "old_spam": _config(spam_folder, ["ham", "spam"]),
        "topic": _config(tmp_path / "moved", ["a", "b", "c"], head=HeadConfig(hidden_size=8)),
    }
    heads = {t: build_head(32, len(c.label_names), c.head) for t, c in tasks.items()}
    return save_checkpoint(tmp_path / "ckpt", MultitaskModel(enc, heads), tok, tasks, max_length=32)


def test_init_from_checkpoint_loads_matching_heads_and_says_why_not(ckpt: Path, spam_folder: Path) -> None:
    tasks = dict(
        [
            _task("spam", spam_folder, ["ham", "spam"]),
            _task("topic", spam_folder, ["x", "y"]),
            _task("new", spam_folder, ["no", "yes"]),
        ]
    )
    init = starting_model(tasks, EncoderConfig(pooling="cls"), str(ckpt))
    assert init.kind == "checkpoint" and init.pooling == "mean"  # the checkpoint's pooling wins
    assert init.loaded_heads == ["spam"]
    assert init.fresh_heads["topic"].startswith("label set differs: checkpoint ['a', 'b', 'c'], this run")
    assert init.fresh_heads["new"] == "no head of that name in the checkpoint"
    assert list(init.old_tasks) == ["old_spam"] and set(init.model.heads) == {
        "spam",
        "topic",
        "new",
        "old_spam",
    }
    saved, *_ = load_checkpoint(ckpt)
    for name, p in saved.encoder.state_dict().items():
        torch.testing.assert_close(init.model.encoder.state_dict()[name], p)
    for name, p in saved.heads["spam"].state_dict().items():
        torch.testing.assert_close(init.model.heads["spam"].state_dict()[name], p)
    assert not torch.equal(init.model.heads["new"].net[-1].weight[:2], saved.heads["spam"].net[-1].weight)
    text = init.describe()
    assert "heads loaded: spam" in text and "old heads kept, not trained: old_spam" in text
    assert "head topic: new (label set differs" in text
    # a changed head shape is not loaded either, and without keep_old_heads there are no passengers
    wider = dict([_task("spam", spam_folder, ["ham", "spam"], head=HeadConfig(hidden_size=4))])
    init = starting_model(wider, EncoderConfig(), str(ckpt), keep_old_heads=False)
    assert init.loaded_heads == [] and "hidden_size" in init.fresh_heads["spam"] and not init.old_tasks


def test_init_from_a_model_folder_and_bad_paths(
    tiny_encoder_dir: Path, spam_folder: Path, tmp_path: Path
) -> None:
    tasks = dict([_task("spam", spam_folder, ["ham", "spam"])])
    init = starting_model(tasks, EncoderConfig(), str(tiny_encoder_dir))
    assert init.kind == "encoder" and list(init.fresh_heads) == ["spam"] and init.model.hidden_size == 32
    with pytest.raises(MtlError, match=r"init_from '/nowhere/x' does not exist"):
        starting_model(tasks, EncoderConfig(), "/nowhere/x")
    (tmp_path / "foreign").mkdir()
    with pytest.raises(MtlError, match=r"foreign' is neither an mtl checkpoint .* nor an AutoModel folder"):
        starting_model(tasks, EncoderConfig(), str(tmp_path / "foreign"))
    with pytest.raises(
        MtlError, match="'no-such-model' is not a local folder, and loading it as a Hub id failed"
    ):
        starting_model(tasks, EncoderConfig(), "no-such-model")


def test_hidden_size_mismatch_names_the_checkpoint(ckpt: Path, spam_folder: Path) -> None:
    meta = json.loads((ckpt / "heads" / "spam.json").read_text())
    (ckpt / "heads" / "spam.json").write_text(json.dumps({**meta, "in_features": 64}))
    with pytest.raises(
        MtlError, match=r"ckpt: head 'spam' expects 64 features but the encoder's hidden size is 32"
    ):
        starting_model(dict([_task("spam", spam_folder, ["ham", "spam"])]), EncoderConfig(), str(ckpt))


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_freezing_encoder_lr_and_train_heads(make_trainer: Callable[..., Trainer], tmp_path: Path) -> None:
    t = make_trainer(tmp_path / "a", freeze_encoder=True, max_steps=4)
    enc, head = _params(t.model.encoder), _params(t.model.heads["spam"])
    t.fit()
    assert not _changed(enc, t.model.encoder) and _changed(head, t.model.heads["spam"])
    assert not t.model.encoder.training  # a frozen encoder runs without dropout
    # frozen for the first 3 steps only: unchanged after 3, changed after 5
    for steps, moved in ((3, False), (5, True)):
        t = make_trainer(tmp_path / f"s{steps}", freeze_encoder_steps=3, max_steps=steps)
        enc = _params(t.model.encoder)
        t.fit()
        assert _changed(enc, t.model.encoder) is moved
    t = make_trainer(tmp_path / "h", train_heads=["spam2"], encoder_lr=1e-4, max_steps=4)
    optimizer = t._optimizer()
    assert [g["lr"] for g in optimizer.param_groups] == [3e-3, 1e-4]  # heads, encoder
    spam_head, enc = _params(t.model.heads["spam"]), _params(t.model.encoder)
    t.fit()
    assert not _changed(spam_head, t.model.heads["spam"]) and _changed(enc, t.model.encoder)
    with pytest.raises(ValueError, match=r"leaves nothing to train for tasks \['spam'\]"):
        make_trainer(tmp_path / "y", train_heads=["spam2"], freeze_encoder=True)
    with pytest.raises(ValueError, match=r"trainer\.train_heads names tasks not in this run: \['nope'\]"):
        make_trainer(tmp_path / "x", train_heads=["nope"])


def test_old_heads_ride_along_and_are_evaluated(ckpt: Path, spam_folder: Path, tmp_path: Path) -> None:
    """Training 'spam' from a checkpoint keeps 'old_spam' untrained, saves it, reports its change."""
    tasks = dict([_task("spam", spam_folder, ["ham", "spam"])])
    init = starting_model(tasks, EncoderConfig(), str(ckpt))
    assert list(init.old_tasks) == ["old_spam", "topic"]
    # topic's data is gone (its folder moved): it is not evaluated, but its head is still kept and saved
    data = load_tasks(tasks, init.tokenizer, 32, tmp_path / "cache")
    cfg = TrainerConfig(
        batch_size=8, max_steps=4, optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3}
    )
    t = Trainer(
        init.model,
        init.tokenizer,
        tasks,
        data,
        cfg,
        tmp_path / "run",
        max_length=32,
        passengers=init.old_tasks,
    )
    old = OldTasks(t, init.old_tasks, str(tmp_path / "cache"), 0)
    assert set(old.data) == {"old_spam"} and old.before["dev"]["old_spam"]["n"] == 8
    passenger = _params(init.model.heads["old_spam"])
    t.fit()
    change = old.change()
    assert set(change) == {"old_spam/dev", "old_spam/test"}
    c = change["old_spam/dev"]
    assert c["change"] == pytest.approx(c["after"] - c["before"])
    assert not _changed(passenger, init.model.heads["old_spam"])
    saved = json.loads((tmp_path / "run" / "checkpoint" / "model.json").read_text())
    assert set(saved["tasks"]) == {"spam", "old_spam", "topic"}
    assert "| old_spam/dev |" in format_change(change)


def test_feature_cache_matches_the_frozen_encoder_end_to_end(
    make_trainer: Callable[..., Trainer], tmp_path: Path
) -> None:
    runs, heads0 = {}, {}
    for cache in (False, True):
        t = make_trainer(
            tmp_path / str(cache),
            freeze_encoder=True,
            feature_cache=cache,
            epochs=2,
            # SGD: Adam's normalised steps would turn float-rounding differences in near-zero gradients
            # into full-size steps, so only SGD makes "the same training" checkable by weights
            optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.5},
        )
        heads0 = {k: v.clone() for k, v in t.model.heads.state_dict().items()}
        runs[cache] = (t.fit(), t)
    (plain, t0), (cached, t1) = runs[False], runs[True]
    assert "features" not in t0.data["spam"]["train"].column_names
    feats = torch.tensor(t1.data["spam"]["dev"]["features"])
    assert feats.shape == (8, 32)
    batch = t1.collate([{k: v for k, v in r.items() if k != "features"} for r in t1.data["spam"]["dev"]])
    torch.testing.assert_close(feats, t1.model.encode(batch), atol=1e-5, rtol=0)
    assert cached.best_step == plain.best_step
    for a, b in zip(plain.history, cached.history, strict=True):
        assert a["tasks"]["spam"]["accuracy"] == b["tasks"]["spam"]["accuracy"]
        assert a["mean"] == pytest.approx(b["mean"])
    for name, p in t0.model.heads.state_dict().items():
        torch.testing.assert_close(t1.model.heads.state_dict()[name], p, atol=1e-4, rtol=1e-4)
    assert any(not torch.equal(heads0[k], v) for k, v in t0.model.heads.state_dict().items())


def test_init_from_records_the_encoder_it_used_and_names_what_it_overrules(
    tiny_encoder_dir: Path, spam_folder: Path, tmp_path: Path
) -> None:
    """The checkpoint was trained from encoder A at max_length 32; the run's encoder config either names
    A (its max_length applies) or another model (the checkpoint's settings apply, with a note)."""
    trained = EncoderConfig(name_or_path=str(tiny_encoder_dir), max_length=32)
    enc, tok = build_encoder(trained)
    tasks = {"spam": _config(spam_folder, ["ham", "spam"])}
    heads = {"spam": build_head(32, 2, HeadConfig())}
    config = {"encoder": {"name_or_path": str(tiny_encoder_dir), "max_length": 32}}
    ck = save_checkpoint(
        tmp_path / "ck", MultitaskModel(enc, heads), tok, tasks, max_length=32, config=config
    )
    run_tasks = dict([_task("spam", spam_folder, ["ham", "spam"])])

    other = starting_model(run_tasks, EncoderConfig(name_or_path="/models/minilm", max_length=128), str(ck))
    assert (other.encoder.name_or_path, other.encoder.max_length) == (str(tiny_encoder_dir), 32)
    assert other.notes == [
        f"the run's encoder (/models/minilm) is not used: init_from's checkpoint has its own, trained from "
        f"{tiny_encoder_dir}; its pooling (mean) and max_length (32) apply"
    ]
    same = starting_model(
        run_tasks, EncoderConfig(name_or_path=str(tiny_encoder_dir), max_length=64), str(ck)
    )
    assert (same.encoder.name_or_path, same.encoder.max_length) == (str(tiny_encoder_dir), 64)
    assert same.notes == [
        "encoder.max_length=64: texts are cut at 64 tokens (the checkpoint was trained at 32)"
    ]
    assert "max_length: 64" in same.describe() and same.as_dict()["encoder"]["max_length"] == 64
    exact = starting_model(
        run_tasks, EncoderConfig(name_or_path=str(tiny_encoder_dir), max_length=32), str(ck)
    )
    assert exact.notes == []


def test_a_missing_encoder_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(MtlError, match=r"^encoder.name_or_path '/does/not/exist' does not exist \(a model"):
        build_encoder(EncoderConfig(name_or_path="/does/not/exist"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        MtlError, match=r"encoder.name_or_path '.*empty' is not a model folder \(no config.json\)"
    ):
        build_encoder(EncoderConfig(name_or_path=str(tmp_path / "empty")))
