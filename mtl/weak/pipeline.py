"""A task's weak labels end to end: LFs -> L per split -> LF analysis -> label model -> train probabilities.

``weak_label`` is what ``mtl-label`` runs and what ``mtl-train`` calls for a task with ``labels: weak``.
Results are cached under ``cache_dir/labels/<task>-<key>/`` (the key covers the prepared data, the weak
config and the LFs' code), so ``mtl-train`` reuses what ``mtl-label`` computed:

    L_train.npy L_dev.npy L_test.npy   label matrices (int16, -1 = abstain)
    train_probs.npy                    the training targets (calibrated on dev, then the uncovered policy)
    label_model.json                   the chosen label model (plain JSON)
    lf_analysis.{csv,json}             per-LF coverage/overlaps/conflicts/accuracy (on dev gold)
    summary.json                       coverage, label-model metrics on dev and test, model selection
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets.fingerprint import Hasher

from mtl.config import DenoiseMethod, LabelModelChoice, Uncovered, WeakConfig
from mtl.metrics import compute_metrics
from mtl.task import Task
from mtl.types import ABSTAIN, MtlError
from mtl.weak.analysis import lf_summary, write_summary
from mtl.weak.apply import label_matrix_from_column
from mtl.weak.denoise import flag_label_issues, flag_report
from mtl.weak.label_model import (
    LabelModel,
    LabelModelProtocol,
    MajorityVote,
    apply_temperature,
    fit_or_majority_vote,
    fit_temperature,
    load_label_model,
    log_loss,
    select_label_model,
)
from mtl.weak.neighbours import (
    Embedder,
    cached_features,
    default_encoder,
    extend_votes,
    extension_report,
    gold_neighbour_votes,
)
from mtl.weak.ray_apply import apply_lfs_backend

log = logging.getLogger("mtl.weak")


@dataclass
class WeakLabels:
    """A task's weak labels: training targets (rows of the train split) and what was measured."""

    train_probs: np.ndarray
    L: dict[str, np.ndarray]
    lf_names: list[str]
    analysis: list[dict[str, Any]]
    summary: dict[str, Any]
    folder: Path


def _require_weak(task: Task) -> None:
    w = task.config.weak
    if not w.lfs and not w.weak_labels_field:
        raise MtlError(
            f"task {task.name!r} has no weak supervision configured: "
            f"set tasks.{task.name}.weak.lfs=path/to/file.py:NAME "
            f"(a list of LFs) or tasks.{task.name}.weak.weak_labels_field=<column of precomputed votes>"
        )


def _matrices(
    task: Task, dsd: datasets.DatasetDict, cache_dir: str | Path
) -> tuple[dict[str, np.ndarray], list[str], dict[str, int]]:
    """L per split: the precomputed votes' columns first, then one column per LF."""
    cfg, k = task.config.weak, task.num_classes
    out: dict[str, np.ndarray] = {}
    names: list[str] = []
    failures: dict[str, int] = {}
    for split in _splits(dsd):
        outputs = []
        num_proc = cfg.num_proc if cfg.num_proc > 1 else None
        try:
            if cfg.weak_labels_field:
                outputs.append(label_matrix_from_column(dsd[split], cfg.weak_labels_field, k))
            if task.lfs:
                outputs.append(
                    apply_lfs_backend(
                        dsd[split],
                        task.lfs,
                        k,
                        backend=cfg.backend,
                        ray=cfg.ray,
                        num_proc=num_proc,
                        fault_tolerant=cfg.fault_tolerant,
                        out_dir=Path(cache_dir).expanduser() / "votes" / f"{task.name}-{split}",
                    )
                )
        except MtlError as e:  # say where: rows are numbered within the prepared (deduplicated) split
            raise type(e)(f"task {task.name!r}, {split} split: {e}") from e
        out[split] = np.concatenate([o.L for o in outputs], axis=1)
        names = [n for o in outputs for n in o.names]
        failures.update({f"{split}:{n}": c for o in outputs for n, c in o.failures.items()})
    return out, names, failures


def _splits(dsd: datasets.DatasetDict) -> list[str]:
    """The splits that get a label matrix: train, dev, test and, cross-fitted, the training folds' gold
    rows (``gold``)."""
    return [s for s in ("train", "dev", "test", "gold") if s in dsd]


# gold_weight is used after the labels; backend, ray and num_proc give the same votes either way
_NOT_IN_KEY = ("gold_weight", "backend", "ray", "num_proc")


