"""Task data: read a source, make deterministic leak-free splits, encode labels, tokenize, batch.

The flow for one task is ``mtl.sources.read_rows`` (files -> rows per raw split) -> ``make_splits`` (carve
missing dev/test splits by a hash of normalised text, dedup, cap) -> ``encode_labels`` (class names or
indices -> int ids, errors name the file and row) -> a ``datasets.Dataset`` per split saved under the
cache folder, so ``tokenize`` (``Dataset.map``) is cached by ``datasets``' fingerprinting and reused by
later runs. Batches are padded per batch (``Collator``), not to ``max_length``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerBase

from mtl.config import AugmentConfig, SourceConfig, SplitConfig, TaskConfig
from mtl.heads import HEAD_TYPES
from mtl.metrics import METRICS
from mtl.sources import SPLITS, DataError, RawRow, files_for, read_rows, resolve_path
from mtl.types import ABSTAIN

# Bump when the prepared format changes so stale caches are not reused.
_PREPARE_VERSION = "3"  # 3: capped dev/test subsets no longer depend on the seed


def as_task_config(cfg: TaskConfig | DictConfig | dict[str, Any]) -> TaskConfig:
    """Turn a composed ``DictConfig`` (or plain dict) for one task into a typed ``TaskConfig``."""
    if isinstance(cfg, TaskConfig):
        return cfg
    merged = OmegaConf.merge(OmegaConf.structured(TaskConfig), cfg)
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, TaskConfig)
    return obj


def validate_task(task: str, cfg: TaskConfig) -> None:
    """Check what the schema cannot: classes, metric and head options that make sense together."""
    names = list(cfg.label_names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"task {task!r}: label_names needs at least two distinct classes, got {names}")
    if cfg.metric not in METRICS:
        raise DataError(f"task {task!r}: metric {cfg.metric!r} is not one of {list(METRICS)}")
    if cfg.metric == "f1" and len(names) != 2:
        raise DataError(f"task {task!r}: metric 'f1' (of class 1) is for binary tasks; use macro_f1")
    if (
        cfg.labels not in ("gold", "weak")
        and not cfg.labels.endswith(".npy")
        and not Path(cfg.labels).is_dir()
    ):
        raise DataError(
            f"task {task!r}: labels must be gold, weak, or a train_probs.npy path, got {cfg.labels!r}"
        )
    if cfg.head.type not in HEAD_TYPES:
        raise DataError(f"task {task!r}: head.type {cfg.head.type!r} is not one of {list(HEAD_TYPES)}")
    if cfg.head.type != "plain" and not cfg.slices:
        raise DataError(f"task {task!r}: head.type {cfg.head.type!r} needs slicing functions (set `slices`)")
    if not 0 <= cfg.head.dropout < 1 or cfg.head.hidden_size < 0:
        raise DataError(f"task {task!r}: head.dropout must be in [0, 1) and head.hidden_size >= 0")


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
    return splits


def label_index(task: str, label_names: list[str], label_map: dict[str, str]) -> Callable[[RawRow], int]:
    """Return a function mapping a raw label (class index, class name or ``label_map`` key) to an id."""
    by_name = {name: i for i, name in enumerate(label_names)}

    def encode(row: RawRow) -> int:
        raw = row.label
        key = str(raw).strip() if raw is not None else ""
        if key in label_map:
            key = label_map[key]
        if key in by_name:
            return by_name[key]
        if isinstance(raw, bool) or raw is None or key == "":
            pass
        else:
            try:
                as_int = int(float(key))
                if float(key) == as_int and 0 <= as_int < len(label_names):
                    return as_int
            except ValueError:
                pass
        raise DataError(
            f"task {task!r}: label {raw!r} in {row.file} row {row.line} is not one of the task's "
            f"label_names {label_names} (nor an index into them, nor a key of source.label_map)"
        )

    return encode


# ---------------------------------------------------------------------------------------------- datasets


def _fingerprint(obj: Any) -> str:
    data = asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _source_stamp(task: str, src: SourceConfig) -> list[tuple[str, int, float]]:
    if src.format == "hub":
        return []
    return [
        (str(p), p.stat().st_size, p.stat().st_mtime)
        for paths in files_for(task, src).values()
        for p in paths
    ]


def load_task_splits(
    task: str, cfg: TaskConfig, cache_dir: str | Path, seed: int = 0
) -> datasets.DatasetDict:
    """Load one task as a ``DatasetDict`` with ``train``, ``dev`` and ``test`` (columns ``text``, ``label``).

    The prepared splits are saved under ``cache_dir`` keyed by the task's source and split config and
    the source files' sizes and times, so later runs (and ``Dataset.map`` on them) hit the cache.
    """
    validate_task(task, cfg)
    key = _fingerprint(
        {
            "v": _PREPARE_VERSION,
            "source": asdict(cfg.source),
            "split": asdict(cfg.split),
            "labels": list(cfg.label_names),
            "seed": seed,
            "files": _source_stamp(task, cfg.source),
        }
    )
    folder = Path(cache_dir).expanduser() / "prepared" / f"{task}-{key}"
    if (folder / "dataset_dict.json").exists():
        return datasets.load_from_disk(str(folder))
    raw = read_rows(task, cfg.source)
    encode = label_index(task, list(cfg.label_names), dict(cfg.source.label_map))
    for rows in raw.values():  # every label is checked, whichever split its row ends up in
        for r in rows:
            r.label = encode(r)
    splits = make_splits(task, raw, cfg.split, seed)
    dsd = datasets.DatasetDict()
    for split in SPLITS:
        rows = splits[split]
        cols: dict[str, list[Any]] = {"text": [r.text for r in rows], "label": [r.label for r in rows]}
        if all("weak_labels" in r.extra for r in rows):
            cols["weak_labels"] = [r.extra["weak_labels"] for r in rows]
        dsd[split] = datasets.Dataset.from_dict(cols)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    dsd.save_to_disk(str(tmp))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process prepared it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(folder))


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


def load_tasks(
    tasks: dict[str, TaskConfig],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path,
    seed: int = 0,
    splits: Sequence[str] | None = None,
) -> dict[str, datasets.DatasetDict]:
    """Load and tokenize every task's splits (both steps cached); only ``splits`` when given (without
    ``train``, no training labels are made)."""
    out = {}
    for name, cfg in tasks.items():
        dsd = load_task_splits(name, cfg, cache_dir, seed)
        if splits is not None:
            dsd = datasets.DatasetDict({s: d for s, d in dsd.items() if s in splits})
        if "train" not in dsd:
            cfg = dataclasses.replace(cfg, labels="gold", augment=AugmentConfig())
        if cfg.labels != "gold":
            dsd["train"] = training_targets(name, cfg, dsd, cache_dir)
        on_the_fly = bool(cfg.augment.tfs) and cfg.augment.mode == "on_the_fly"
        if cfg.augment.tfs and not on_the_fly:  # before slicing: an augmented text is sliced like any other
            from mtl.augment import augment

            dsd["train"] = augment(name, dsd["train"], cfg.augment, seed)
        if cfg.slices:
            dsd = add_slices(cfg.slices, dsd, cfg.weak.num_proc, cfg.weak.fault_tolerant)
        out[name] = datasets.DatasetDict(
            {  # on the fly, the train split keeps its text for ``mtl.augment.OnTheFly``
                s: tokenize(ds, tokenizer, max_length, keep_text=on_the_fly and s == "train")
                for s, ds in dsd.items()
            }
        )
    return out


def add_slices(
    ref: str, dsd: datasets.DatasetDict, num_proc: int = 1, fault_tolerant: bool = False
) -> datasets.DatasetDict:
    """Each split with a ``slices`` column: the 0/1 row of the slice indicator matrix S (SFs applied in
    ``num_proc`` processes; with ``fault_tolerant`` an SF that raises leaves the row out of its slice)."""
    from mtl.slicing import load_sfs, slice_matrix

    sfs = load_sfs(ref)
    return datasets.DatasetDict(
        {
            split: ds.add_column(
                "slices", slice_matrix(ds, sfs, num_proc=num_proc, fault_tolerant=fault_tolerant).tolist()
            )
            for split, ds in dsd.items()
        }
    )


def training_targets(
    name: str, cfg: TaskConfig, dsd: datasets.DatasetDict, cache_dir: str | Path
) -> datasets.Dataset:
    """The train split with ``label_probs`` from weak supervision or a saved file (dev/test keep gold)."""
    from mtl.weak.pipeline import attach_probs, load_label_probs, weak_label

    k = len(cfg.label_names)
    if cfg.labels == "weak":
        wl = weak_label(name, cfg, dsd, cache_dir)
        probs, s = wl.train_probs, wl.summary
        logging.getLogger("mtl.data").info(
            "task %s: weak labels from %s; train coverage %.3f; dev %s %.4f (label model alone); "
            "calibration temperature %s; %s",
            name,
            s["label_model"],
            s["train"]["coverage"],
            cfg.metric,
            s["dev"][f"{cfg.metric}_all_rows"],
            f"{s['calibration']['temperature']:.3g}" if s.get("calibration") else "none",
            wl.folder,
        )
        if s["lf_failures"]:
            logging.getLogger("mtl.data").warning(
                "task %s: LFs failed on some rows and abstained there (fault_tolerant): %s",
                name,
                s["lf_failures"],
            )
    else:
        probs = load_label_probs(name, resolve_path(cfg.labels), len(dsd["train"]), k)
    train = attach_probs(dsd["train"], probs)
    if len(train) == 0:
        raise DataError(f"task {name!r}: no training row has a weak label (check the LFs' coverage)")
    return train


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
