"""Slice discovery on a synthetic dev split whose errors are planted in one cluster with its own words."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mtl.cli.slices import SlicesConfig
from mtl.config import CONF_DIR, SourceConfig, TaskConfig, check_config
from mtl.slice_discovery import (
    Discovery,
    default_k,
    discover,
    discover_slices,
    distinctive_words,
    keyword_mask,
    markdown_report,
    rediscover,
    sf_source,
    summary_table,
)
from mtl.slicing import load_sfs
from mtl.task import Task
from mtl.types import MtlError
from mtl.userload import load_object

PLANTED = ["refund", "baggage", "delayed"]
TOPICS = [PLANTED, ["song", "video", "music"], ["phone", "battery", "screen"], ["weather", "sunny", "rain"]]
TOPICS.append(["pizza", "lunch", "dinner"])
GROUP = 40  # rows per topic; topic 0 (rows 0-39) is where the model fails
UPPER, PLURAL = 130, 170  # rows of other topics that mention "REFUND!" (a whole word) and "refunds" (not)


def _dev() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """200 dev rows in 5 well-separated topics; errors: 30 of 40 in topic 0, 15 in topic 1, 2 elsewhere."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(TOPICS), 16)) * 5
    texts, vectors = [], []
    for g, words in enumerate(TOPICS):
        for i in range(GROUP):
            # each row names two of its topic's three words, plus words every topic shares
            texts.append(f"the {words[i % 3]} and {words[(i + 1) % 3]} today {i}")
            vectors.append(centres[g] + rng.normal(scale=0.3, size=16))
    texts[UPPER] += " REFUND!"
    texts[PLURAL] += " refunds"
    gold = np.zeros(len(texts), dtype=np.int64)
    pred = gold.copy()
    wrong = [*range(30), *range(40, 55), 90, 91, 130, 131, 170, 171, 190, 191]
    pred[wrong] = 1
    return texts, gold, pred, np.array(vectors, dtype=np.float32)


def _found() -> Discovery:
    texts, gold, pred, vectors = _dev()
    return discover_slices(
        texts, gold, pred, vectors, label_names=["ok", "bad"], k=5, min_size=20, seed=0, task="toy"
    )


def test_the_planted_cluster_ranks_first_with_its_words_and_errors_first() -> None:
    found = _found()
    assert (found.n, found.errors, found.k) == (200, 53, 5)
    top, second = found.slices  # the three other topics err less than the split: not slices
    assert top.rows == list(range(40)) and second.rows == list(range(40, 80))
    assert top.stats.size == 40 and top.stats.error_rate == 0.75
    assert top.stats.gap == pytest.approx(0.75 - 53 / 200) and top.stats.score == pytest.approx(
        40 * top.stats.gap
    )
    assert second.stats.gap == pytest.approx(15 / 40 - 53 / 200) and top.stats.score > second.stats.score
    assert set(top.words[:3]) == set(PLANTED) and top.keywords == top.words[:3]
    assert set(second.keywords) == {"song", "video", "music"}
    assert [s.name for s in found.slices] == ["discovered_1", "discovered_2"]
    # examples: the errors first, shown with class names
    assert len(top.examples) == 5 and all(
        e.error and (e.gold, e.predicted) == ("ok", "bad") for e in top.examples
    )
    # the keyword SF is not the cluster: it also marks the other topic's "REFUND!" row (an error)
    assert top.keyword_rows == [*range(40), UPPER]
    assert top.keyword_stats is not None and top.keyword_stats.size == 41 and top.keyword_stats.errors == 31


def test_distinctive_words_need_min_count_three_letters_and_over_representation() -> None:
    texts = ["ox ox bag late", "ox bag late", "ox bag", "ox the", "the song", "the song"]
    members = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    # "ox" (2 letters) never counts; "late" is in 2 member rows, below min_count=3; "the" is commoner outside
    assert distinctive_words(texts, members, min_count=3) == ["bag"]
    assert distinctive_words(texts, members, min_count=2) == ["bag", "late"]
    assert distinctive_words(texts, members, top=1, min_count=1) == ["bag"]
    assert distinctive_words(texts, members, min_count=1) == ["bag", "late"]  # "the": under-represented
    assert keyword_mask(["Bag!", "bags", "a-bag-b", "bag2"], ["bag"]).tolist() == [True, False, True, True]


