"""Embedding-space weak supervision: kNN vote extension, the feature cache, similarity LFs."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from mtl.types import ABSTAIN, MtlError
from mtl.weak import neighbours
from mtl.weak.neighbours import Embedder, cached_features, extend_votes, extension_report, nearest, normalise


def _clusters(n_per: int, classes: int, dim: int = 16, spread: float = 0.4, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    centres = np.eye(dim, dtype=np.float32)[:classes] * 3
    return normalise(centres[y] + spread * rng.normal(size=(len(y), dim)).astype(np.float32)), y


def test_knn_extension_recovers_known_labels_and_keeps_covered_votes() -> None:
    feats, y = _clusters(200, 3)
    rng = np.random.default_rng(1)
    L = np.full((len(y), 2), ABSTAIN, dtype=np.int16)
    lf0 = rng.random(len(y)) < 0.15  # an accurate LF covering 15 % of rows
    L[lf0, 0] = y[lf0]
    lf1 = (rng.random(len(y)) < 0.10) & (y == 2)  # a one-class LF
    L[lf1, 1] = 2
    ext = extend_votes(L, feats, L, feats, k=5, min_similarity=0.5)
    covered = (L != ABSTAIN).any(1)
    assert (ext[covered] == L[covered]).all()  # covered rows keep their own votes, abstains included
    new = ~covered & (ext != ABSTAIN).any(1)
    assert new.sum() == (~covered).sum()  # tight clusters: every uncovered row gets votes
    assert (ext[new, 0] == y[new]).mean() > 0.98  # ... of its neighbours' class
    assert set(np.unique(ext[new, 1])) <= {ABSTAIN, 2}  # an LF only lends the votes it casts
    report = extension_report(L, ext, y)
    assert report["coverage_before"] == pytest.approx(covered.mean())
    assert report["coverage_after"] == 1.0 and report["extended_rows"] == int(new.sum())
    assert report["extended_vote_accuracy"] > 0.98


def test_knn_extension_respects_min_similarity_and_other_splits() -> None:
    feats, y = _clusters(50, 2)
    far = normalise(np.eye(16, dtype=np.float32)[[10, 11]])  # orthogonal to every training row
    L = np.where(np.arange(len(y))[:, None] % 4 == 0, y[:, None], ABSTAIN).astype(np.int16)
    L_dev = np.full((4, 1), ABSTAIN, dtype=np.int16)
    dev_feats = np.concatenate([feats[[1, 51]], far])
    ext = extend_votes(L_dev, dev_feats, L, feats, k=3, min_similarity=0.5)
    assert ext[:, 0].tolist() == [0, 1, ABSTAIN, ABSTAIN]  # dev rows borrow from train; far rows stay out
    assert (extend_votes(L, feats, L, feats, k=0, min_similarity=0.0) == L).all()  # k=0: off


def test_ivf_search_matches_exact_search_on_clustered_data(monkeypatch: pytest.MonkeyPatch) -> None:
    feats, _ = _clusters(400, 4)
    exact_sims, exact_ids = nearest(feats, feats[:50], 3)
    assert np.allclose(exact_sims[:, 0], 1.0, atol=1e-5)  # exact: each query is its own nearest row
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 100)  # past it: the IVF index
    _, approx_ids = nearest(feats, feats[:50], 3)
    assert (approx_ids[:, 0] == np.arange(50)).all()  # each query finds itself
    recall = np.mean([len(set(a) & set(e)) / 3 for a, e in zip(approx_ids, exact_ids, strict=True)])
    assert recall > 0.9  # approximate, and close


def test_feature_cache_is_reused_and_refuses_another_encoder(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"text": ["win cash now", "see you at lunch", "win cash now"]})
    embed = Embedder(str(tiny_encoder_dir), max_length=16)
    first = cached_features("t", "train", ds, embed, tmp_path)
    assert first.shape == (3, 32) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    assert np.allclose(first[0], first[2])  # same text, same vector
    (folder,) = (tmp_path / "features").iterdir()
    np.save(folder / "features.npy", first * 0)
    assert (cached_features("t", "train", ds, embed, tmp_path) == 0).all()  # read back, not recomputed
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "encoder": "other/model"}))
    with pytest.raises(
        MtlError, match=r"task 't', train split: the cached features in .* are of .*other/model"
    ):
        cached_features("t", "train", ds, embed, tmp_path)
    with pytest.raises(MtlError, match=r"weak.embedding.encoder '/does/not/exist' does not exist"):
        Embedder("/does/not/exist")


def test_similarity_lf_votes_the_nearest_seed_class(tiny_encoder_dir: Path) -> None:
    seeds = {0: ["see you at lunch tomorrow"], 1: ["win a free prize call now"]}
    lf = neighbours.similarity_lf(
        "seeded", seeds, min_similarity=0.0, margin=0.0, encoder=str(tiny_encoder_dir)
    )
    assert lf.vote_batch([{"text": seeds[1][0]}, {"text": seeds[0][0]}]) == [1, 0]  # a seed is its own class
    strict = neighbours.similarity_lf("strict", seeds, min_similarity=1.01, encoder=str(tiny_encoder_dir))
    assert strict.vote_batch([{"text": seeds[1][0]}]) == [ABSTAIN]  # nothing reaches the threshold
    with pytest.raises(MtlError, match="similarity_lf 'empty': give at least one seed text"):
        neighbours.similarity_lf("empty", {0: []})


def test_gold_neighbour_votes_leave_each_gold_row_out() -> None:
    feats, y = _clusters(30, 2)
    gold_rows = np.arange(0, 60, 2)  # every other row is a gold row
    labels = y[gold_rows].copy()
    labels[0] = 1  # a wrong label in cluster 0
    other = np.arange(1, 60, 2)
    votes = neighbours.gold_neighbour_votes(feats[other], feats[gold_rows], labels, 3, 2)
    assert (votes == y[other]).mean() > 0.95  # a kNN classifier on the gold rows
    own = neighbours.gold_neighbour_votes(feats[gold_rows], feats[gold_rows], labels, 3, 2, same=True)
    assert own[0] == 0  # the wrong label is outvoted by its neighbours: it never votes for itself
    assert (own == y[gold_rows]).mean() > 0.95
