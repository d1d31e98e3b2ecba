"""Label models on sparse input: the same numbers as on dense L, the input conventions and their errors,
memory linear in the votes, and the blocked EM against a compact copy of the EM before 2026-12."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from mtl.config import PROJECT_ROOT
from mtl.types import ABSTAIN, MtlError
from mtl.weak import label_model as lm_module
from mtl.weak.apply import to_sparse
from mtl.weak.label_model import (
    LabelMatrix,
    LabelModel,
    MajorityVote,
    SparseVotes,
    as_votes,
    fit_or_majority_vote,
    label_model_candidates,
    load_label_model,
    select_label_model,
    unanimous_agreement,
)
from tests.unit.test_weak import _four_lfs_sparse, _many_lfs_few_votes  # the two collapse regimes

WRENCH = PROJECT_ROOT.parent / "shared" / "data" / "wrench"


def reference_em(
    L: np.ndarray,
    k: int,
    abstain_as_vote: bool,
    class_balance: str,
    dev_labels: np.ndarray | None = None,
    max_iter: int = 200,
    tol: float = 1e-5,
) -> tuple[np.ndarray, int]:
    """The EM of mtl/weak/label_model.py before 2026-12 (one np.bincount per class over the votes in COO
    form), compacted: posteriors on L after fitting on L, and the iterations run."""
    n, m = L.shape
    rows, cols = np.nonzero(L != ABSTAIN)
    flat = cols * k + L[rows, cols]
    if class_balance == "dev":
        assert dev_labels is not None
        log_prior = np.log((np.bincount(dev_labels, minlength=k)[:k] + 1.0) / (len(dev_labels) + k))
    else:
        log_prior = np.log(np.full(k, 1.0 / k))
    counts = np.stack([(c == L).sum(1) for c in range(k)], 1).astype(float)
    total = counts.sum(1, keepdims=True)
    q = np.where(total > 0, counts / np.maximum(total, 1), np.exp(log_prior)[None, :])

    def posterior(log_theta: np.ndarray) -> np.ndarray:
        abstain = log_theta[:, k, :]
        delta = (log_theta[:, :k, :] - abstain[:, None, :]).reshape(-1, k)
        base = log_prior + abstain.sum(0)
        out = np.stack(
            [base[y] + np.bincount(rows, weights=delta[flat, y], minlength=n) for y in range(k)], 1
        )
        out = np.exp(out - out.max(1, keepdims=True))
        return out / out.sum(1, keepdims=True)

    it = 0
    while it < max_iter:
        it += 1
        c = np.empty((m, k + 1, k))
        for y in range(k):
            c[:, :k, y] = np.bincount(flat, weights=q[rows, y], minlength=m * k).reshape(m, k)
        c[:, k, :] = q.sum(0)[None, :] - c[:, :k, :].sum(1)
        c = np.maximum(c, 0.0) + 1.0
        c[:, np.arange(k), np.arange(k)] += 2.0
        if not abstain_as_vote:
            c[:, k, :] = 0.0
        with np.errstate(divide="ignore"):
            log_theta = np.log(c / c.sum(1, keepdims=True))
        if not abstain_as_vote:
            log_theta[:, k, :] = 0.0
        if class_balance == "estimate":
            log_prior = np.log((q.sum(0) + 1.0) / (n + k))
        new = posterior(log_theta)
        change, q = np.abs(new - q).max(), new
        if change < tol:
            break
    return q, it


def _lfs(n: int, m: int, k: int, seed: int, rate: float = 0.3, right: float = 0.7) -> np.ndarray:
    """Each LF votes on ``rate`` of the rows, the true class with probability ``right``, else at random."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    fires = rng.random((n, m)) < rate
    votes = np.where(rng.random((n, m)) < right, y[:, None], rng.integers(0, k, (n, m)))
    return np.where(fires, votes, ABSTAIN).astype(np.int16)