def test_the_written_sf_file_loads_and_marks_exactly_the_rows_with_its_words(tmp_path: Path) -> None:
    texts = _dev()[0]
    found = _found()
    path = tmp_path / "toy_slices.py"
    path.write_text(sf_source(found, "Checkpoint: nowhere"))
    sfs = load_sfs(f"{path}:SFS")
    assert [sf.name for sf in sfs] == ["discovered_1", "discovered_2"]
    marked = [i for i, t in enumerate(texts) if sfs[0]({"text": t})]
    assert marked == [*range(40), UPPER]  # "REFUND!" counts, "refunds" (row PLURAL) does not
    assert [i for i, t in enumerate(texts) if sfs[1]({"text": t})] == list(range(40, 80))
    source = path.read_text()
    assert "# cluster" in source and "error rate 0.750" in source and "Checkpoint: nowhere" in source


def test_rediscovery_finds_the_planted_hand_slice_and_not_an_unrelated_one() -> None:
    texts, gold, pred, _ = _dev()
    found = _found()
    rows = np.arange(len(texts))
    hand = np.stack([rows < 40, rows % 5 == 1, rows < 15], axis=1)
    planted, unrelated, small = rediscover(
        hand, ["planted", "every_fifth", "small"], found.slices, pred != gold, min_size=20, jaccard=0.3
    )
    assert (planted.match, planted.by, planted.jaccard, planted.precision, planted.recall) == (
        "discovered_1",
        "cluster",
        1.0,
        1.0,
        1.0,
    )
    assert planted.rediscovered and planted.critical and planted.stats.error_rate == 0.75
    # every fifth row: 8 of the 40 in either slice; its best match is far below the threshold
    assert unrelated.critical and not unrelated.rediscovered
    assert unrelated.jaccard == pytest.approx(8 / 72) and unrelated.precision == pytest.approx(8 / 40)
    # inside the planted cluster but under min_size rows: shown, not counted
    assert not small.critical and not small.rediscovered and small.recall == 1.0
    # the threshold is the caller's: at 1/9 the unrelated slice would count
    assert rediscover(hand, ["a", "b", "c"], found.slices, pred != gold, jaccard=0.11)[1].rediscovered


def test_discover_runs_the_model_and_scores_the_tasks_hand_slices(tmp_path: Path) -> None:
    """With a model (predict and embed) and the written SFs as the task's hand slices: each is
    rediscovered with Jaccard 1 by its own keyword SF; the report says so, the JSON serialises."""
    texts, gold, pred, vectors = _dev()
    path = tmp_path / "toy_slices.py"
    path.write_text(sf_source(_found()))

    class Model:
        def predict(
            self, texts: Sequence[str], tasks: Sequence[str] | None = None
        ) -> dict[str, torch.Tensor]:
            assert list(tasks or []) == ["toy"]
            return {"toy": torch.nn.functional.one_hot(torch.from_numpy(pred), 2).float()}

        def embed(self, texts: Sequence[str]) -> torch.Tensor:
            return torch.from_numpy(vectors)

    source = SourceConfig(format="csv", path="unused.csv")  # type: ignore[arg-type]
    task = Task("toy", TaskConfig(label_names=["ok", "bad"], source=source, slices=f"{path}:SFS"))
    dev = datasets.Dataset.from_dict({"text": texts, "label": gold.tolist()})
    found = discover(Model(), task, dev, k=5, seed=0)
    assert found.metric == ("accuracy", pytest.approx(147 / 200))
    assert found.hand is not None and [h.name for h in found.hand] == ["discovered_1", "discovered_2"]
    # discovered_2's keyword SF marks its cluster's rows exactly: the cluster, found first, is named
    assert [(h.match, h.by, h.jaccard) for h in found.hand] == [
        ("discovered_1", "keywords", 1.0),
        ("discovered_2", "cluster", 1.0),
    ]
    assert (found.rediscovered, found.critical) == (2, 2)
    report = markdown_report(found)
    assert "rediscovered 2 of 2 critical (2 of 2 with gap > 0)" in report and "Jaccard >= 0.3" in report
    assert "| discovered_1 | 40 | 0.750 | +0.485 |" in report
    assert "| toy | 200 | 0.265 | 2 | 2 | 2 of 2 | 2 of 2 |" in summary_table({"toy": found})
    # a hand slice the model does well on is critical but not among those with a gap
    found.hand = rediscover(
        np.stack([np.arange(200) >= 100], axis=1), ["easy"], found.slices, pred != gold, min_size=20
    )
    assert found.rediscovery_line() == "rediscovered 0 of 1 critical (0 of 0 with gap > 0)"
    both = summary_table({"toy": found, "other": dataclasses.replace(found, hand=None)})
    assert "| other | 200 | 0.265 | 2 | 2 | (no hand slices) | - |" in both
    assert both.endswith("| **all** | | | 4 | 4 | 0 of 1 | 0 of 0 |")
    data = json.loads(json.dumps(found.to_dict()))
    assert data["rediscovery"]["jaccard_threshold"] == 0.3 and data["slices"][0]["keyword_sf"]["size"] == 41


