"""Slicing functions, the slice matrix, and per-slice evaluation (empty slices included)."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from mtl.config import EncoderConfig, SourceConfig, TaskConfig
from mtl.data import Collator, tokenize
from mtl.evaluate import evaluate_tasks, format_slice_table
from mtl.model import ClassificationHead, MultitaskModel, build_encoder
from mtl.prepare import add_slices
from mtl.slicing import SlicingFunction, load_sfs, slice_matrix, slicing_function
from mtl.task import Task
from mtl.weak import LFApplicationError


@slicing_function()
def has_cash(x: dict) -> bool:
    return "cash" in x["text"]


@slicing_function()
def never(x: dict) -> bool:
    return False


@slicing_function()
def broken(x: dict) -> bool:
    return x["missing_field"]


SFS = [has_cash, never]


def test_sf_is_an_lf_that_votes_membership() -> None:
    assert isinstance(has_cash, SlicingFunction)
    assert has_cash({"text": "win cash"}) == 1 and has_cash({"text": "hi"}) == 0
    ds = datasets.Dataset.from_dict({"text": ["win cash", "hi", "cash now"]})
    S = slice_matrix(ds, [has_cash, never])
    assert S.dtype == np.int8 and S.tolist() == [[1, 0], [0, 0], [1, 0]]
    expected = r"slicing function 'broken' failed on row 0 \('win cash'\): KeyError"
    with pytest.raises(LFApplicationError, match=expected):
        slice_matrix(ds, [broken])
    assert slice_matrix(ds, [broken], fault_tolerant=True).tolist() == [[0], [0], [0]]


def test_load_sfs_rejects_labeling_functions(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("from mtl.weak import keyword_lf\nSFS = [keyword_lf('k', ['a'], 1)]\n")
    with pytest.raises(ValueError, match=r"x\.py:SFS' must be a non-empty list of SlicingFunction objects"):
        load_sfs(f"{tmp_path}/x.py:SFS")


def test_per_slice_metrics_with_an_empty_slice(tiny_encoder_dir: Path) -> None:
    torch.manual_seed(0)
    enc, tok = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    model = MultitaskModel(enc, {"spam": ClassificationHead(32, 2)}).eval()
    texts = ["win cash now", "hello there", "cash cash", "see you at lunch"] * 3
    ds = datasets.Dataset.from_dict({"text": texts, "label": [1, 0, 1, 0] * 3})
    task = Task(
        "spam",
        TaskConfig(
            label_names=["ham", "spam"],
            source=SourceConfig(format="csv", path="x"),  # type: ignore[arg-type]
            slices=f"{Path(__file__).resolve()}:SFS",
        ),
    )
    dsd = add_slices(task, datasets.DatasetDict({"dev": ds}))
    dev = tokenize(dsd["dev"], tok, 16)
    acc = Accelerator()
    loader = acc.prepare(DataLoader(dev, batch_size=5, collate_fn=Collator(tok)))
    m = evaluate_tasks(model, {"spam": loader}, {"spam": task}, acc)["spam"]
    assert m["n"] == 12
    assert m["slices"]["has_cash"]["n"] == 6
    preds = model(tok(texts, padding=True, return_tensors="pt"), "spam").argmax(-1).numpy()
    in_slice = np.array(["cash" in t for t in texts])
    expected = float((preds[in_slice] == np.array([1, 0, 1, 0] * 3)[in_slice]).mean())
    assert m["slices"]["has_cash"]["accuracy"] == pytest.approx(expected)
    assert m["slices"]["never"]["n"] == 0 and math.isnan(m["slices"]["never"]["metric"])
    table = format_slice_table({"dev": {"spam": m}}, {"spam": task})
    assert "| spam | never | empty |" in table and "| spam | has_cash |" in table