def _forms(L: np.ndarray, k: int) -> dict[str, LabelMatrix]:
    """The same label matrix in every accepted form."""
    stored = L.astype(np.int64) + 1  # class + 1, abstain 0
    return {
        "csr_array": sp.csr_array(stored),
        "csr_matrix (float values)": sp.csr_matrix(stored.astype(np.float32)),
        "coo_array": sp.coo_array(stored),
        "csc_matrix": sp.csc_matrix(stored),
        "lil_array": sp.lil_array(stored),
        "SparseVotes": SparseVotes(*to_sparse(L), L.shape),
        "Votes": as_votes(L, k),
    }


L_SMALL = _lfs(400, 8, 3, seed=0)


@pytest.mark.parametrize("form", list(_forms(L_SMALL, 3)))
def test_every_input_form_gives_the_dense_numbers(form: str) -> None:
    L, y = L_SMALL, np.arange(60) % 3
    given = _forms(L, 3)[form]
    for name, model in label_model_candidates(3).items():
        dense = model.fit(L, dev_labels=y).predict_proba(L)
        n_iter = getattr(model, "n_iter", 0)
        np.testing.assert_array_equal(
            model.fit(given, dev_labels=y).predict_proba(given), dense, err_msg=name
        )
        assert getattr(model, "n_iter", 0) == n_iter
        np.testing.assert_array_equal(model.predict(given), dense.argmax(1))
    assert select_label_model(given, L[:60], y, 3)[1] == select_label_model(L, L[:60], y, 3)[1]
    model = LabelModel(3).fit(L)
    assert 0.9 < unanimous_agreement(model, given) == unanimous_agreement(model, L)


def test_stored_zeros_are_abstains_and_shapes_survive_empty_rows() -> None:
    L = L_SMALL.copy()
    L[-5:] = ABSTAIN  # trailing rows without votes: only the shape tells they exist
    A = sp.csr_array(L.astype(np.int64) + 1)
    A.data[::7] = 0  # stored zeros: abstains too
    dense = np.where(A.toarray() > 0, A.toarray() - 1, ABSTAIN)
    lm = LabelModel(3).fit(A)
    p = lm.predict_proba(A)
    assert p.shape == (400, 3)
    np.testing.assert_array_equal(p, LabelModel(3).fit(dense).predict_proba(dense))
    np.testing.assert_allclose(p[-5:], 1 / 3)  # no vote: the (uniform) class balance
    V = as_votes(SparseVotes(*to_sparse(L), L.shape), 3)
    assert (V.n, V.m, V.k) == (400, 8, 3) and V.indptr[-1] == len(V.flat) == (L != ABSTAIN).sum()
    mv = MajorityVote(3).predict_proba(SparseVotes(*to_sparse(L), L.shape))
    np.testing.assert_array_equal(mv, MajorityVote(3).predict_proba(L))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: sp.csr_array(np.array([[1, 0], [0, -1]])),
            r"L\[1, 1\] stores -1: .*class index \+ 1 \(1\.\.2\)",
        ),
        (lambda: sp.coo_array(np.array([[1, 0, 0], [0, 0, 3]])), r"L\[1, 2\] stores 3"),
        (lambda: sp.csr_array(np.array([[0.0, 1.5]])), r"L\[0, 1\] stores 1\.5"),
        (lambda: sp.csr_array(np.array([[0.0, 1.0], [np.nan, 0.0]])), r"L\[1, 0\] stores nan"),
        (
            lambda: sp.coo_array(
                (np.array([1, 2, 1]), (np.array([0, 2, 2]), np.array([1, 0, 0]))), shape=(3, 2)
            ),
            r"L\[2, 0\] is stored twice",
        ),
        (
            lambda: sp.csr_array(
                (np.array([1, 1, 2]), np.array([0, 1, 1]), np.array([0, 1, 3])), shape=(2, 2)
            ),
            r"L\[1, 1\] is stored twice",
        ),
        (lambda: sp.csr_array(np.array([[1 + 2j]])), "stores complex128 values"),
        (
            lambda: SparseVotes(np.array([0, 3]), np.array([1, 0]), np.array([0, 2]), (4, 2)),
            r"L\[3, 0\] = 2 is not",
        ),
        (
            lambda: SparseVotes(np.array([0, 4]), np.array([1, 0]), np.array([0, 1]), (4, 2)),
            "vote 1 is at row 4",
        ),
        (lambda: SparseVotes(np.array([0]), np.array([2]), np.array([0]), (4, 2)), "vote 0 is at LF 2"),
        (lambda: SparseVotes(np.array([0]), np.array([1, 0]), np.array([0]), (4, 2)), "differ in length"),
        (
            lambda: SparseVotes(np.array([1, 1]), np.array([0, 0]), np.array([0, 1]), (4, 2)),
            r"L\[1, 0\] is stored",
        ),
    ],
)
def test_bad_sparse_input_names_the_entry(build: Callable[[], LabelMatrix], message: str) -> None:
    with pytest.raises(MtlError, match=message):
        LabelModel(2).fit(build())
    with pytest.raises(MtlError, match=message):
        MajorityVote(2).predict_proba(build())


