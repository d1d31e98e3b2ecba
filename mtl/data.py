"""The data building blocks of a task: leak-free splits, label encoding, tokenizing, batching.

``make_splits`` carves missing dev/test splits by a hash of normalised text (dedup, caps); ``label_index``
maps class names or indices to ids (errors name the file and row) and ``check_not_one_based`` stops
1-based class numbers from being read as 0-based indices; ``tokenize`` (``Dataset.map``, cached
by ``datasets``' fingerprinting) leaves padding to ``Collator``, which pads per batch, not to
``max_length``; ``LengthGroupedBatchSampler`` batches similar lengths. ``mtl.prepare`` runs them in order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from mtl.config import SplitConfig
from mtl.sources import SPLITS, DataError, RawRow
from mtl.types import ABSTAIN

log = logging.getLogger("mtl.data")
SMALL_FOLD = 30
"""A held-out dev fold with fewer rows gets a warning: selecting a checkpoint on it is mostly noise."""


def normalise_text(text: str) -> str:
    """The key used to keep duplicates together: lower case, no URLs, no ``RT @x:``, words only."""
    t = text.lower()
    t = re.sub(r"^\s*rt\s+@\w+:?", " ", t)
    t = re.sub(r"https?://\S+|www\.\S+", " ", t)
    t = re.sub(r"[^\w@#]+", " ", t)
    return " ".join(t.split())


def _hash_unit(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# ---------------------------------------------------------------------------------------------- splits


def make_splits(
    task: str, raw: dict[str, list[RawRow]], cfg: SplitConfig, seed: int
) -> dict[str, list[RawRow]]:
    """Carve missing dev/test splits from train/all by text hash, dedup, apply caps.

    The hash is of ``normalise_text(text)``, so exact duplicates and retweets of one text never straddle
    a split. When the source ships dev or test, train rows whose normalised text also appears there are
    dropped from train (no leakage), and the shipped splits themselves are kept as published (not
    deduplicated), so their metrics compare with the literature. ``dedup`` removes exact duplicate
    texts from train and from carved splits.
    """
    if not 0 <= cfg.dev < 1 or not 0 <= cfg.test < 1 or cfg.dev + cfg.test >= 1:
        raise DataError(
            f"task {task!r}: split.dev + split.test must be in [0, 1), got {cfg.dev} + {cfg.test}"
        )
    pool = raw.get("all", raw.get("train", []))
    splits: dict[str, list[RawRow]] = {s: list(raw.get(s, [])) for s in ("dev", "test")}
    carve = [s for s in ("dev", "test") if s not in raw]
    train: list[RawRow] = []
    bounds = {"dev": cfg.dev if "dev" in carve else 0.0, "test": cfg.test if "test" in carve else 0.0}
    for row in pool:
        u = _hash_unit(normalise_text(row.text), cfg.salt)
        if u < bounds["dev"]:
            splits["dev"].append(row)
        elif u < bounds["dev"] + bounds["test"]:
            splits["test"].append(row)
        else:
            train.append(row)
    held_out = {normalise_text(r.text) for s in ("dev", "test") for r in splits[s]}
    splits["train"] = [r for r in train if normalise_text(r.text) not in held_out]
    for split in SPLITS:
        rows = splits[split]
        # Shipped dev/test splits stay as published, so metrics compare with the literature.
        if cfg.dedup and (split == "train" or split in carve):
            seen: set[str] = set()
            kept = []
            for r in rows:
                if r.text not in seen:
                    seen.add(r.text)
                    kept.append(r)
            rows = kept
        cap = cfg.max_rows.get(split)
        if cap is not None and len(rows) > cap:
            # dev/test: the same rows whatever the run's seed (runs of several seeds are scored on one
            # test set); train: a subset per seed (part of what varies between seeds)
            draw = random.Random(f"{seed}-{split}" if split == "train" else f"{cfg.salt}-{split}")
            idx = sorted(draw.sample(range(len(rows)), cap))
            rows = [rows[i] for i in idx]
        if not rows:
            raise DataError(
                f"task {task!r}: split {split!r} is empty "
                "(check source.files, include_regex and split fractions)"
            )
        splits[split] = rows
    unknown = set(cfg.max_rows) - set(SPLITS)
    if unknown:
        raise DataError(f"task {task!r}: split.max_rows has unknown split(s) {sorted(unknown)}")
    return cross_fit(task, splits, cfg) if cfg.dev_folds else splits


def cross_fit(task: str, splits: dict[str, list[RawRow]], cfg: SplitConfig) -> dict[str, list[RawRow]]:
    """One fold of the dev split's gold rows (``split.dev_folds`` > 0): ``dev`` becomes the dev rows in
    fold ``split.dev_fold`` and a fourth split, ``gold``, holds the dev rows outside it (the run's gold
    training rows: see ``mtl.prepare.load_task_splits``); ``train`` and ``test`` are unchanged. A row's
    fold is a hash of its normalised text (duplicates share a fold), so over the folds every dev row is
    selected on exactly once and never by a model that trained on it.

    Example:
        >>> rows = {"train": [RawRow("t", 0, "f", 1, {})], "test": [RawRow("x", 1, "f", 2, {})],
        ...         "dev": [RawRow(f"dev row {i}", i % 2, "f", i, {}) for i in range(20)]}
        >>> folds = [cross_fit("t", rows, SplitConfig(dev_folds=4, dev_fold=f)) for f in range(4)]
        >>> sorted(r.line for f in folds for r in f["dev"]) == list(range(20))  # each dev row once
        True
        >>> any({r.line for r in f["dev"]} & {r.line for r in f["gold"]} for f in folds)
        False
    """
    k, fold = cfg.dev_folds, cfg.dev_fold
    if k < 2 or not 0 <= fold < k:
        raise DataError(
            f"task {task!r}: split.dev_folds must be >= 2 and split.dev_fold in 0..dev_folds-1, "
            f"got dev_folds={k}, dev_fold={fold}"
        )
    dev = splits["dev"]
    of = [int(_hash_unit(normalise_text(r.text), f"{cfg.salt}-fold") * k) for r in dev]
    held = [r for r, f in zip(dev, of, strict=True) if f == fold]
    rest = [r for r, f in zip(dev, of, strict=True) if f != fold]
    if not held or not rest:
        raise DataError(
            f"task {task!r}: split.dev_folds={k}: fold {fold} holds {len(held)} of the {len(dev)} dev rows, "
            f"leaving {'nothing to select on' if not held else 'nothing to train on'}; use fewer folds"
        )
    if len(held) < SMALL_FOLD:
        log.warning(
            "task %r: split.dev_folds=%d: fold %d holds %d dev rows; selecting on so few is mostly noise "
            "(use fewer folds, or lift split.max_rows.dev)",
            task,
            k,
            fold,
            len(held),
        )
    return {"train": splits["train"], "dev": held, "test": splits["test"], "gold": rest}


def _as_int(key: str) -> int | None:
    """The class index a raw label key spells (``"2"``, ``"2.0"``, ``" 2 "``), or None."""
    try:
        number = float(key)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


def _key(raw: Any) -> str:
    return "" if raw is None else str(raw).strip()


def _mapped(raw: Any, label_map: dict[str, str]) -> str:
    """The raw label's key after ``label_map``; a label read as a number (``1.0``) also finds the key
    written as an integer (``"1"``)."""
    key = _key(raw)
    if key in label_map:
        return label_map[key]
    n = None if isinstance(raw, bool) else _as_int(key)
    return label_map.get(str(n), key) if n is not None else key


def label_index(task: str, label_names: list[str], label_map: dict[str, str]) -> Callable[[RawRow], int]:
    """Return a function mapping a raw label to a class id: a ``label_map`` key (an integral number
    also finds its integer key: ``1.0`` finds ``"1"``) or a class name, else a 0-based class index
    (``"2"``, ``2``, ``2.0``). Anything else (``None``, booleans, ``""``, other names and numbers) is a
    ``DataError`` naming the file and row.

    Example:
        >>> encode = label_index("t", ["World", "Sports"], {"sport": "Sports"})
        >>> [encode(RawRow("x", y, "f.csv", 2, {})) for y in ["World", "sport", 1, "0", 1.0]]
        [0, 1, 1, 0, 1]
    """
    by_name = {name: i for i, name in enumerate(label_names)}

    def encode(row: RawRow) -> int:
        raw = row.label
        key = _mapped(raw, label_map)
        if key in by_name:
            return by_name[key]
        n = None if isinstance(raw, bool) else _as_int(key)
        if n is not None and 0 <= n < len(label_names):
            return n
        raise DataError(
            f"task {task!r}: label {raw!r} in {row.file} row {row.line} is not one of the task's "
            f"label_names {label_names} (nor an index into them, nor a key of source.label_map)"
        )

    return encode


def check_not_one_based(
    task: str, label_names: list[str], label_map: dict[str, str], rows: Iterable[RawRow]
) -> None:
    """Fail when a task's labels look like 1-based class numbers: every label is a number in
    1..len(label_names), none is a class name or a ``label_map`` key, and none is 0. Read as 0-based
    indices, class 1 would become the second name and the first would get no rows, silently; the
    error writes out the ``source.label_map`` that reads them as 1-based.

    Call it with every row of the task (all splits, before splitting): one split alone may lack a 0.

    Example:
        >>> rows = [RawRow("x", y, "ag.csv", i, {}) for i, y in enumerate([3, 1, 2], start=2)]
        >>> names = ["World", "Sports", "Business", "Sci/Tech"]
        >>> check_not_one_based("ag", names, {}, rows)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mtl.sources.DataError: task 'ag': every label is a number and none is 0 (values seen: [1, 2, 3]);...
    """
    by_name = set(label_names)
    seen: dict[int, Any] = {}
    for row in rows:
        key = _key(row.label)
        n = None if isinstance(row.label, bool) else _as_int(key)
        if key in by_name or key in label_map or (n is not None and str(n) in label_map):
            return  # named, or mapped: not a bare index
        if n is None or not 1 <= n <= len(label_names):
            return  # a 0, or a label that label_index reports by its row
        seen.setdefault(n, row.label)
    if not seen:
        return
    values = [seen[n] for n in sorted(seen)]
    one_based = json.dumps({str(i): name for i, name in enumerate(label_names, start=1)})
    as_is = json.dumps({str(n): label_names[n] for n in sorted(seen) if n < len(label_names)})
    raise DataError(
        f"task {task!r}: every label is a number and none is 0 (values seen: {values[:20]}"
        f"{' ...' if len(values) > 20 else ''}); they look 1-based, but numbers are read as 0-based "
        f"indices into label_names {label_names}, so {label_names[0]!r} would get no rows. If 1 means "
        f"{label_names[0]!r}, set source.label_map: {one_based} in the task YAML; if they are 0-based "
        f"and class 0 has no rows, set source.label_map: {as_is}"
    )


def tokenize(
    ds: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, keep_text: bool = False
) -> datasets.Dataset:
    """Tokenize without padding (batches are padded by ``Collator``); cached by ``datasets``."""

    def fn(batch: dict[str, list[Any]]) -> dict[str, Any]:
        return dict(tokenizer(batch["text"], truncation=True, max_length=max_length))

    keep = {"label", "label_probs", "slices", *(["text"] if keep_text else [])}
    remove = [c for c in ds.column_names if c not in keep]
    return ds.map(fn, batched=True, remove_columns=remove, desc="tokenize")


class Collator:
    """Pad a list of tokenized examples to the longest in the batch; carry hard or soft labels.

    ``labels`` is an int tensor (``ABSTAIN`` = -1 masks a row) or, when examples carry ``label_probs``,
    a float tensor of class probabilities; ``slices`` (rows x slices, 0/1) and ``features`` (cached
    pooled vectors) when examples carry them.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        extra = ("label", "label_probs", "slices", "text", "features")
        feats = [{k: v for k, v in e.items() if k not in extra} for e in examples]
        batch = dict(self.tokenizer.pad(feats, return_tensors="pt"))
        if examples and "features" in examples[0]:  # a frozen encoder's cached output (mtl.features)
            batch["features"] = torch.tensor([e["features"] for e in examples], dtype=torch.float32)
        if examples and "slices" in examples[0]:
            batch["slices"] = torch.tensor([e["slices"] for e in examples], dtype=torch.int8)
        if examples and "label_probs" in examples[0]:
            batch["labels"] = torch.tensor([e["label_probs"] for e in examples], dtype=torch.float32)
        elif examples and "label" in examples[0]:
            batch["labels"] = torch.tensor(
                [ABSTAIN if e["label"] is None else e["label"] for e in examples], dtype=torch.long
            )
        return batch


class LengthGroupedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar length, in random order: less padding, same examples per epoch.

    Each pass shuffles the indices (seeded by ``seed`` and the pass number), cuts them into mega-batches
    of ``batch_size * mega``, sorts each mega-batch by length, slices the result into batches and
    shuffles the order of the full ones; the one partial batch, if any, comes last (accelerate's
    sharding across processes keeps only full batches and a last partial one). Every process built
    with the same seed yields the same batches.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, mega: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.mega = lengths, batch_size, seed, mega
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(f"{self.seed}-{self.epoch}")
        self.epoch += 1
        idx = list(range(len(self.lengths)))
        rng.shuffle(idx)
        size, b = self.batch_size * self.mega, self.batch_size
        order = [
            i
            for start in range(0, len(idx), size)
            for i in sorted(idx[start : start + size], key=lambda i: -self.lengths[i])
        ]
        batches = [order[i : i + b] for i in range(0, len(order), b)]
        partial = batches.pop() if batches and len(batches[-1]) < b else None
        rng.shuffle(batches)
        return iter(batches + ([partial] if partial else []))