def _key(task: Task, dsd: datasets.DatasetDict) -> str:
    cfg = task.config
    lf_hash = Hasher.hash(task.lfs) if task.lfs else ""
    data = {
        "task": task.name,
        # gold_weight: used after the labels; where the LFs run: the same votes either way
        "weak": {
            k: v
            for k, v in asdict(cfg.weak).items()
            if k not in ("gold_weight", "backend", "ray", "num_proc")
        },
        "labels": list(cfg.label_names),
        "metric": cfg.metric,
        "data": [dsd[s]._fingerprint for s in _splits(dsd)],
        "lfs": lf_hash,
        "v": 4,  # 2: calibrated on dev; 3: degenerate-fit fallback, tie-breaks; 4: chosen on gold if any
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def build_label_model(cfg: WeakConfig, cardinality: int) -> MajorityVote | LabelModel:
    """The label model ``weak.label_model`` names (not ``auto``, which ``select_label_model`` resolves)."""
    if cfg.label_model == LabelModelChoice.majority_vote:
        return MajorityVote(cardinality)
    return LabelModel(cardinality, abstain_as_vote=cfg.abstain_as_vote, class_balance=cfg.class_balance)


def weak_label(task: Task, dsd: datasets.DatasetDict, cache_dir: str | Path) -> WeakLabels:
    """Weak labels for ``task``'s train split (computed once, then read from the cache).

    The label model is chosen and calibrated on the gold labels of the dev split or, cross-fitted
    (``split.dev_folds``), on those of the training folds (``gold``): the held-out fold is then left to
    the end model's checkpoint selection alone, and the label model sees four times the rows of one fold.
    """
    _require_weak(task)
    folder = Path(cache_dir).expanduser() / "labels" / f"{task.name}-{_key(task, dsd)}"
    if (folder / "summary.json").exists():
        cached = json.loads((folder / "summary.json").read_text())
        return WeakLabels(
            np.load(folder / "train_probs.npy"),
            {s: np.load(folder / f"L_{s}.npy") for s in _splits(dsd)},
            cached["lf_names"],
            json.loads((folder / "lf_analysis.json").read_text()),
            cached,
            folder,
        )
    L, names, failures = _matrices(task, dsd, cache_dir)
    gold = {s: np.asarray(dsd[s]["label"]) for s in _splits(dsd)}
    if task.config.weak.gold_lf:
        names = [*names, "gold_knn"]
        L = _with_gold_lf(task, dsd, L, cache_dir)
    knn = _extend(task, dsd, L, gold, cache_dir) if task.config.weak.knn.k else {}
    on = "gold" if "gold" in dsd else "dev"  # where the label model is chosen and calibrated
    analysis = lf_summary(L[on], names, gold[on])
    model, selection, fallback = _fit_label_model(task, L["train"], L[on], gold[on])
    probs, calibration = _training_probs(task, model, L["train"], L[on], gold[on])
    denoise = {}
    if task.config.weak.denoise.method != DenoiseMethod.none:
        denoise = _denoise(task, dsd, probs, gold["train"], cache_dir)
    summary: dict[str, Any] = {
        "task": task.name,
        "lf_names": names,
        "label_model": selection[0]["label_model"] if selection else task.config.weak.label_model,
        "selection": selection,
        "selected_on": on,
        "fallback": fallback,
        "uncovered_policy": task.config.weak.uncovered,
        "calibration": calibration,
        "lf_failures": failures,
        "knn": knn,
        "denoise": denoise,
        **{split: _split_summary(task, model, L[split], gold[split]) for split in _splits(dsd)},
    }
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")  # one per process: runs may race
    tmp.mkdir(parents=True, exist_ok=True)
    for split, mat in L.items():
        np.save(tmp / f"L_{split}.npy", mat)
    np.save(tmp / "train_probs.npy", probs)
    model.save(tmp / "label_model.json")
    write_summary(analysis, tmp)
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    try:
        tmp.replace(folder)
    except OSError:  # another run with the same cache key published it first: keep theirs (same inputs)
        shutil.rmtree(tmp, ignore_errors=True)
    return WeakLabels(probs, L, names, analysis, summary, folder)


def _features(task: Task, dsd: datasets.DatasetDict, split: str, cache_dir: str | Path) -> np.ndarray:
    """A split's vectors in ``weak.embedding``'s space (cached)."""
    cfg = task.config.weak.embedding
    embed = Embedder.load(cfg.encoder or default_encoder(), cfg.max_length)
    return cached_features(task.name, split, dsd[split], embed, cache_dir)


def _with_gold_lf(
    task: Task, dsd: datasets.DatasetDict, L: dict[str, np.ndarray], cache_dir: str | Path
) -> dict[str, np.ndarray]:
    """``weak.gold_lf``: every split's L with one more column, the votes of the nearest gold rows of the
    training folds (``gold_neighbour_votes``; on those rows themselves, leaving each out)."""
    if "gold" not in dsd:
        raise MtlError(
            f"task {task.name!r}: weak.gold_lf votes with the gold rows of the training dev folds, so dev "
            f"must be cross-fitted: set gold.mode (or tasks.{task.name}.split.dev_folds)"
        )
    feats = {s: _features(task, dsd, s, cache_dir) for s in L}
    y, k = np.asarray(dsd["gold"]["label"]), task.config.weak.gold_lf
    out = {}
    for s, mat in L.items():
        col = gold_neighbour_votes(feats[s], feats["gold"], y, k, task.num_classes, same=s == "gold")
        out[s] = np.concatenate([mat, col[:, None].astype(mat.dtype)], axis=1)
    return out


def _extend(
    task: Task,
    dsd: datasets.DatasetDict,
    L: dict[str, np.ndarray],
    gold: dict[str, np.ndarray],
    cache_dir: str | Path,
) -> dict[str, Any]:
    """``weak.knn``: every split's uncovered rows take votes from their nearest covered train rows (``L``
    is changed in place); returns coverage before/after per split and, off train, the extended votes'
    accuracy on gold."""
    cfg = task.config.weak.knn
    feats = {s: _features(task, dsd, s, cache_dir) for s in L}
    # every split borrows from the train votes as the LFs cast them
    ext = {s: extend_votes(L[s], feats[s], L["train"], feats["train"], cfg.k, cfg.min_similarity) for s in L}
    report = {s: extension_report(L[s], ext[s], None if s == "train" else gold[s]) for s in L}
    L.update(ext)
    on = "gold" if "gold" in L else "dev"
    log.info(
        "task %s: kNN vote extension (k=%d, min_similarity %.2f): train coverage %.3f -> %.3f; "
        "extended votes' accuracy on the %s split's gold %.3f (%d votes)",
        task.name,
        cfg.k,
        cfg.min_similarity,
        report["train"]["coverage_before"],
        report["train"]["coverage_after"],
        on,
        report[on]["extended_vote_accuracy"],
        report[on]["extended_votes"],
    )
    return report


def _denoise(
    task: Task, dsd: datasets.DatasetDict, probs: np.ndarray, train_gold: np.ndarray, cache_dir: str | Path
) -> dict[str, Any]:
    """``weak.denoise``: flag training rows whose weak label is probably wrong (``mtl.weak.denoise``) and
    drop them or scale their targets (``probs`` is changed in place); returns the flags' figures, scored
    against the train split's own labels (gold where the data has it: then ``precision_at`` is the share
    of truly wrong weak labels among the most suspect rows)."""
    cfg = task.config.weak.denoise
    flags, scores = flag_label_issues(_features(task, dsd, "train", cache_dir), probs, cfg.folds)
    report = flag_report(flags, scores, probs.argmax(1), train_gold)
    probs[flags] *= 0.0 if cfg.method == DenoiseMethod.drop else cfg.weight
    log.info(
        "task %s: weak.denoise (%s): %d of %d weakly labeled train rows flagged; against the train "
        "split's labels: weak-label error rate %.3f, flagged rows wrong %.3f, precision at %s",
        task.name,
        cfg.method,
        report["flagged"],
        report["rows"],
        report["error_rate"],
        report["flagged_precision"],
        report["precision_at"],
    )
    return report


def _fit_label_model(
    task: Task, L_train: np.ndarray, L_dev: np.ndarray, dev_gold: np.ndarray
) -> tuple[LabelModelProtocol, list[dict[str, Any]], str | None]:
    """The label model ``weak.label_model`` names, fit on L_train, with the candidates' selection on dev
    gold (``L_dev``, ``dev_gold``) for ``auto`` (one row each, best first; empty otherwise) and, for
    ``dawid_skene``, why it fell back to majority vote (None: it did not; ``fit_or_majority_vote``)."""
    w, k = task.config.weak, task.num_classes
    if w.label_model == LabelModelChoice.auto:
        return (*select_label_model(L_train, L_dev, dev_gold, k, task.metric.value), None)
    model = build_label_model(w, k)
    if isinstance(model, LabelModel):
        fitted, fallback = fit_or_majority_vote(model, L_train, dev_gold)
        if fallback:
            log.warning("task %s: weak.label_model dawid_skene: %s", task.name, fallback)
        return fitted, [], fallback
    return model.fit(L_train, dev_labels=dev_gold), [], None


def _training_probs(
    task: Task, model: LabelModelProtocol, L_train: np.ndarray, L_dev: np.ndarray, dev_gold: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """The training targets: the label model's probabilities on covered rows (temperature-calibrated on
    dev gold's covered rows unless ``weak.calibrate`` is off: the confidence changes, not the argmax),
    and on uncovered rows zeros (``drop``: masked out of the loss) or the class prior at
    ``uncovered_weight`` (``prior``); with the calibration's figures."""
    w, k = task.config.weak, task.num_classes
    probs = model.predict_proba(L_train)
    covered = (L_train != ABSTAIN).any(1)
    calibration: dict[str, float] = {}
    if w.calibrate:
        dev_cov = (L_dev != ABSTAIN).any(1)
        p_dev = model.predict_proba(L_dev)[dev_cov]
        t = fit_temperature(p_dev, dev_gold[dev_cov])
        calibrated = apply_temperature(probs[covered], t)
        calibration = {
            "temperature": t,
            "dev_nll_before": log_loss(p_dev, dev_gold[dev_cov]),
            "dev_nll_after": log_loss(apply_temperature(p_dev, t), dev_gold[dev_cov]),
            "train_confidence_before": _confidence(probs[covered]),
            "train_confidence_after": _confidence(calibrated),
        }
        probs[covered] = calibrated
    prior = probs[~covered].mean(0) if (~covered).any() else np.full(k, 1.0 / k)
    if w.uncovered == Uncovered.drop:
        probs[~covered] = 0.0  # a zero row is masked out of the loss
    else:
        probs[~covered] = prior * w.uncovered_weight
    return probs, calibration


def _split_summary(task: Task, model: LabelModelProtocol, L: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    """The label model alone on one split: coverage and the task's metric on all rows and covered rows."""
    metric, k = task.metric.value, task.num_classes
    cov = (L != ABSTAIN).any(1)
    pred = model.predict(L)
    all_rows = compute_metrics(pred, gold, k)
    on_cov = compute_metrics(pred[cov], gold[cov], k)
    return {
        "rows": len(cov),
        "coverage": float(cov.mean()) if len(cov) else float("nan"),
        # what training sees under the policy: covered rows only (drop) or all rows (prior)
        f"{metric}_all_rows": all_rows[metric],
        f"{metric}_covered_rows": on_cov[metric],
        "accuracy_covered_rows": on_cov["accuracy"],
    }


def _confidence(probs: np.ndarray) -> float:
    """Mean probability of each row's most likely class (nan for no rows)."""
    return float(probs.max(1).mean()) if len(probs) else float("nan")


def load_label_probs(task: str, path: str | Path, n_train: int, k: int) -> np.ndarray:
    """Training targets from a saved ``train_probs.npy`` (checked against the train split's shape)."""
    p = Path(path)
    if p.is_dir():
        p = p / "train_probs.npy"
    if not p.exists():
        raise MtlError(f"task {task!r}: labels file {str(p)!r} does not exist")
    probs = np.load(p, allow_pickle=False)
    if probs.shape != (n_train, k):
        raise MtlError(
            f"task {task!r}: labels file {str(p)!r} has shape {probs.shape}; "
            f"the train split needs ({n_train}, {k})"
        )
    return probs


def attach_probs(ds: datasets.Dataset, probs: np.ndarray) -> datasets.Dataset:
    """The train split with a ``label_probs`` column; rows whose targets are all zero are dropped."""
    keep = np.flatnonzero(probs.sum(1) > 0)
    out = ds.add_column("label_probs", probs.astype(np.float32).tolist())
    return out.select(keep) if len(keep) < len(ds) else out


__all__ = ["WeakLabels", "attach_probs", "load_label_model", "load_label_probs", "weak_label"]
