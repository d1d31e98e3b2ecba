"""The training loop on a tiny BERT: it learns, it is reproducible, it keeps the best checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mtl.augment import OnTheFly
from mtl.config import AugmentConfig
from mtl.logger import MetricsLogger
from mtl.trainer import Trainer
from mtl.types import MtlError


def test_fit_learns_logs_and_keeps_best(make_trainer: Callable[..., Trainer], tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path / "run")
    result = trainer.fit()
    assert result.steps == 4 * 12  # 2 tasks x 48 rows / batch 8, 4 epochs
    assert result.best_dev["spam"]["accuracy"] >= 0.875
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [12, 24, 36, 48]
    best_mean = (result.best_dev["spam"]["metric"] + result.best_dev["spam2"]["metric"]) / 2
    assert max(r["mean"] for r in evals) == pytest.approx(best_mean)
    losses = [r["loss"] for r in records if r["type"] == "train"]
    assert sum(losses[-6:]) < sum(losses[:6])
    saved = json.loads((tmp_path / "run" / "checkpoint" / "metrics.json").read_text())
    assert saved["step"] == result.best_step
    # The model left in memory is the best one: evaluating it reproduces the best dev metrics.
    again = trainer.evaluate("dev")
    assert again["spam"]["accuracy"] == result.best_dev["spam"]["accuracy"]


def test_same_seed_same_run(make_trainer: Callable[..., Trainer], tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        make_trainer(tmp_path / name, epochs=1, eval_every_steps=0).fit()
        runs.append([json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()])
    strip = [[{k: v for k, v in r.items() if k != "examples_per_s"} for r in run] for run in runs]
    assert strip[0] == strip[1]


def test_max_steps_accumulation_and_early_stopping(
    make_trainer: Callable[..., Trainer], tmp_path: Path
) -> None:
    result = make_trainer(tmp_path / "r", max_steps=5, grad_accum_steps=2).fit()
    assert result.steps == 5 and result.train_examples == 5 * 2 * 8
    trainer = make_trainer(
        tmp_path / "s",
        epochs=50,
        eval_every_steps=1,
        early_stopping_patience=2,
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.0},
    )
    result = trainer.fit()
    assert result.steps == 3  # lr 0: the first evaluation is never beaten, so it stops after two more
    assert result.best_step == 1


def test_epoch_end_evaluation_with_accumulation(make_trainer: Callable[..., Trainer], tmp_path: Path) -> None:
    """12 batches per epoch in groups of 5: 2 optimizer steps in epoch 1 (2 batches carry over), 4 in all."""
    result = make_trainer(tmp_path / "r", epochs=2, grad_accum_steps=5).fit()
    assert result.steps == 4
    assert [r["step"] for r in result.history] == [2, 4]
    assert [r["epoch"] for r in result.history] == [0, 1]


def test_min_steps_adds_epochs_on_small_data(make_trainer: Callable[..., Trainer], tmp_path: Path) -> None:
    """12 batches an epoch: min_steps=18 runs 2 epochs, stopping at step 18, with the schedule over 18."""
    result = make_trainer(tmp_path / "r", epochs=1, min_steps=18).fit()
    assert result.steps == 18 and result.train_examples == 18 * 8
    assert [(r["step"], r["epoch"]) for r in result.history] == [(12, 0), (18, 1)]
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if r["type"] == "train"]
    assert lrs[-1] == 0.0 and min(lrs[:-1]) > 0  # the linear decay ends at the last planned step


def test_min_steps_with_accumulation_and_caps(make_trainer: Callable[..., Trainer], tmp_path: Path) -> None:
    accum = make_trainer(tmp_path / "a", epochs=1, min_steps=4, grad_accum_steps=5)
    assert accum.fit().steps == 4  # 2 steps an epoch with 2 batches carried over: 2 epochs
    assert make_trainer(tmp_path / "n", epochs=1, min_steps=5).fit().steps == 12
    capped = make_trainer(tmp_path / "c", epochs=1, min_steps=30, max_steps=14)
    assert capped.fit().steps == 14


def test_on_the_fly_augmentation_in_the_loop(make_trainer: Callable[..., Trainer], tmp_path: Path) -> None:
    """A task with ``augment.mode=on_the_fly`` trains on an ``OnTheFly`` split of unchanged size."""
    aug = AugmentConfig(tfs="tasks/spam.py:TFS", mode="on_the_fly")
    trainer = make_trainer(tmp_path / "r", aug, epochs=1)
    assert isinstance(trainer._train_data("spam"), OnTheFly)
    assert not isinstance(trainer._train_data("spam2"), OnTheFly)
    result = trainer.fit()
    assert result.steps == 12 and result.train_examples == 96


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(
    make_trainer: Callable[..., Trainer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """State saved every 2 steps; killed at step 7 (mid-epoch, one step after a save); resumed."""
    settings: dict[str, object] = {"epochs": 2, "eval_every_steps": 5, "save_state_every_steps": 2}
    full = make_trainer(tmp_path / "full", **settings)
    expected = full.fit()
    assert not (tmp_path / "full" / "state").exists()  # a finished run leaves nothing to resume

    log = MetricsLogger.log

    def killed_at_7(self: MetricsLogger, record: dict, step: int, prefix: str = "") -> None:
        log(self, record, step, prefix)
        if record["type"] == "train" and record["step"] == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(MetricsLogger, "log", killed_at_7)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(tmp_path / "cut", **settings).fit()
    assert json.loads((tmp_path / "cut" / "state" / "loop.json").read_text())["step"] == 6
    monkeypatch.setattr(MetricsLogger, "log", log)
    other = make_trainer(tmp_path / "cut", **settings)
    other.run_config = {"seed": 7}
    with pytest.raises(MtlError, match=r"the config differs from the interrupted run's in \['seed'\]"):
        other.fit(resume=True)
    resumed_trainer = make_trainer(tmp_path / "cut", **settings)
    resumed = resumed_trainer.fit(resume=True)
    assert resumed.steps == expected.steps == 24 and resumed.best_step == expected.best_step
    assert resumed.best_dev == expected.best_dev and resumed.history == expected.history
    for (name, p), q in zip(
        full.model.state_dict().items(), resumed_trainer.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name)
    # the log has each record once: those after the saved step were dropped and written again
    records = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    strip = [[{k: v for k, v in r.items() if k != "examples_per_s"} for r in rs] for rs in (records, again)]
    assert strip[0] == strip[1]
    with pytest.raises(MtlError, match=r"nothing to resume in .*full"):
        make_trainer(tmp_path / "full", **settings).fit(resume=True)


def test_report_gives_peak_gpu_memory_in_mib_on_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtl.cli.train import gpu_memory

    asked = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: asked.append(d) or 3 * 2**29)
    assert gpu_memory(torch.device("cpu")) == {} and asked == []
    assert gpu_memory(torch.device("cuda", 1)) == {"peak_gpu_memory_mb": 1536.0}
    assert asked == [torch.device("cuda", 1)]