def test_dense_errors_and_model_mismatches_are_unchanged() -> None:
    with pytest.raises(MtlError, match=r"L\[0, 0\] = 3 is neither ABSTAIN"):
        LabelModel(2).fit(np.array([[3, 0]]))
    lm = LabelModel(3).fit(sp.csr_array(L_SMALL + 1))
    with pytest.raises(MtlError, match="has 7 LFs but the label model was fit on 8"):
        lm.predict_proba(sp.csr_array(L_SMALL[:, :7] + 1))
    with pytest.raises(MtlError, match="holds votes for 3 classes, not 2"):
        LabelModel(2).fit(as_votes(L_SMALL, 3))
    with pytest.raises(MtlError, match="empty label matrix of shape"):
        LabelModel(2).fit(sp.csr_array((0, 4), dtype=np.int8))


@pytest.mark.parametrize(
    ("matrix", "k"),
    [
        (_lfs(2000, 10, 2, seed=1, rate=0.2, right=0.75), 2),
        (_lfs(1500, 12, 4, seed=2, rate=0.15, right=0.6), 4),
        (_many_lfs_few_votes(0, n=1500)[0], 6),  # collapse regime 1: many LFs, few votes a row
        (_four_lfs_sparse(0, n=1500)[0], 2),  # collapse regime 2: a handful of LFs covering a quarter of rows
    ],
    ids=["binary", "four-class", "many-lfs-few-votes", "four-lfs-20pct"],
)
def test_new_em_matches_the_em_before_2026_12(matrix: np.ndarray, k: int) -> None:
    """Exactly the old iterates with early_stop=None; within 1e-4 with the default early stop."""
    y_dev = np.arange(100) % k
    for abstain in (True, False):
        for balance in ("uniform", "estimate", "dev"):
            ref, ref_iter = reference_em(matrix, k, abstain, balance, y_dev)
            exact = LabelModel(k, abstain, balance, early_stop=None).fit(matrix, dev_labels=y_dev)
            np.testing.assert_allclose(exact.predict_proba(matrix), ref, rtol=0, atol=1e-12)
            assert exact.n_iter == ref_iter
            early = LabelModel(k, abstain, balance).fit(sp.csr_array(matrix + 1), dev_labels=y_dev)
            assert np.abs(early.predict_proba(matrix) - ref).max() < 1e-4
            assert early.n_iter <= ref_iter


def test_early_stop_saves_iterations_on_a_fast_fit() -> None:
    L = _lfs(3000, 20, 3, seed=3, rate=0.2, right=0.7)
    plain = LabelModel(3, early_stop=None).fit(L)
    early = LabelModel(3).fit(L)
    assert early.n_iter < plain.n_iter
    assert 0 < np.abs(early.predict_proba(L) - plain.predict_proba(L)).max() < 1e-4