def test_no_errors_gives_no_slices_and_an_empty_sf_list(tmp_path: Path) -> None:
    texts, gold, _, vectors = _dev()
    found = discover_slices(texts, gold, gold, vectors, task="toy")
    assert found.slices == [] and found.message == "no errors on the 200 dev rows: nothing to discover"
    path = tmp_path / "empty.py"
    path.write_text(sf_source(found))
    assert load_object(f"{path}:SFS") == []
    assert "nothing to discover" in path.read_text() and "**no errors" in markdown_report(found)
    with pytest.raises(MtlError, match="must be a non-empty list"):  # a task naming it fails, saying why
        load_sfs(f"{path}:SFS")


def test_bad_settings_and_inputs_are_named() -> None:
    texts, gold, pred, vectors = _dev()
    assert default_k(len(texts)) == 5 and default_k(10) == 2 and default_k(10_000) == 30
    with pytest.raises(
        MtlError, match=r"task 'toy': k=300 clusters need at least 300 dev rows, but its dev split has 200"
    ):
        discover_slices(texts, gold, pred, vectors, k=300, task="toy")
    with pytest.raises(
        MtlError, match=r"task 'toy': out of range: k=1 \(must be >= 2\), min_size=0 \(must be >= 1\)"
    ):
        discover_slices(texts, gold, pred, vectors, k=1, min_size=0, task="toy")
    with pytest.raises(MtlError, match=r"one row per dev row, got 200, 200, 199 and 200"):
        discover_slices(texts, gold, pred[:-1], vectors, task="toy")
    with pytest.raises(MtlError, match=r"rows x slices = 200 x 2, got \(200, 3\)"):
        rediscover(np.zeros((200, 3)), ["a", "b"], [], pred != gold)


def test_discover_refuses_bad_settings_before_running_the_model() -> None:
    class Model:
        def predict(
            self, texts: Sequence[str], tasks: Sequence[str] | None = None
        ) -> dict[str, torch.Tensor]:
            raise AssertionError("the model ran")

        embed = predict  # type: ignore[assignment]

    source = SourceConfig(format="csv", path="unused.csv")  # type: ignore[arg-type]
    task = Task("toy", TaskConfig(label_names=["ok", "bad"], source=source))
    dev = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]})
    with pytest.raises(
        MtlError, match=r"task 'toy': k=4 clusters need at least 4 dev rows, but its dev split has 3"
    ):
        discover(Model(), task, dev, k=4)
    with pytest.raises(MtlError, match=r"task 'toy': out of range: jaccard=0 \(must be in \(0, 1\]\)"):
        discover(Model(), task, dev, k=2, jaccard=0)


def test_the_command_config_composes_and_checks_its_ranges() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="slices", overrides=["checkpoint=somewhere"])
        with pytest.raises(Exception, match="min_size"):
            compose(config_name="slices", overrides=["checkpoint=x", "min_size=many"])
    assert (cfg.checkpoint, cfg.k, cfg.min_size, cfg.n_words, cfg.jaccard) == ("somewhere", None, 20, 3, 0.3)
    assert str(cfg.output_dir).startswith("outputs/slices/") and dict(cfg.tasks) == {}
    check_config(cfg)
    paths = {"data_root": "d", "cache_dir": "c", "output_dir": "o"}
    bad = OmegaConf.merge(
        OmegaConf.structured(SlicesConfig), {"checkpoint": "c", "k": 1, "jaccard": 1.5, **paths}
    )
    with pytest.raises(
        MtlError, match=r"out of range: k=1 \(must be >= 2\), .*jaccard=1.5 \(must be in \(0, 1\]\)"
    ):
        check_config(bad)
    with pytest.raises(MtlError, match=r"checkpoint is required"):
        check_config(OmegaConf.merge(OmegaConf.structured(SlicesConfig), paths))
