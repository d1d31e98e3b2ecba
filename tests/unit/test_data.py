"""Reading sources, leak-free splits, label encoding and the errors users see."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from mtl.config import SourceConfig, SplitConfig, TaskConfig
from mtl.data import make_splits, normalise_text
from mtl.prepare import load_task_splits
from mtl.sources import DataError, read_rows
from mtl.task import Task
from mtl.types import MtlError


def _csv_task(path: Path, **source: object) -> TaskConfig:
    src = SourceConfig(format="csv", path=str(path), text_field="body", label_field="y", **source)  # type: ignore[arg-type]
    return TaskConfig(label_names=["neg", "pos"], source=src, split=SplitConfig(dev=0.2, test=0.2))


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("body,y\n" + "".join(f'"{t}",{y}\n' for t, y in rows))
    return path


def test_normalise_text_merges_retweets_and_urls() -> None:
    assert normalise_text("RT @bob: Great flight!! http://t.co/x") == normalise_text("great   flight")


def test_splits_are_deterministic_and_keep_duplicates_together(tmp_path: Path) -> None:
    rows = [(f"text number {i}", "pos" if i % 2 else "neg") for i in range(300)]
    rows += [("RT @a: text number 7", "pos"), ("text number 7", "pos"), ("TEXT number 7!", "pos")]
    cfg = _csv_task(_write_csv(tmp_path / "d.csv", rows))
    a = load_task_splits(Task("t", cfg), tmp_path / "c1")
    b = load_task_splits(Task("t", cfg), tmp_path / "c2")
    assert {s: a[s]["text"] for s in a} == {s: b[s]["text"] for s in b}
    sides = {s for s in a for t in a[s]["text"] if normalise_text(t) == normalise_text("text number 7")}
    assert len(sides) == 1
    assert sum(len(a[s]) for s in a) == 302  # the exact duplicate of 'text number 7' is dropped
    assert 0.1 < len(a["test"]) / 303 < 0.3
    assert a["train"].features["label"].dtype == "int64"


def test_dedup_drops_exact_duplicates_and_train_rows_leaking_into_shipped_test(
    write_wrench: Callable[..., Path], tmp_path: Path
) -> None:
    folder = write_wrench(
        tmp_path / "w",
        {
            "train": [("a b", 0), ("a b", 0), ("leak", 1), ("c d", 1)],
            "dev": [("e f", 0), ("g h", 1)],
            "test": [("leak", 1), ("leak", 1)],
        },
    )
    cfg = TaskConfig(label_names=["x", "y"], source=SourceConfig(format="wrench", path=str(folder)))
    dsd = load_task_splits(Task("w", cfg), tmp_path / "cache")
    assert dsd["train"]["text"] == ["a b", "c d"]
    assert dsd["test"]["text"] == ["leak", "leak"]  # shipped evaluation splits stay as published
    assert dsd["train"]["weak_labels"] == [[0, -1], [1, -1]]


def test_max_rows_caps_each_split(tmp_path: Path) -> None:
    cfg = _csv_task(_write_csv(tmp_path / "d.csv", [(f"row {i}", "pos") for i in range(200)]))
    cfg.split.max_rows = {"train": 10, "test": 5}
    dsd = load_task_splits(Task("t", cfg), tmp_path / "cache")
    assert (len(dsd["train"]), len(dsd["test"])) == (10, 5)
    other = load_task_splits(Task("t", cfg), tmp_path / "cache", seed=1)
    assert other["test"]["text"] == dsd["test"]["text"]  # every seed is scored on the same test rows
    assert other["train"]["text"] != dsd["train"]["text"]  # the train subset is the seed's


def test_include_and_exclude_regex(tmp_path: Path) -> None:
    rows = [(f"@United flight {i}", "neg") for i in range(50)] + [(f"apple {i}", "pos") for i in range(50)]
    rows += [("@united apple", "pos")]
    path = _write_csv(tmp_path / "d.csv", rows)
    raw = read_rows(
        "t",
        SourceConfig(
            format="csv",
            path=str(path),
            text_field="body",
            label_field="y",
            include_regex="@united",
            exclude_regex="apple",
        ),
    )
    assert len(raw["all"]) == 50 and all("United" in r.text for r in raw["all"])


def test_tsv_glues_records_broken_by_stray_newlines(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("good movie\t1\nthis line was\nbroken in two\t0\nbad\t0\n")
    raw = read_rows(
        "t", SourceConfig(format="tsv", path=str(path), has_header=False, text_field="0", label_field="1")
    )
    assert [(r.text, r.label, r.line) for r in raw["all"]] == [
        ("good movie", "1", 1),
        ("this line was broken in two", "0", 2),
        ("bad", "0", 4),
    ]


def test_label_outside_label_names_names_file_and_row(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", [("fine", "pos"), ("odd", "maybe")])
    with pytest.raises(DataError, match=r"task 't'.*'maybe'.*d\.csv row 3.*\['neg', 'pos'\]"):
        load_task_splits(Task("t", _csv_task(path)), tmp_path / "cache")


def test_index_labels_and_label_map(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", [(f"r{i}", str(i % 2)) for i in range(40)] + [("z", "2")])
    with pytest.raises(DataError, match="label '2'"):
        load_task_splits(Task("t", _csv_task(path)), tmp_path / "c1")
    cfg = _csv_task(path, label_map={"2": "pos"})
    dsd = load_task_splits(Task("t", cfg), tmp_path / "c2")
    label = {t: y for split in dsd.values() for t, y in zip(split["text"], split["label"], strict=True)}
    assert (label["z"], label["r3"], label["r4"]) == (1, 1, 0)  # "2" -> pos (label_map); "1", "0" are indices


def test_missing_file_and_missing_field_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"task 't'.*nope\.csv.*does not exist"):
        load_task_splits(Task("t", _csv_task(tmp_path / "nope.csv")), tmp_path / "c")
    path = _write_csv(tmp_path / "d.csv", [("a", "pos")])
    cfg = _csv_task(path)
    cfg.source.text_field = "content"
    with pytest.raises(DataError, match=r"text field 'content'.*d\.csv row 2.*\['body', 'y'\]"):
        load_task_splits(Task("t", cfg), tmp_path / "c")


def test_empty_split_is_an_error_naming_the_split(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", [("only apples here", "pos")] * 3)
    cfg = _csv_task(path, include_regex="banana")
    with pytest.raises(DataError, match="task 't': split 'train' is empty"):
        load_task_splits(Task("t", cfg), tmp_path / "c")


def test_bad_split_fractions() -> None:
    with pytest.raises(DataError, match=r"split.dev \+ split.test"):
        make_splits("t", {"all": []}, SplitConfig(dev=0.6, test=0.5), 0)


def test_prepared_splits_are_cached(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", [(f"row {i}", "pos") for i in range(50)])
    cfg = _csv_task(path)
    load_task_splits(Task("t", cfg), tmp_path / "cache")
    folders = list((tmp_path / "cache" / "prepared").iterdir())
    assert len(folders) == 1
    load_task_splits(Task("t", cfg), tmp_path / "cache")
    assert list((tmp_path / "cache" / "prepared").iterdir()) == folders
    cfg.split.salt = "other"  # a different split config is a different cache entry
    load_task_splits(Task("t", cfg), tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "prepared").iterdir())) == 2


def test_hub_format_reads_a_local_datasets_folder(tmp_path: Path) -> None:
    """``format: hub`` goes through ``datasets.load_dataset``; a local folder exercises it offline."""
    folder = tmp_path / "hubby"
    folder.mkdir()
    (folder / "train.csv").write_text("sentence,label\n" + "".join(f"s{i},{i % 2}\n" for i in range(30)))
    (folder / "test.csv").write_text("sentence,label\nt0,0\nt1,1\n,1\n")  # an empty text: None, dropped
    src = SourceConfig(format="hub", path=str(folder), text_field="sentence")
    cfg = TaskConfig(label_names=["neg", "pos"], source=src, split=SplitConfig(dev=0.3, test=0.0))
    dsd = load_task_splits(Task("h", cfg), tmp_path / "cache")
    assert list(dsd["test"]["text"]) == ["t0", "t1"]  # not "None"
    assert len(dsd["train"]) + len(dsd["dev"]) == 30 and len(dsd["dev"]) > 0
    src.text_field = "text"
    with pytest.raises(DataError, match=r"field 'text' not in .*hubby\[train\]"):
        load_task_splits(Task("h", cfg), tmp_path / "cache2")


def test_tokenization_is_cached_by_datasets(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from transformers import AutoTokenizer

    from mtl.data import Collator, tokenize

    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    cfg = _csv_task(_write_csv(tmp_path / "d.csv", [(f"win cash now {i}", "pos") for i in range(40)]))
    train = load_task_splits(Task("t", cfg), tmp_path / "cache")["train"]
    first = tokenize(train, tok, 16)
    second = tokenize(train, tok, 16)
    assert first.cache_files and first.cache_files == second.cache_files
    assert tokenize(train, tok, 8).cache_files != first.cache_files  # other settings, other cache
    assert first.column_names == ["label", "input_ids", "token_type_ids", "attention_mask"]
    batch = Collator(tok)([first[0], first[1]])
    assert batch["input_ids"].shape[0] == 2 and batch["labels"].tolist() == [1, 1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": "acc"}, "metric 'acc' is not one of"),
        ({"label_names": ["a", "b", "c"], "metric": "f1"}, "metric 'f1' .* is for binary tasks"),
        ({"label_names": ["a", "a"]}, "label_names needs at least two distinct classes"),
        ({"label_names": ["only"]}, "label_names needs at least two distinct classes"),
    ],
)
def test_task_config_is_checked_before_any_work(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    cfg = _csv_task(tmp_path / "never_read.csv")
    for key, value in change.items():
        setattr(cfg, key, value)
    with pytest.raises(MtlError, match=f"task 't': {message}"):  # DataError is an MtlError
        Task("t", cfg)


@pytest.mark.parametrize("labels", ["gold", "weak"])
def test_cross_fitting_never_selects_on_a_row_it_trained_on(tmp_path: Path, labels: str) -> None:
    rows = [(f"review number {i}", "pos" if i % 3 else "neg") for i in range(200)]
    cfg = _csv_task(_write_csv(tmp_path / "d.csv", rows))
    whole = load_task_splits(Task("t", cfg), tmp_path / "c")
    folds = []
    for fold in range(5):
        cfg = dataclasses.replace(_csv_task(tmp_path / "d.csv"), labels=labels)
        cfg.split.dev_folds, cfg.split.dev_fold = 5, fold
        cfg.weak.gold_weight = 2.0 if labels == "weak" else 0.0  # weak: the gold rows beside train
        folds.append(load_task_splits(Task("t", cfg), tmp_path / "c"))
    dev = list(whole["dev"]["text"])
    for f in folds:
        gold = f["train" if labels == "gold" else "gold"]
        if labels == "weak":  # the weak rows are the train split, as without cross-fitting
            assert f["train"]["text"] == whole["train"]["text"]
        assert not set(gold["text"]) & set(f["dev"]["text"])  # never trained and selected on
        assert sorted([*gold["text"], *f["dev"]["text"]]) == sorted(dev)  # only the dev rows
        assert f["test"]["text"] == whole["test"]["text"]  # test untouched
    assert sorted(t for f in folds for t in f["dev"]["text"]) == sorted(dev)  # each row selected on once
    label = dict(zip(whole["dev"]["text"], whole["dev"]["label"], strict=True))
    first = folds[0]["train" if labels == "gold" else "gold"]
    assert all(label[t] == y for t, y in zip(first["text"], first["label"], strict=True))


def test_cross_fitting_errors_name_the_task_and_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _csv_task(_write_csv(tmp_path / "d.csv", [(f"r{i}", "pos") for i in range(30)]))
    cfg.split.dev_folds, cfg.split.max_rows = 5, {"dev": 3}
    weak = dataclasses.replace(cfg, labels="weak", weak=dataclasses.replace(cfg.weak, gold_weight=2.0))
    with pytest.raises(MtlError, match=r"task 't': weak.gold_weight=2.0 .* set split.dev_folds"):
        Task("t", dataclasses.replace(weak, split=SplitConfig()))
    with pytest.raises(MtlError, match=r"task 't': weak.gold_weight must be >= 0, and is for weak labels"):
        Task("t", dataclasses.replace(weak, labels="gold"))
    ranges = dataclasses.replace(cfg.weak, gold_lf=-1, knn=dataclasses.replace(cfg.weak.knn, k=-2))
    with pytest.raises(
        MtlError,
        match=r"task 't': out of range: weak.knn.k=-2 \(must be >= 0\), weak.gold_lf=-1 \(must be >= 0\)$",
    ):
        Task("t", dataclasses.replace(cfg, weak=ranges))
    cfg.split.max_rows = {"dev": 12}
    with caplog.at_level(logging.WARNING, logger="mtl.data"):
        load_task_splits(
            Task("t", dataclasses.replace(cfg, split=dataclasses.replace(cfg.split, dev_folds=2))),
            tmp_path / "w",
        )
    assert "task 't': split.dev_folds=2: fold 0 holds" in caplog.text and "mostly noise" in caplog.text
    cfg.split.max_rows = {"dev": 3}
    with pytest.raises(DataError, match=r"task 't': split.dev_folds=5: fold \d holds 0 of the \d+ dev rows"):
        for fold in range(5):  # 3 dev rows in 5 folds: some fold is empty
            cfg.split.dev_fold = fold
            load_task_splits(Task("t", cfg), tmp_path / "c")


AG_NAMES = ["World", "Sports", "Business", "Sci/Tech"]


def _ag_task(path: Path, **source: object) -> TaskConfig:
    src = SourceConfig(format="csv", path=str(path), text_field="body", label_field="y", **source)  # type: ignore[arg-type]
    return TaskConfig(label_names=AG_NAMES, source=src, split=SplitConfig(dev=0.2, test=0.2))


def test_one_based_labels_are_an_error_that_writes_out_the_label_map(tmp_path: Path) -> None:
    # AG News: classes 1..4; the file read has no 4, so nothing is out of range and, read as 0-based
    # indices, 1 would silently become "Sports"
    path = _write_csv(tmp_path / "ag.csv", [(f"news {i}", str(1 + i % 3)) for i in range(60)])
    with pytest.raises(DataError) as err:
        load_task_splits(Task("ag", _ag_task(path)), tmp_path / "c")
    message = str(err.value)
    assert message.startswith(
        "task 'ag': every label is a number and none is 0 (values seen: ['1', '2', '3'])"
    )
    one_based = '{"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}'
    assert f"set source.label_map: {one_based} in the task YAML" in message
    assert not (tmp_path / "c" / "prepared").exists() or not any((tmp_path / "c" / "prepared").iterdir())
    # the map the message writes out reads them as 1-based
    dsd = load_task_splits(Task("ag", _ag_task(path, label_map=json.loads(one_based))), tmp_path / "c")
    label = {t: y for split in dsd.values() for t, y in zip(split["text"], split["label"], strict=True)}
    assert (label["news 0"], label["news 1"], label["news 2"]) == (0, 1, 2)


@pytest.mark.parametrize(
    ("names", "labels"),
    [
        (AG_NAMES, ["0", "1", "3"]),  # a 0 among them: 0-based indices
        (["1", "2", "3", "4", "5"], ["1", "2", "5"]),  # star ratings: the numbers are the class names
        (["neg", "pos"], ["1.0", "neg"]),  # not all numbers
    ],
)
def test_labels_that_are_not_one_based_load(tmp_path: Path, names: list[str], labels: list[str]) -> None:
    path = _write_csv(tmp_path / "d.csv", [(f"row {i}", labels[i % len(labels)]) for i in range(60)])
    cfg = dataclasses.replace(_ag_task(path), label_names=names)
    dsd = load_task_splits(Task("t", cfg), tmp_path / "c")
    assert sum(len(d) for d in dsd.values()) == 60


def test_class_without_train_rows_is_warned_on_every_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write_csv(tmp_path / "ag.csv", [(f"news {i}", AG_NAMES[i % 2]) for i in range(60)])
    cfg = _ag_task(path)
    for _ in range(2):  # the second run reads the prepared splits from the cache and still warns
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mtl.prepare"):
            load_task_splits(Task("ag", cfg), tmp_path / "c")
        assert "task 'ag': class(es) ['Business', 'Sci/Tech'] have no rows in the train split" in caplog.text
        assert "1-based numbers read as 0-based" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mtl.prepare"):  # every class present: silent
        load_task_splits(Task("ag", dataclasses.replace(cfg, label_names=AG_NAMES[:2])), tmp_path / "c")
    assert "no rows in the train split" not in caplog.text


def test_class_missing_from_the_cross_fitted_gold_train_rows_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cross-fitted with gold labels, the train split is the gold folds of dev: a class that the source
    has only in the shipped train file never reaches training."""
    folder = tmp_path / "src"
    folder.mkdir()
    _write_csv(folder / "train.csv", [(f"train row {i}", AG_NAMES[i % 3]) for i in range(30)])
    _write_csv(folder / "dev.csv", [(f"dev row {i}", AG_NAMES[i % 2]) for i in range(40)])
    _write_csv(folder / "test.csv", [(f"test row {i}", AG_NAMES[i % 3]) for i in range(10)])
    files = {s: [f"{s}.csv"] for s in ("train", "dev", "test")}
    cfg = _ag_task(folder, files=files)
    cfg.split.dev_folds = 2
    with caplog.at_level(logging.WARNING, logger="mtl.prepare"):
        dsd = load_task_splits(Task("ag", cfg), tmp_path / "c")
    assert set(dsd["train"]["label"]) == {0, 1}
    assert "task 'ag': class(es) ['Business', 'Sci/Tech'] have no rows" in caplog.text