def test_blocks_give_the_one_block_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    L = _lfs(600, 9, 3, seed=4)
    whole = {
        n: m.fit(L, dev_labels=np.arange(30) % 3).predict_proba(L)
        for n, m in label_model_candidates(3).items()
    }
    monkeypatch.setattr(lm_module, "BLOCK_ROWS", 37)
    monkeypatch.setattr(lm_module, "BLOCK_VOTES", 50)  # some blocks end on the votes, some on the rows
    V = as_votes(sp.csr_array(L + 1), 3)
    sizes = [(e - s, b.nnz) for s, e, b, _ in V.blocks]
    assert len(sizes) > 15 and max(r for r, _ in sizes) <= 37 and max(v for _, v in sizes) <= 50
    assert sum(r for r, _ in sizes) == 600 and sum(v for _, v in sizes) == (L != ABSTAIN).sum()
    assert all(
        np.shares_memory(b.indices, V.flat) and np.shares_memory(t.indices, V.flat) for _, _, b, t in V.blocks
    )
    for name, model in label_model_candidates(3).items():
        blocked = model.fit(V, dev_labels=np.arange(30) % 3).predict_proba(V)
        np.testing.assert_allclose(blocked, whole[name], rtol=0, atol=1e-10, err_msg=name)


def test_sparse_fit_never_builds_anything_n_by_m(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 100,000 x 50,000 matrix (10 GB as dense int16) with 3,000 votes: fit, predict and the helpers
    run in memory linear in rows and votes, and no sparse-to-dense conversion is called."""
    n, m, k = 100_000, 50_000, 2
    rng = np.random.default_rng(5)
    voted, y = rng.choice(n, 1000, replace=False), rng.integers(0, k, 1000)
    lfs = np.argsort(rng.random((1000, 40)), 1)[:, :3]  # three of the first 40 LFs vote on each voted row
    votes = np.where(rng.random((1000, 3)) < 0.8, y[:, None], rng.integers(0, k, (1000, 3)))
    A = sp.csr_array(((votes + 1).ravel().astype(np.int8), (np.repeat(voted, 3), lfs.ravel())), shape=(n, m))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a sparse label matrix was made dense")

    for cls in (sp.csr_array, sp.csr_matrix, sp.coo_array, sp.csc_array):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    tracemalloc.start()
    try:
        model, reason = fit_or_majority_vote(LabelModel(k), A)
        p = model.predict_proba(A)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason is None and isinstance(model, LabelModel) and p.shape == (n, k)
    assert peak < 12 * n * k * 8  # a dozen n x k float64 arrays at most; dense L alone: 30e9 bytes
    assert model.log_theta is not None and model.log_theta.shape == (m, k + 1, k)


def test_save_load_keeps_the_json_format(tmp_path: Path) -> None:
    lm = LabelModel(3, class_balance="estimate").fit(sp.csr_array(L_SMALL + 1))
    lm.save(tmp_path / "lm.json")
    data = json.loads((tmp_path / "lm.json").read_text())
    keys = {
        "type",
        "cardinality",
        "abstain_as_vote",
        "class_balance",
        "smoothing",
        "diagonal",
        "theta",
        "prior",
    }
    assert set(data) == keys | {"n_iter"}
    again = load_label_model(tmp_path / "lm.json")
    np.testing.assert_allclose(
        again.predict_proba(SparseVotes(*to_sparse(L_SMALL), L_SMALL.shape)), lm.predict_proba(L_SMALL)
    )


@pytest.mark.skipif(not WRENCH.is_dir(), reason="needs the WRENCH copies in ../shared/data")
def test_youtube_published_votes_match_the_em_before_2026_12() -> None:
    """WRENCH youtube's published train votes, all six variants: within 1e-4 of the old EM (measured on
    youtube, sms and trec: at most 4.3e-5, docs/results/2026-12-02-label-model-scale.md)."""
    rows = json.loads((WRENCH / "youtube" / "train.json").read_text()).values()
    L = np.array([r["weak_labels"] for r in rows], dtype=np.int16)
    y_dev = np.array(
        [r["label"] for r in json.loads((WRENCH / "youtube" / "valid.json").read_text()).values()]
    )
    A = sp.csr_array(L + 1)
    for abstain in (True, False):
        for balance in ("uniform", "estimate", "dev"):
            ref, _ = reference_em(L, 2, abstain, balance, y_dev)
            p = LabelModel(2, abstain, balance).fit(A, dev_labels=y_dev).predict_proba(A)
            assert np.abs(p - ref).max() < 1e-4, (abstain, balance)
