"""The per-task pipeline, one module for every command: read -> split -> weak labels -> augment -> slices
-> tokenize.

``prepare_task`` runs it for one ``Task``; ``load_tasks`` for a run's tasks. Training, evaluation,
labeling (``mtl-label`` stops after the weak labels) and benchmarks all go through here, so a task is
prepared the same way whichever command asks. Each step is cached:

1. ``load_task_splits``: the source's rows (``mtl.sources``; rows with an empty text dropped), labels
   checked (``check_not_one_based``) and encoded, split (``mtl.data``), saved under
   ``cache_dir/prepared/`` keyed by the source and split configs and the files' sizes and times.
2. ``training_targets``: the train split's ``label_probs`` from the LFs and a label model
   (``mtl.weak.pipeline``, cached under ``cache_dir/labels/``) or from a saved ``train_probs.npy``.
3. ``mtl.augment.augment``: transformed copies of the training rows (``augment.mode: once``; on the fly,
   the trainer wraps the split instead).
4. ``add_slices``: a ``slices`` column (the rows of the slice matrix S).
5. ``mtl.data.tokenize``, cached by ``datasets``' fingerprinting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase

from mtl.augment import augment
from mtl.config import AugmentMode, SourceConfig, SourceFormat
from mtl.data import check_not_one_based, label_index, make_splits, tokenize
from mtl.slicing import slice_matrix
from mtl.sources import DataError, files_for, read_rows
from mtl.task import Task
from mtl.userload import resolve_path
from mtl.weak.pipeline import attach_probs, load_label_probs, weak_label

log = logging.getLogger("mtl.prepare")

# Bump when the prepared format changes so stale caches are not reused.
# 4: a cross-fitted task keeps its train split and its fold's gold rows; 5: rows with an empty text dropped
_PREPARE_VERSION = "5"


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _source_stamp(task: str, src: SourceConfig) -> list[tuple[str, int, float]]:
    if src.format == SourceFormat.hub:
        return []
    return [
        (str(p), p.stat().st_size, p.stat().st_mtime)
        for paths in files_for(task, src).values()
        for p in paths
    ]


def load_task_splits(task: Task, cache_dir: str | Path, seed: int = 0) -> datasets.DatasetDict:
    """One task's ``train``, ``dev`` and ``test`` splits (columns ``text``, ``label``, and ``weak_labels``
    when the source ships votes), read, label-encoded and split once, then read back from the cache.

    Cross-fitted (``split.dev_folds``), dev is the held-out fold and the other folds' gold rows are the
    task's gold training rows: the train split with ``labels: gold``; with weak labels a ``gold`` split
    beside the weak train split, on which the label model is chosen and calibrated and which
    ``training_targets`` mixes into training with ``weak.gold_weight`` > 0.

    Trained on gold labels, a class with no training row is a warning, on every call (cached or not)."""
    dsd = _gold_rows(task, _cached_splits(task, cache_dir, seed))
    if task.config.labels == "gold":
        _warn_missing_classes(task, dsd["train"])
    return dsd


def _warn_missing_classes(task: Task, train: datasets.Dataset) -> None:
    present = set(train.unique("label"))
    missing = [name for i, name in enumerate(task.label_names) if i not in present]
    if missing:
        log.warning(
            "task %r: class(es) %s have no rows in the train split, so the model never learns them; "
            "likely cause: the source has none (check its labels, or 1-based numbers read as 0-based "
            "indices: source.label_map), or include_regex, split.max_rows or split.dev_folds left them out",
            task.name,
            missing,
        )


def _gold_rows(task: Task, dsd: datasets.DatasetDict) -> datasets.DatasetDict:
    if "gold" not in dsd:
        return dsd
    out = datasets.DatasetDict({s: d for s, d in dsd.items() if s != "gold"})
    if task.config.labels == "gold":
        out["train"] = dsd["gold"]
    else:
        out["gold"] = dsd["gold"]
    return out


def _cached_splits(task: Task, cache_dir: str | Path, seed: int) -> datasets.DatasetDict:
    cfg = task.config
    key = _fingerprint(
        {
            "v": _PREPARE_VERSION,
            "source": asdict(cfg.source),
            "split": asdict(cfg.split),
            "labels": list(cfg.label_names),
            "seed": seed,
            "files": _source_stamp(task.name, cfg.source),
        }
    )
    folder = Path(cache_dir).expanduser() / "prepared" / f"{task.name}-{key}"
    if (folder / "dataset_dict.json").exists():
        return datasets.load_from_disk(str(folder))
    raw = read_rows(task.name, cfg.source)
    label_map = dict(cfg.source.label_map)
    # every label is checked, whichever split its row ends up in
    check_not_one_based(task.name, task.label_names, label_map, (r for rows in raw.values() for r in rows))
    encode = label_index(task.name, task.label_names, label_map)
    for rows in raw.values():
        for r in rows:
            r.label = encode(r)
    splits = make_splits(task.name, raw, cfg.split, seed)
    dsd = datasets.DatasetDict()
    for split, rows in splits.items():
        cols: dict[str, list[Any]] = {"text": [r.text for r in rows], "label": [r.label for r in rows]}
        if all("weak_labels" in r.extra for r in rows):
            cols["weak_labels"] = [r.extra["weak_labels"] for r in rows]
        dsd[split] = datasets.Dataset.from_dict(cols)
    # written to a temporary folder and renamed, so a crash or an error never leaves a half-written
    # folder that a later run would take for a prepared task
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    try:
        dsd.save_to_disk(str(tmp))
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "dataset_dict.json").exists():
                raise
            # another process prepared it first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(folder))


def training_targets(task: Task, dsd: datasets.DatasetDict, cache_dir: str | Path) -> datasets.Dataset:
    """The train split with ``label_probs`` from weak supervision or a saved file (dev/test keep gold)."""
    cfg = task.config
    if cfg.labels == "weak":
        wl = weak_label(task, dsd, cache_dir)
        probs, s = wl.train_probs, wl.summary
        log.info(
            "task %s: weak labels from %s (chosen on the %s split's gold labels); train coverage %.3f; "
            "dev %s %.4f (label model alone); calibration temperature %s; %s",
            task.name,
            s["label_model"],
            s["selected_on"],
            s["train"]["coverage"],
            cfg.metric,
            s["dev"][f"{cfg.metric}_all_rows"],
            f"{s['calibration']['temperature']:.3g}" if s.get("calibration") else "none",
            wl.folder,
        )
        if s["lf_failures"]:
            log.warning(
                "task %s: LFs failed on some rows and abstained there (fault_tolerant): %s",
                task.name,
                s["lf_failures"],
            )
    else:
        probs = load_label_probs(task.name, resolve_path(cfg.labels), len(dsd["train"]), task.num_classes)
    train = attach_probs(dsd["train"], probs)
    if len(train) == 0:
        raise DataError(f"task {task.name!r}: no training row has a weak label (check the LFs' coverage)")
    return _mix_gold(task, train, dsd["gold"]) if "gold" in dsd and cfg.weak.gold_weight > 0 else train


def _mix_gold(task: Task, train: datasets.Dataset, gold: datasets.Dataset) -> datasets.Dataset:
    """The weak training rows and, after them, the gold rows of the training folds as one-hot targets
    scaled by ``weak.gold_weight`` (a soft target's sum is its row's loss weight: ``soft_cross_entropy``)."""
    w = task.config.weak.gold_weight
    targets = np.zeros((len(gold), task.num_classes), dtype=np.float32)
    targets[np.arange(len(gold)), gold["label"]] = w
    log.info(
        "task %s: %d gold rows of the training dev folds mixed in at weight %g beside %d weak rows",
        task.name,
        len(gold),
        w,
        len(train),
    )
    return datasets.concatenate_datasets([train, attach_probs(gold, targets)])


def add_slices(task: Task, dsd: datasets.DatasetDict) -> datasets.DatasetDict:
    """Each split with a ``slices`` column: the 0/1 row of the slice indicator matrix S (SFs applied in
    ``weak.num_proc`` processes; with ``weak.fault_tolerant`` an SF that raises leaves the row out)."""
    w = task.config.weak
    return datasets.DatasetDict(
        {
            split: ds.add_column(
                "slices",
                slice_matrix(
                    ds,
                    task.sfs,
                    num_proc=w.num_proc,
                    fault_tolerant=w.fault_tolerant,
                    backend=w.backend,
                    ray=w.ray,
                ).tolist(),
            )
            for split, ds in dsd.items()
        }
    )


def prepare_task(
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path,
    seed: int = 0,
    splits: Sequence[str] | None = None,
) -> datasets.DatasetDict:
    """One task through the whole pipeline (see the module docstring), tokenized; only ``splits`` when
    given (without ``train``, no training labels are made and nothing is augmented)."""
    dsd = load_task_splits(task, cache_dir, seed)
    if splits is not None:
        dsd = datasets.DatasetDict({s: d for s, d in dsd.items() if s in splits})
    if "train" in dsd:
        if task.config.labels != "gold":
            dsd["train"] = training_targets(task, dsd, cache_dir)
        dsd.pop("gold", None)  # mixed into train by now
        aug = task.config.augment
        if task.policy is not None and aug.mode == AugmentMode.once:  # before slicing: copies are sliced too
            desc = f"augment {task.name}"
            dsd["train"] = augment(
                dsd["train"],
                task.policy,
                copies=aug.copies,
                keep_original=aug.keep_original,
                seed=seed,
                desc=desc,
            )
    if task.sfs:
        dsd = add_slices(task, dsd)
    # on the fly, the train split keeps its text for ``mtl.augment.OnTheFly``
    return datasets.DatasetDict(
        {
            s: tokenize(ds, tokenizer, max_length, keep_text=task.augments_on_the_fly and s == "train")
            for s, ds in dsd.items()
        }
    )


def load_tasks(
    tasks: Mapping[str, Task],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path,
    seed: int = 0,
    splits: Sequence[str] | None = None,
) -> dict[str, datasets.DatasetDict]:
    """``prepare_task`` for every task of a run, in order."""
    return {
        name: prepare_task(t, tokenizer, max_length, cache_dir, seed, splits) for name, t in tasks.items()
    }


__all__ = ["add_slices", "load_task_splits", "load_tasks", "prepare_task", "training_targets"]
