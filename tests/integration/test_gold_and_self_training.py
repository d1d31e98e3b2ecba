"""Gold labels in training (``gold.mode``: mix and finetune, cross-fitted honestly) and self-training
(``self_train``), on real weak labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from mtl.checkpoint import load_checkpoint
from mtl.cli import run_tasks
from mtl.cli.train import train
from mtl.config import CONF_DIR, PROJECT_ROOT
from mtl.prepare import load_task_splits
from mtl.task import Task

DATA = PROJECT_ROOT.parent / "shared" / "data"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "wrench" / "youtube").exists(), reason=f"real data not found at {DATA}"),
]


def _cfg(tmp_path: Path, *overrides: str):  # type: ignore[no-untyped-def]
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose(
            "train",
            [
                "tasks=[youtube,sms]",
                "encoder=tiny",
                "trainer=debug",
                "tasks.youtube.labels=weak",
                "gold.folds=4",
                "gold.fold=1",
                f"output_dir={tmp_path / 'run'}",
                f"cache_dir={tmp_path / 'cache'}",
                *overrides,
            ],
        )


def test_finetune_trains_on_weak_labels_then_on_the_other_folds_gold_rows(tmp_path: Path) -> None:
    report = train(_cfg(tmp_path, "gold.mode=finetune", "gold.trainer.min_steps=3"), echo=False)
    run = tmp_path / "run"
    weak = json.loads((run / "weak_stage" / "report.json").read_text())
    saved = load_checkpoint(run / "checkpoint")[2]  # the task configs the final model records
    # stage 1: both tasks, youtube on its weak labels with the held-out fold as dev
    assert set(weak["metrics"]["test"]) == {"youtube", "sms"} and weak["train_labels"]["youtube"] == "weak"
    # stage 2: youtube alone, on gold rows, from stage 1's model; sms rides along untrained
    assert report["train_labels"] == {"youtube": "gold"}
    assert report["init"]["loaded_heads"] == ["youtube"] and "sms/test" in report["old_tasks"]
    assert report["steps"] >= 3 and report["weak_stage"]["test"]["youtube/test"]["before"] == pytest.approx(
        weak["metrics"]["test"]["youtube"]["metric"]
    )
    # row ids: stage 2 trained on exactly the dev rows outside fold 1; both stages selected on fold 1
    folds = load_task_splits(Task("youtube", saved["youtube"]), tmp_path / "cache", 42)
    assert report["sizes"]["youtube"] == {s: len(d) for s, d in folds.items()}
    assert not set(folds["train"]["text"]) & set(folds["dev"]["text"])
    assert weak["sizes"]["youtube"]["dev"] == report["sizes"]["youtube"]["dev"] == len(folds["dev"])
    # a rerun reuses the finished weak stage
    again = train(_cfg(tmp_path, "gold.mode=finetune", "gold.trainer.min_steps=3"), echo=False)
    assert json.loads((run / "weak_stage" / "report.json").read_text()) == weak
    assert again["weak_stage"]["mean"] == report["weak_stage"]["mean"]


def test_mix_adds_the_training_folds_gold_rows_at_their_weight(tmp_path: Path) -> None:
    plain = train(_cfg(tmp_path, "gold.mode=none", "output_dir=" + str(tmp_path / "plain")), echo=False)
    mixed = train(_cfg(tmp_path, "gold.mode=mix", "gold.weight=3"), echo=False)
    none_dev, mix = plain["sizes"]["youtube"], mixed["sizes"]["youtube"]
    assert mix["dev"] < none_dev["dev"] / 2  # one fold of four
    assert mix["train"] == none_dev["train"] + (none_dev["dev"] - mix["dev"])  # + the other folds' rows
    assert mixed["sizes"]["sms"] == plain["sizes"]["sms"]  # gold-label tasks are not cross-fitted
    assert set(mixed["label_model"]) == {"youtube"} and 0 <= mixed["label_model"]["youtube"]["test"] <= 1


def test_gold_modes_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"gold.mode=mix: no task of the run has weak labels"):
        train(_cfg(tmp_path, "gold.mode=mix", "tasks.youtube.labels=gold"), echo=False)
    with pytest.raises(Exception, match=r"gold.fold must be in 0..gold.folds-1, got gold.fold=4, folds=4"):
        train(_cfg(tmp_path, "gold.mode=mix", "gold.fold=4"), echo=False)
    with pytest.raises(Exception, match=r"out of range: gold.folds=1 \(must be >= 2\)"):
        train(_cfg(tmp_path, "gold.mode=mix", "gold.folds=1"), echo=False)
    with pytest.raises(Exception, match=r"gold.trainer names unknown trainer keys \['lr'\]"):
        train(_cfg(tmp_path, "gold.mode=finetune", "+gold.trainer.lr=1e-5"), echo=False)


def test_self_training_relabels_the_train_rows_and_is_reproducible(tmp_path: Path) -> None:
    reports, labels = [], []
    for name in ("a", "b"):
        out = tmp_path / name
        cfg = _cfg(tmp_path, "self_train.rounds=1", "self_train.min_confidence=0.5", f"output_dir={out}")
        reports.append(train(cfg, echo=False))
        labels.append(np.load(out / "round0" / "pseudo_labels" / "youtube.npy"))
        assert not (out / "round0" / "pseudo_labels" / "sms.npy").exists()  # gold-label tasks keep theirs
    first = reports[0]
    assert labels[0].shape == (first["sizes"]["youtube"]["train"], 2)  # uncovered rows relabeled too
    kept = labels[0].any(1)
    assert set(labels[0].sum(1).tolist()) <= {0.0, 1.0} and kept.mean() > 0  # one-hot or left out
    (round0,) = first["self_training"]
    assert round0["kept"]["youtube"] == pytest.approx(kept.mean())
    assert first["train_labels"]["youtube"].endswith("round0/pseudo_labels/youtube.npy")
    scores = [{t: m["metric"] for t, m in r["metrics"]["test"].items()} for r in reports]
    assert (labels[0] == labels[1]).all() and scores[0] == scores[1]  # seeded: the same labels and model
    with pytest.raises(Exception, match=r"self_train.min_confidence=1.5 \(must be in \[0, 1\]\)"):
        train(_cfg(tmp_path, "self_train.rounds=1", "self_train.min_confidence=1.5"), echo=False)


def test_self_training_with_finetune_distils_the_gold_tuned_model(tmp_path: Path) -> None:
    """gold.mode=finetune + self_train: round 0 is both stages; its gold-tuned model's probabilities of
    youtube's train rows (soft) are what round 1's weak stage learns, then round 1 is tuned on gold."""
    overrides = ["gold.mode=finetune", "gold.trainer.min_steps=3", "self_train.rounds=1"]
    overrides += ["self_train.soft=true", "self_train.min_confidence=0"]
    report = train(_cfg(tmp_path, *overrides), echo=False)
    run = tmp_path / "run"
    round0 = json.loads((run / "round0" / "report.json").read_text())
    assert round0["weak_stage"]["output_dir"] == str(run / "round0" / "weak_stage")  # both stages
    assert round0["train_labels"] == {"youtube": "gold"} and report["train_labels"] == {"youtube": "gold"}
    teacher = load_checkpoint(run / "round0" / "checkpoint")[0]  # the gold-tuned model, not the weak stage
    texts = load_task_splits(run_tasks(_cfg(tmp_path))["youtube"], tmp_path / "cache", 42)["train"]["text"]
    labels = np.load(run / "round0" / "pseudo_labels" / "youtube.npy")
    np.testing.assert_allclose(labels, teacher.predict(texts, ["youtube"])["youtube"].numpy(), atol=1e-5)
    assert not np.isin(labels, [0.0, 1.0]).all()  # probabilities, not one-hot
    weak = json.loads((run / "weak_stage" / "report.json").read_text())  # round 1's first stage
    assert weak["train_labels"]["youtube"] == str(run / "round0" / "pseudo_labels" / "youtube.npy")
    assert weak["sizes"]["youtube"]["train"] == len(texts)  # every row kept at min_confidence 0
    assert report["self_training"][0]["mean"] == round0["mean"]
    assert report["self_training"][0]["kept"] == {"youtube": 1.0}


def test_jtt_upweights_the_rows_the_first_model_gets_wrong(tmp_path: Path) -> None:
    """youtube on weak labels, sms on gold: the identification run's errors weigh 4x in the second run."""
    report = train(_cfg(tmp_path, "jtt.upweight=4", "jtt.steps=3", "trainer.max_steps=4"), echo=False)
    run = tmp_path / "run"
    first = json.loads((run / "jtt_identify" / "report.json").read_text())
    assert first["steps"] == 3 and report["steps"] == 4
    assert report["jtt"]["mean"] == first["mean"] and report["jtt"]["upweight"] == 4.0
    model = load_checkpoint(run / "jtt_identify" / "checkpoint")[0]
    for task in ("youtube", "sms"):
        targets = np.load(run / "jtt_identify" / "jtt_targets" / f"{task}.npy")
        assert report["train_labels"][task].endswith(f"jtt_targets/{task}.npy")
        split = load_task_splits(run_tasks(_cfg(tmp_path))[task], tmp_path / "cache", 42)["train"]
        wrong = model.predict(split["text"], [task])[task].argmax(1).numpy() != targets.argmax(1)
        sums = targets.sum(1)
        labelled = sums > 0
        if task == "sms":  # gold labels: one-hot, x4 where the first model was wrong
            assert labelled.all() and set(np.round(sums, 5)) <= {1.0, 4.0}
            assert ((sums == 4.0) == wrong).all()
        assert report["jtt"]["error_set"][task] == pytest.approx((wrong & labelled).sum() / labelled.sum())
    with pytest.raises(Exception, match=r"jtt.upweight cannot be combined with gold.mode"):
        train(_cfg(tmp_path, "jtt.upweight=4", "gold.mode=mix"), echo=False)