def test_empty_texts_are_dropped_from_every_split_and_votes_stay_aligned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    texts = {
        "train": ["alpha one", "", "beta two", "   ", "gamma three", "delta four"],
        "valid": ["dev a", "dev b"],
        "test": ["test a", "\t\n", "test b"],
    }
    for name, items in texts.items():
        # each row's votes name the row, so a shift between texts and votes shows
        data = {
            str(i): {"label": i % 2, "data": {"text": t}, "weak_labels": [i % 2, 100 + i]}
            for i, t in enumerate(items)
        }
        (folder / f"{name}.json").write_text(json.dumps(data))
    cfg = TaskConfig(label_names=["x", "y"], source=SourceConfig(format="wrench", path=str(folder)))
    with caplog.at_level(logging.WARNING, logger="mtl.sources"):
        dsd = load_task_splits(Task("w", cfg), tmp_path / "cache")
    assert "task 'w': dropped 3 rows with an empty text (train 2, test 1)" in caplog.text
    assert dsd["train"]["text"] == ["alpha one", "beta two", "gamma three", "delta four"]
    assert [v[1] for v in dsd["train"]["weak_labels"]] == [100, 102, 104, 105]
    assert dsd["train"]["label"] == [0, 0, 0, 1]
    assert dsd["test"]["text"] == ["test a", "test b"]
    assert [v[1] for v in dsd["test"]["weak_labels"]] == [100, 102]
