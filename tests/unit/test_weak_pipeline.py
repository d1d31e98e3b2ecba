"""A task's weak labels end to end (LFs from a file, label model, uncovered policy, cache) and training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from mtl.config import DenoiseConfig, EmbeddingConfig, KnnConfig, SourceConfig, TaskConfig, WeakConfig
from mtl.prepare import load_task_splits, training_targets
from mtl.task import Task
from mtl.types import MtlError
from mtl.weak import MajorityVote, apply_temperature, pipeline
from mtl.weak.pipeline import weak_label


def _task(spam_folder: Path, tmp_path: Path, **weak: object) -> TaskConfig:
    (tmp_path / "my_lfs.py").write_text(
        "from mtl.weak import keyword_lf\nLFS = [keyword_lf('cash', ['cash', 'win'], 1), "
        "keyword_lf('hello', ['hello', 'lunch'], 0)]\n"
    )
    settings = {"lfs": f"{tmp_path}/my_lfs.py:LFS", "label_model": "majority_vote", **weak}
    return TaskConfig(
        label_names=["ham", "spam"],
        source=SourceConfig(format="wrench", path=str(spam_folder)),
        labels="weak",
        weak=WeakConfig(**settings),
    )  # type: ignore[arg-type]


def test_weak_labels_from_lfs_file_and_published_votes(spam_folder: Path, tmp_path: Path) -> None:
    cfg = _task(spam_folder, tmp_path, weak_labels_field="weak_labels")
    dsd = load_task_splits(Task("spam", cfg), tmp_path / "cache")
    wl = weak_label(Task("spam", cfg), dsd, tmp_path / "cache")
    assert wl.lf_names == ["weak_labels[0]", "weak_labels[1]", "cash", "hello"]
    assert wl.L["train"].shape == (48, 4) and wl.L["dev"].shape == (8, 4)
    assert wl.summary["train"]["coverage"] == 1.0  # the fixture's published LF 0 votes the gold label
    assert wl.summary["dev"]["accuracy_all_rows"] == 1.0
    assert [r["lf"] for r in wl.analysis] == [*wl.lf_names, "*all*"]
    assert (wl.folder / "lf_analysis.csv").exists() and (wl.folder / "label_model.json").exists()
    again = weak_label(Task("spam", cfg), dsd, tmp_path / "cache")  # read from the cache
    assert again.folder == wl.folder
    np.testing.assert_array_equal(again.train_probs, wl.train_probs)
    named = weak_label(
        Task("spam", _task(spam_folder, tmp_path, label_model="dawid_skene")), dsd, tmp_path / "c2"
    )
    assert named.summary["label_model"] == "dawid_skene" and named.summary["fallback"] is None  # a sane fit
    assert json.loads((named.folder / "label_model.json").read_text())["type"] == "LabelModel"


def test_uncovered_rows_dropped_or_kept_at_low_weight(spam_folder: Path, tmp_path: Path) -> None:
    cfg = _task(spam_folder, tmp_path)
    dsd = load_task_splits(Task("spam", cfg), tmp_path / "cache")
    covered = int((weak_label(Task("spam", cfg), dsd, tmp_path / "cache").L["train"] != -1).any(1).sum())
    assert 0 < covered < 48
    dropped = training_targets(Task("spam", cfg), dsd, tmp_path / "cache")
    assert len(dropped) == covered
    assert all(abs(sum(p) - 1) < 1e-6 for p in dropped["label_probs"])
    cfg.weak.uncovered = "prior"
    kept = training_targets(Task("spam", cfg), dsd, tmp_path / "cache")
    assert len(kept) == 48
    weights = sorted(round(sum(p), 4) for p in kept["label_probs"])
    assert weights[0] == 0.1 and weights[-1] == 1.0 and weights.count(0.1) == 48 - covered


def test_gold_rows_of_the_training_folds_are_mixed_in_at_their_weight(
    spam_folder: Path, tmp_path: Path
) -> None:
    cfg = _task(spam_folder, tmp_path, gold_weight=2.5)
    cfg.split.dev_folds, cfg.split.dev_fold = 2, 0
    dsd = load_task_splits(Task("spam", cfg), tmp_path / "cache")
    plain = dataclasses.replace(cfg, weak=dataclasses.replace(cfg.weak, gold_weight=0.0))
    without = datasets.DatasetDict({s: d for s, d in dsd.items() if s != "gold"})
    weak_only = training_targets(Task("spam", plain), without, tmp_path / "cache")
    mixed = training_targets(Task("spam", cfg), dsd, tmp_path / "cache")
    gold = dsd["gold"]
    assert len(mixed) == len(weak_only) + len(gold) and len(gold) > 0
    tail = mixed.select(range(len(weak_only), len(mixed)))  # the gold rows come after the weak ones
    assert tail["text"] == gold["text"]
    assert [p.index(max(p)) for p in tail["label_probs"]] == gold["label"]  # one-hot on the gold class
    assert {round(sum(p), 6) for p in tail["label_probs"]} == {2.5}  # ... scaled by the weight
    assert max(sum(p) for p in mixed.select(range(len(weak_only)))["label_probs"]) <= 1 + 1e-6


def test_knn_extension_covers_uncovered_rows_before_the_label_model(
    spam_folder: Path, tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    cfg = _task(spam_folder, tmp_path)
    task = Task("spam", cfg)
    dsd = load_task_splits(task, tmp_path / "cache")
    plain = weak_label(task, dsd, tmp_path / "cache")
    cfg.weak.knn = KnnConfig(k=3, min_similarity=-1.0)
    cfg.weak.embedding = EmbeddingConfig(encoder=str(tiny_encoder_dir), max_length=16)
    wl = weak_label(Task("spam", cfg), dsd, tmp_path / "cache")
    knn = wl.summary["knn"]
    before = float((plain.L["train"] != -1).any(1).mean())
    assert knn["train"]["coverage_before"] == pytest.approx(before) and before < 1
    assert knn["train"]["coverage_after"] == 1.0 and (wl.L["train"] != -1).any(1).all()  # every row now
    covered = (plain.L["train"] != -1).any(1)
    assert (wl.L["train"][covered] == plain.L["train"][covered]).all()  # the LFs' own votes stay
    assert 0 <= knn["dev"]["extended_vote_accuracy"] <= 1 and knn["dev"]["extended_votes"] > 0
    assert len(training_targets(Task("spam", cfg), dsd, tmp_path / "cache")) == len(dsd["train"])
    assert wl.folder != plain.folder  # its own cache entry


def test_denoise_drops_or_downweights_the_flagged_rows(
    spam_folder: Path, tmp_path: Path, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def three_flags(feats: np.ndarray, probs: np.ndarray, folds: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(probs.sum(1) > 0)
        assert feats.shape == (len(probs), 32) and folds == 2  # the train split's vectors, the config's folds
        flags = np.zeros(len(probs), dtype=bool)
        flags[rows[:3]] = True  # the flagger itself: tests/unit/test_denoise.py
        return flags, np.where(probs.sum(1) > 0, 1.0 - flags, np.nan)

    monkeypatch.setattr(pipeline, "flag_label_issues", three_flags)
    cfg = _task(spam_folder, tmp_path)
    cfg.weak.embedding = EmbeddingConfig(encoder=str(tiny_encoder_dir), max_length=16)
    dsd = load_task_splits(Task("spam", cfg), tmp_path / "cache")
    plain = weak_label(Task("spam", cfg), dsd, tmp_path / "cache").train_probs
    out = {}
    for method in ("drop", "downweight"):
        cfg.weak.denoise = DenoiseConfig(method=method, weight=0.25, folds=2)  # type: ignore[arg-type]
        wl = weak_label(Task("spam", cfg), dsd, tmp_path / "cache")
        out[method] = wl.train_probs
        report = wl.summary["denoise"]
        assert report["rows"] == int((plain.sum(1) > 0).sum()) and set(report["precision_at"]) == {
            "100",
            "500",
        }
    flagged = (out["drop"].sum(1) == 0) & (plain.sum(1) > 0)
    assert flagged.sum() == report["flagged"] == 3
    assert np.allclose(out["downweight"][flagged], plain[flagged] * 0.25)
    assert np.allclose(out["downweight"][~flagged], plain[~flagged])


def test_gold_lf_votes_with_the_training_folds_gold_rows(
    spam_folder: Path, tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    cfg = _task(spam_folder, tmp_path, gold_lf=3)
    cfg.weak.embedding = EmbeddingConfig(encoder=str(tiny_encoder_dir), max_length=16)
    with pytest.raises(MtlError, match=r"task 'spam': weak.gold_lf votes with the gold rows .* cross-fitted"):
        weak_label(
            Task("spam", cfg), load_task_splits(Task("spam", cfg), tmp_path / "cache"), tmp_path / "cache"
        )
    cfg.split.dev_folds, cfg.split.dev_fold = 2, 1
    dsd = load_task_splits(Task("spam", cfg), tmp_path / "cache")
    wl = weak_label(Task("spam", cfg), dsd, tmp_path / "cache")
    assert wl.lf_names[-1] == "gold_knn" and wl.summary["selected_on"] == "gold"
    assert all(wl.L[s].shape == (len(dsd[s]), len(wl.lf_names)) for s in ("train", "dev", "test", "gold"))
    assert (wl.L["train"][:, -1] != -1).all()  # a kNN classifier votes on every row


def test_label_probabilities_are_calibrated_on_dev_unless_disabled(spam_folder: Path, tmp_path: Path) -> None:
    raw = _task(spam_folder, tmp_path, calibrate=False)
    dsd = load_task_splits(Task("spam", raw), tmp_path / "cache")
    plain = weak_label(Task("spam", raw), dsd, tmp_path / "cache")
    assert plain.summary["calibration"] == {}
    np.testing.assert_allclose(
        plain.train_probs,
        MajorityVote(2).predict_proba(plain.L["train"]) * ((plain.L["train"] != -1).any(1)[:, None]),
    )
    cal = weak_label(Task("spam", _task(spam_folder, tmp_path)), dsd, tmp_path / "cache")
    c = cal.summary["calibration"]
    assert cal.folder != plain.folder  # a cache entry of its own
    assert c["dev_nll_after"] <= c["dev_nll_before"] and c["temperature"] > 0
    covered = cal.train_probs.sum(1) > 0
    np.testing.assert_array_equal(covered, plain.train_probs.sum(1) > 0)
    np.testing.assert_allclose(
        cal.train_probs[covered], apply_temperature(plain.train_probs[covered], c["temperature"])
    )


def test_saved_labels_file_and_bad_config(spam_folder: Path, tmp_path: Path) -> None:
    cfg = _task(spam_folder, tmp_path)
    dsd = load_task_splits(Task("spam", cfg), tmp_path / "cache")
    wl = weak_label(Task("spam", cfg), dsd, tmp_path / "cache")
    cfg.labels = str(wl.folder / "train_probs.npy")
    from_file = training_targets(Task("spam", cfg), dsd, tmp_path / "cache")
    assert len(from_file) == int((wl.train_probs.sum(1) > 0).sum())
    np.save(tmp_path / "short.npy", np.ones((3, 2)) / 2)
    cfg.labels = str(tmp_path / "short.npy")
    with pytest.raises(MtlError, match=r"has shape \(3, 2\); the train split needs \(48, 2\)"):
        training_targets(Task("spam", cfg), dsd, tmp_path / "cache")
    bad = _task(spam_folder, tmp_path, label_model="snorkel")
    with pytest.raises(MtlError, match=r"weak\.label_model 'snorkel' is not one of"):
        weak_label(Task("spam", bad), dsd, tmp_path / "cache")
    none = _task(spam_folder, tmp_path, lfs=None)
    with pytest.raises(MtlError, match=r"no weak supervision configured: set tasks\.spam\.weak\.lfs"):
        weak_label(Task("spam", none), dsd, tmp_path / "cache")
    missing = _task(spam_folder, tmp_path, lfs=f"{tmp_path}/nope.py:LFS")
    with pytest.raises(MtlError, match=r"nope\.py' not found"):
        weak_label(Task("spam", missing), dsd, tmp_path / "cache")
