"""Label models: turn a label matrix L (n x m, ``ABSTAIN`` = -1) into class probabilities without gold.

Two models behind one small interface (``fit``, ``predict_proba``, ``predict``, ``save``/``load``):

* ``MajorityVote``: each covered row gets the vote shares of its LFs (vectorised, no fitting).
* ``LabelModel``: a Dawid-Skene generative model fit by EM. Each LF j has a confusion matrix
  ``theta_j[v, y] = P(LF j outputs v | true class y)``, so accuracies are learned *per class* (an LF can be
  precise on spam and useless on ham), for any number of classes and LFs. Optionally the abstain is one
  of the outputs (``abstain_as_vote=True``): then *whether* an LF fires is evidence too, which is what
  makes unipolar LFs (each voting one class only, as in most real LF sets) identifiable; with
  ``abstain_as_vote=False`` abstains are treated as missing at random, the classic Dawid-Skene model.

Why Dawid-Skene EM rather than Snorkel's matrix-completion model: its E- and M-steps are closed form
(no learning rate, no epochs to tune; tens of iterations), each step touches only the votes (O(votes x
k) time, memory O(n x k) beside the votes, where Snorkel holds an n x (m*k) float64 one-hot matrix),
and Dirichlet smoothing towards "better than chance" keeps small sets stable. Its weak spot, like every
generative label model's, is that the best variant depends on how the LFs were written: with an
estimated class balance EM can drift into predicting the majority class, and abstains are evidence for
one-class LFs but not for LF sets that vote several classes. ``select_label_model`` therefore fits
majority vote and six variants without gold and keeps the best by the metric on a small dev set with
gold labels (which real projects have anyway); on WRENCH trec/sms/youtube it matches or beats snorkel
0.10.0 except on youtube's published LFs with 500 epochs (``scripts/bench_label_model.py``).

Class balance (``class_balance``): ``"estimate"`` (learned by EM, with a Dirichlet prior), ``"uniform"``,
a list of probabilities, or set from dev labels with ``LabelModel.fit(..., dev_labels=...)`` when
``class_balance="dev"``.

Input (``LabelMatrix``): every function here takes the label matrix in any of these forms, and gives the
same numbers for each:

* a dense (n x m) int array, ``ABSTAIN`` = -1 (what ``apply_lfs`` returns);
* a ``scipy.sparse`` matrix or array of shape (n x m), any format, that **stores class index + 1** (1..k)
  and leaves abstains out: an implicit (or stored) 0 is an abstain. Anything else stored (a -1, a k + 1, a
  fraction, two values for one cell of a COO matrix) is an error naming its row and column;
* ``SparseVotes(rows, cols, votes, shape)``: ``to_sparse``'s COO triple (votes are class indices) and
  the shape;
* ``Votes``: what each of the above is validated into (``as_votes``); pass it to fit several models on one
  matrix without validating it again.

From sparse input nothing of size n x m is built: the votes are held row-compressed (4 bytes a vote, 8 a
row) and EM runs over blocks of rows as sparse (rows x m*k one-hot) @ dense (m*k x k) products, so memory
is the votes plus a few n x k float64 arrays (``scripts/bench_label_model_scale.py``: 10M rows x 100 LFs
x 10 classes at 10 % density, 100M votes).

Example:
    >>> import numpy as np
    >>> L = np.array([[0, 0, -1], [1, 1, 1], [0, -1, 1], [-1, -1, -1]])
    >>> lm = LabelModel(cardinality=2).fit(L)
    >>> lm.predict_proba(L).shape
    (4, 2)
    >>> import scipy.sparse as sp
    >>> bool(np.allclose(lm.predict_proba(sp.csr_array(L + 1)), lm.predict_proba(L)))
    True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeAlias

import numpy as np
import scipy.sparse as sp

from mtl.metrics import compute_metrics
from mtl.types import ABSTAIN, MtlError

BLOCK_ROWS = 1 << 17  # rows per block of EM's passes: bounds its temporaries (rows x k float64 each)
BLOCK_VOTES = 1 << 22  # votes per block at most: the length of the one buffer of ones the blocks share


class SparseVotes(NamedTuple):
    """The votes of an (n x m) label matrix in COO form: ``to_sparse``'s triple and the matrix's shape.

    Vote i is LF ``cols[i]`` voting class ``votes[i]`` (0..k-1) on row ``rows[i]``; abstains are left out.
    Example: ``LabelModel(k).fit(SparseVotes(*to_sparse(L), L.shape))``.
    """

    rows: np.ndarray
    cols: np.ndarray
    votes: np.ndarray
    shape: tuple[int, int]


@dataclass(frozen=True, eq=False)
class Votes:
    """The validated votes of an (n x m) label matrix for k classes, row-compressed (``as_votes`` makes it).

    Row i's votes are ``flat[indptr[i]:indptr[i + 1]]``, each ``LF * k + class``: its column in the
    (n x m*k) one-hot matrix of the votes, which ``blocks`` exposes as sparse row blocks.
    """

    n: int
    m: int
    k: int
    indptr: np.ndarray  # (n + 1,) int64
    flat: np.ndarray  # (votes,) int32

    @cached_property
    def blocks(self) -> list[tuple[int, int, Any, Any]]:
        """(start, stop, one-hot block, its transpose) covering all rows: the rows start..stop-1 of the
        (n x m*k) one-hot matrix of the votes as a CSR array of ones and the same as a (m*k x rows) CSC
        array, at most ``BLOCK_ROWS`` rows and ``BLOCK_VOTES`` votes each. They are views of ``flat`` sharing
        one buffer of ones: 4 bytes a row beside the votes, never an n x m or n x (m*k) dense array."""
        bounds = [0]
        while bounds[-1] < self.n:
            s = bounds[-1]
            fits = int(np.searchsorted(self.indptr, self.indptr[s] + BLOCK_VOTES, "right")) - 1
            bounds.append(max(min(self.n, s + BLOCK_ROWS, fits), s + 1))
        sizes = self.indptr[bounds[1:]] - self.indptr[bounds[:-1]]
        ones = np.ones(int(sizes.max()) if len(sizes) else 0)
        out = []
        for s, e in pairwise(bounds):
            a, b = int(self.indptr[s]), int(self.indptr[e])
            arrays = (ones[: b - a], self.flat[a:b], (self.indptr[s : e + 1] - a).astype(np.int32))
            rows = _over(sp.csr_array(arrays, shape=(e - s, self.m * self.k)), arrays)
            out.append((s, e, rows, _over(sp.csc_array(arrays, shape=(self.m * self.k, e - s)), arrays)))
        return out


def _over(matrix: Any, arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Any:
    """``matrix`` on ``arrays`` themselves: scipy's constructor copies a view of less than half its base
    (``prune``), which would hold every block of ``flat`` and of the ones twice."""
    matrix.data, matrix.indices, matrix.indptr = arrays
    return matrix


LabelMatrix: TypeAlias = "np.ndarray | sp.spmatrix | sp.sparray | SparseVotes | Votes"


class LabelModelProtocol(Protocol):
    """What training needs from a label model."""

    cardinality: int

    def fit(self, L: LabelMatrix, dev_labels: np.ndarray | None = None) -> Any: ...

    def predict_proba(self, L: LabelMatrix) -> np.ndarray: ...

    def predict(self, L: LabelMatrix) -> np.ndarray: ...

    def save(self, path: str | Path) -> None: ...


def check_label_matrix(L: np.ndarray, cardinality: int, name: str = "L") -> np.ndarray:
    """Validate a dense (n x m) label matrix and return it as int16; errors name the bad value's place."""
    L = np.asarray(L)
    if L.ndim != 2:
        raise MtlError(f"{name} must be 2-D (rows x LFs), got shape {L.shape}")
    if L.size and (L.min() < ABSTAIN or L.max() >= cardinality):
        bad = np.argwhere((cardinality <= L) | (L < ABSTAIN))[0]
        raise MtlError(
            f"{name}[{bad[0]}, {bad[1]}] = {L[bad[0], bad[1]]} is neither ABSTAIN (-1) nor a class in "
            f"0..{cardinality - 1}"
        )
    return L.astype(np.int16, copy=False)


def as_votes(L: LabelMatrix, cardinality: int, name: str = "L") -> Votes:
    """Validate a label matrix in any accepted form (see the module docstring) and return its ``Votes``.

    Errors name the first bad entry as ``name[row, column]``. A ``Votes`` is returned as is (after checking
    its number of classes); a dense matrix is read once; a scipy matrix is copied only if it has unsorted
    or duplicate indices or stored zeros.
    """
    k = cardinality
    if isinstance(L, Votes):
        if L.k != k:
            raise MtlError(f"{name} holds votes for {L.k} classes, not {k}")
        return L
    if isinstance(L, SparseVotes):
        return _from_coo(L, k, name)
    if sp.issparse(L):
        return _from_scipy(L, k, name)
    L = check_label_matrix(np.asarray(L), k, name)
    rows, cols = np.nonzero(L != ABSTAIN)
    indptr = np.zeros(L.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=L.shape[0]), out=indptr[1:])
    return Votes(L.shape[0], L.shape[1], k, indptr, (cols * k + L[rows, cols]).astype(np.int32))


def _from_scipy(A: Any, k: int, name: str) -> Votes:
    """``Votes`` of a scipy.sparse matrix storing class + 1 (0 = abstain); see ``as_votes``."""
    if len(A.shape) != 2:
        raise MtlError(f"{name} must be 2-D (rows x LFs), got shape {A.shape}")
    n, m = A.shape
    csr = A.tocsr()  # the matrix itself when it is CSR already; a COO matrix's duplicates are summed here
    if A.format == "coo" and csr.nnz != A.nnz:
        rows, cols = np.asarray(A.row), np.asarray(A.col)
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        i = int(np.flatnonzero((rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1]))[0])
        raise MtlError(f"{name}[{rows[i]}, {cols[i]}] is stored twice: an LF votes once per row at most")
    if not csr.has_canonical_format:  # unsorted or duplicate column indices within a row
        csr = csr.copy()
        csr.sort_indices()
        same = csr.indices[1:] == csr.indices[:-1]
        starts = csr.indptr[1:-1]
        same[starts[(starts > 0) & (starts < csr.nnz)] - 1] = False  # a row's first vote repeats nothing
        if same.any():
            p = int(np.argmax(same)) + 1
            row = int(np.searchsorted(csr.indptr, p, "right")) - 1
            raise MtlError(
                f"{name}[{row}, {csr.indices[p]}] is stored twice: an LF votes once per row at most"
            )
    if csr.dtype.kind not in "biuf":
        raise MtlError(f"{name} stores {csr.dtype} values; expected integers (class index + 1)")
    if csr.nnz and not csr.data.all():  # stored zeros are abstains too
        csr = csr.copy()
        csr.eliminate_zeros()
    data = csr.data
    bad = (data < 1) | (data > k)
    if data.dtype.kind == "f":
        bad |= data != np.floor(data)  # also true for nan
    if bad.any():
        p = int(np.argmax(bad))
        row = int(np.searchsorted(csr.indptr, p, "right")) - 1
        raise MtlError(
            f"{name}[{row}, {csr.indices[p]}] stores {data[p]}: a scipy.sparse label matrix stores class "
            f"index + 1 (1..{k}) and leaves abstains out (0)"
        )
    flat = csr.indices.astype(np.int32)
    flat *= k
    np.add(flat, data, out=flat, casting="unsafe")
    flat -= 1
    return Votes(n, m, k, csr.indptr.astype(np.int64, copy=False), flat)


def _from_coo(S: SparseVotes, k: int, name: str) -> Votes:
    """``Votes`` of a ``SparseVotes``: its entries checked, then read as a COO matrix of class + 1."""
    n, m = (int(x) for x in S.shape)
    rows, cols, votes = (np.asarray(a).ravel() for a in S[:3])
    if not len(rows) == len(cols) == len(votes):
        raise MtlError(
            f"{name}: rows, cols and votes differ in length ({len(rows)}, {len(cols)}, {len(votes)})"
        )
    for what, index, size in (("row", rows, n), ("LF", cols, m)):
        out = (index < 0) | (index >= size)
        if out.any():
            i = int(np.argmax(out))
            raise MtlError(
                f"{name}: vote {i} is at {what} {index[i]}, outside 0..{size - 1} (shape {n} x {m})"
            )
    bad = (votes < 0) | (votes >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise MtlError(
            f"{name}[{rows[i]}, {cols[i]}] = {votes[i]} is not a class in 0..{k - 1} (SparseVotes hold the "
            "votes only: leave abstains out)"
        )
    return _from_scipy(sp.coo_array((votes.astype(np.int16) + 1, (rows, cols)), shape=(n, m)), k, name)


def _row_reduce(op: np.ufunc, a: np.ndarray) -> np.ndarray:
    """``op.reduce(a, axis=1)`` of an (n x k) array for a small k, column by column: numpy reduces a short
    last axis one row at a time, 3x slower; the result is the same up to the order of the sums."""
    out = a[:, 0].copy()
    for c in range(1, a.shape[1]):
        op(out, a[:, c], out=out)
    return out


def vote_counts(L: LabelMatrix, cardinality: int) -> np.ndarray:
    """(n x k) number of LFs voting each class per row."""
    V = as_votes(L, cardinality)
    vote_class, out = _vote_class(V), np.empty((V.n, V.k))
    for s, e, block, _ in V.blocks:
        out[s:e] = block @ vote_class
    return out


def _vote_class(V: Votes) -> np.ndarray:
    """(m*k x k) one-hot of the class of each one-hot column (LF * k + class)."""
    return np.tile(np.eye(V.k), (V.m, 1))


@dataclass
class MajorityVote:
    """Vote shares per row; rows with no vote get ``class_balance`` (uniform by default).

    Ties keep equal probabilities (``predict`` then takes the lowest class index among the tied).
    """

    cardinality: int
    class_balance: Sequence[float] | None = None

    def fit(self, L: LabelMatrix, dev_labels: np.ndarray | None = None) -> MajorityVote:
        """Nothing to learn: only validates L."""
        as_votes(L, self.cardinality)
        return self

    def predict_proba(self, L: LabelMatrix) -> np.ndarray:
        """(n x k) the share of each class among a row's votes; the class balance for rows without one."""
        V = as_votes(L, self.cardinality)
        prior = np.asarray(
            self.class_balance or np.full(self.cardinality, 1.0 / self.cardinality), dtype=float
        )
        vote_class, out = _vote_class(V), np.empty((V.n, V.k))
        for s, e, block, _ in V.blocks:  # block by block: n x k temporaries only of a block's size
            counts = block @ vote_class
            total = _row_reduce(np.add, counts)[:, None]
            out[s:e] = np.where(total > 0, counts / np.maximum(total, 1), prior[None, :])
        return out

    def predict(self, L: LabelMatrix) -> np.ndarray:
        """The class with the largest share per row (the lowest index among tied ones)."""
        return self.predict_proba(L).argmax(1)

    def save(self, path: str | Path) -> None:
        """Write the model as plain JSON (``load_label_model`` reads it)."""
        Path(path).write_text(
            json.dumps(
                {
                    "type": "MajorityVote",
                    "cardinality": self.cardinality,
                    "class_balance": list(self.class_balance or []),
                }
            )
        )


@dataclass
class LabelModel:
    """Dawid-Skene label model fit by EM (see the module docstring for the why).

    The defaults are the safe ones: a confusion matrix per LF with abstains as missing data and a uniform
    class balance (classic Dawid-Skene). Reading evidence from which LFs stay silent
    (``abstain_as_vote=True``, the default before 2026-12) lets the abstains of many LFs outvote the one
    or two votes a row has: on WRENCH trec (68 LFs, 1.7 votes a row) it scored 0.37 test accuracy against
    majority vote's 0.58, and on a synthetic 160-LF matrix it lost 20-30 points of macro-F1 to majority
    vote; ``select_label_model`` still tries it on dev, where it can win (youtube). Classic Dawid-Skene
    can degenerate too (one-class LFs carry little evidence when abstains are missing data): on the
    160-LF matrix it collapsed to one or two classes. ``fit_or_majority_vote`` catches such fits without
    gold and is what a task naming ``weak.label_model: dawid_skene`` gets.

    Each EM iteration is two passes over the votes in row blocks: the M-step as (one-hot of the votes).T
    @ posteriors, the E-step as one-hot @ (log-odds of each vote), both sparse @ dense products (scipy,
    one thread: torch's sparse CSR products were 3-9x slower on the 2-core CPU machine, and two threads
    over the blocks gained nothing). ``early_stop`` ends a geometrically converging fit a few iterations
    before ``tol`` would; with ``early_stop=None`` the iterates are those of the EM before 2026-12 (up to
    the order of sums across row blocks).

    Args:
        cardinality: number of classes k.
        abstain_as_vote: model the abstain as an LF output (firing is evidence) or as missing data.
        class_balance: ``"uniform"``, ``"estimate"``, ``"dev"`` (from ``dev_labels`` in ``fit``) or k floats.
        smoothing: Dirichlet pseudo-count added to every confusion-matrix cell.
        diagonal: extra pseudo-count on "LF says the true class", encoding that LFs beat chance.
        max_iter: EM iterations at most; stops earlier when no posterior moves by more than ``tol``.
        tol: convergence threshold on the largest change of any posterior probability.
        early_stop: also stop once the change still to come, extrapolated from the last three changes as
            a geometric series (d r / (1 - r), r the larger of the last two ratios), is below this; None:
            ``tol`` only. At 5e-5 it ran 6 iterations instead of 8 on the 1M-row matrix of
            ``scripts/bench_label_model_scale.py`` and moved no posterior by more than 4.3e-5 on the
            published votes of WRENCH youtube, sms and trec (six variants each).
    """

    cardinality: int
    abstain_as_vote: bool = False
    class_balance: str | Sequence[float] = "uniform"
    smoothing: float = 1.0
    diagonal: float = 2.0
    max_iter: int = 200
    tol: float = 1e-5
    early_stop: float | None = 5e-5

    def __post_init__(self) -> None:
        self.log_theta: np.ndarray | None = None  # (m, k + 1, k): log P(output v | class y); row k = abstain
        self.log_prior: np.ndarray | None = None
        self.n_iter = 0

    # -- EM ------------------------------------------------------------------------------------------
    # Both steps touch only the votes: the abstain terms are the same for every row, so they are added
    # once per class. Cost per iteration O(votes x k), not O(n x m x k).
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(m*k x k) the log-odds of each vote (LF * k + class voted) against the LF abstaining, per true
        class; (k,) the log-joint of a row without votes."""
        assert self.log_theta is not None and self.log_prior is not None
        k = self.cardinality
        abstain = self.log_theta[:, k, :]  # (m, k); zeros when abstains carry no information
        delta = (self.log_theta[:, :k, :] - abstain[:, None, :]).reshape(-1, k)
        return delta, self.log_prior + abstain.sum(0)

    @staticmethod
    def _normalise(logp: np.ndarray) -> np.ndarray:
        """Row-wise softmax of (rows x k) log-probabilities, in place."""
        logp -= _row_reduce(np.maximum, logp)[:, None]
        p = np.exp(logp, out=logp)
        p /= _row_reduce(np.add, p)[:, None]
        return p

    def _e_step(self, V: Votes, q: np.ndarray) -> float:
        """Write the posteriors under the current parameters into q; return the largest change."""
        delta, base = self._tables()
        change = 0.0
        for s, e, block, _ in V.blocks:
            new = self._normalise(block @ delta + base)
            change = max(change, float(np.abs(new - q[s:e]).max()))
            q[s:e] = new
        return change

    def _m_step(self, V: Votes, q: np.ndarray) -> None:
        k = self.cardinality
        voted, mass = np.zeros((V.m * k, k)), np.zeros(k)
        for s, e, _, transposed in V.blocks:
            voted += transposed @ q[s:e]
            mass += q[s:e].sum(0)
        counts = np.empty((V.m, k + 1, k))
        counts[:, :k, :] = voted.reshape(V.m, k, k)
        # every row not voting is an abstain: the class mass of all rows minus that of the votes
        counts[:, k, :] = mass[None, :] - counts[:, :k, :].sum(1)
        counts = np.maximum(counts, 0.0) + self.smoothing
        counts[:, np.arange(k), np.arange(k)] += self.diagonal
        if not self.abstain_as_vote:
            counts[:, k, :] = 0.0  # abstains carry no information: normalise over the k votes only
        theta = counts / counts.sum(1, keepdims=True)
        with np.errstate(divide="ignore"):
            log_theta = np.log(theta)
        if not self.abstain_as_vote:
            log_theta[:, k, :] = 0.0
        self.log_theta = log_theta
        if isinstance(self.class_balance, str) and self.class_balance == "estimate":
            prior = (mass + 1.0) / (V.n + k)  # Dirichlet(2): keeps a rare class from vanishing
            self.log_prior = np.log(prior)

    def _converged(self, changes: list[float]) -> bool:
        d = changes[-1]
        if d < self.tol:
            return True
        if self.early_stop is None or len(changes) < 3 or min(changes[-3:-1]) <= 0:
            return False
        r = max(d / changes[-2], changes[-2] / changes[-3])
        return r < 1 and d * r / (1 - r) < self.early_stop

    def fit(self, L: LabelMatrix, dev_labels: np.ndarray | None = None) -> LabelModel:
        """Fit on L (no gold needed). ``dev_labels`` only set the class balance when it is ``"dev"``."""
        k = self.cardinality
        V = as_votes(L, k)
        if V.n == 0 or V.m == 0:
            raise MtlError(f"cannot fit a label model on an empty label matrix of shape {(V.n, V.m)}")
        cb = self.class_balance
        if isinstance(cb, str):
            if cb == "uniform":
                prior = np.full(k, 1.0 / k)
            elif cb == "dev":
                if dev_labels is None or len(dev_labels) == 0:
                    raise MtlError("class_balance='dev' needs dev_labels")
                prior = (np.bincount(np.asarray(dev_labels), minlength=k)[:k] + 1.0) / (len(dev_labels) + k)
            elif cb == "estimate":
                prior = np.full(k, 1.0 / k)
            else:
                raise MtlError(
                    f"class_balance must be 'estimate', 'uniform', 'dev' or {k} floats, got {cb!r}"
                )
        else:
            prior = np.asarray(cb, dtype=float)
            if prior.shape != (k,) or np.any(prior <= 0) or not np.isclose(prior.sum(), 1.0):
                raise MtlError(f"class_balance must be {k} positive floats summing to 1, got {list(cb)}")
        self.log_prior = np.log(prior)
        # Start from majority vote (the prior for rows without votes), then alternate M and E steps.
        q = MajorityVote(k, list(prior)).predict_proba(V)
        changes: list[float] = []
        for it in range(1, self.max_iter + 1):
            self._m_step(V, q)
            changes.append(self._e_step(V, q))
            self.n_iter = it
            if self._converged(changes):
                break
        return self

    def predict_proba(self, L: LabelMatrix) -> np.ndarray:
        """Posterior class probabilities (n x k) under the fitted model."""
        if self.log_theta is None:
            raise MtlError("the label model is not fitted: call fit(L) first")
        V = as_votes(L, self.cardinality)
        if V.m != self.log_theta.shape[0]:
            raise MtlError(f"L has {V.m} LFs but the label model was fit on {self.log_theta.shape[0]}")
        delta, base = self._tables()
        out = np.empty((V.n, self.cardinality))
        for s, e, block, _ in V.blocks:
            out[s:e] = self._normalise(block @ delta + base)
        return out

    def predict(self, L: LabelMatrix) -> np.ndarray:
        """The most probable class per row."""
        return self.predict_proba(L).argmax(1)

    def lf_accuracies(self) -> np.ndarray:
        """(m x k) the learned P(LF votes y | class y, LF votes), per LF and class."""
        if self.log_theta is None:
            raise MtlError("the label model is not fitted")
        k = self.cardinality
        theta = np.exp(self.log_theta[:, :k, :])
        diag = theta[:, np.arange(k), np.arange(k)]
        return diag / theta.sum(1)

    # -- persistence (JSON, no pickles) ----------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the fitted parameters as plain JSON (``load_label_model`` reads it)."""
        if self.log_theta is None or self.log_prior is None:
            raise MtlError("the label model is not fitted")
        data = {
            "type": "LabelModel",
            "cardinality": self.cardinality,
            "abstain_as_vote": self.abstain_as_vote,
            "class_balance": self.class_balance
            if isinstance(self.class_balance, str)
            else list(self.class_balance),
            "smoothing": self.smoothing,
            "diagonal": self.diagonal,
            "theta": np.exp(self.log_theta).tolist(),
            "prior": np.exp(self.log_prior).tolist(),
            "n_iter": self.n_iter,
        }
        Path(path).write_text(json.dumps(data))


def load_label_model(path: str | Path) -> MajorityVote | LabelModel:
    """Load a model written by ``save`` (plain JSON)."""
    data = json.loads(Path(path).read_text())
    if data["type"] == "MajorityVote":
        return MajorityVote(data["cardinality"], data["class_balance"] or None)
    lm = LabelModel(
        data["cardinality"],
        data["abstain_as_vote"],
        data["class_balance"],
        data["smoothing"],
        data["diagonal"],
    )
    with np.errstate(divide="ignore"):
        lm.log_theta = np.log(np.asarray(data["theta"]))
        lm.log_prior = np.log(np.asarray(data["prior"]))
    if not lm.abstain_as_vote:
        lm.log_theta[:, lm.cardinality, :] = 0.0  # missing data (exp(0) = 1 was saved for them)
    lm.n_iter = data["n_iter"]
    return lm


def label_model_candidates(cardinality: int) -> dict[str, MajorityVote | LabelModel]:
    """The variants ``select_label_model`` chooses among, simplest first: majority vote and the full
    Dawid-Skene model (a confusion matrix per LF) in six settings."""
    out: dict[str, MajorityVote | LabelModel] = {"majority_vote": MajorityVote(cardinality)}
    for abstain in (True, False):
        for balance in ("uniform", "estimate", "dev"):
            name = f"dawid_skene(abstain_as_vote={abstain}, class_balance={balance})"
            out[name] = LabelModel(cardinality, abstain_as_vote=abstain, class_balance=balance)
    return out


def select_label_model(
    L: LabelMatrix,
    L_dev: LabelMatrix,
    y_dev: np.ndarray,
    cardinality: int,
    metric: str = "accuracy",
) -> tuple[MajorityVote | LabelModel, list[dict[str, Any]]]:
    """Fit every candidate on L (no gold) and keep the one with the best ``metric`` on the dev set; an
    exact tie is broken by the dev log-loss (lower wins: the better-calibrated ranking), then by
    simplicity (the order of ``label_model_candidates``).

    Gold labels are used only to *choose* (and, for ``class_balance="dev"``, to set the class balance),
    never to fit LF parameters. Returns the chosen model and one row per candidate (name, dev metric,
    dev log-loss, EM iterations), best first. L and L_dev are validated once, in any form ``as_votes`` takes.
    """
    y_dev = np.asarray(y_dev)
    if len(y_dev) == 0:
        raise MtlError("select_label_model needs dev rows with gold labels")
    V, V_dev = as_votes(L, cardinality), as_votes(L_dev, cardinality, "L_dev")
    rows: list[dict[str, Any]] = []
    models = label_model_candidates(cardinality)
    for name, model in models.items():
        model.fit(V, dev_labels=y_dev)
        p_dev = model.predict_proba(V_dev)
        rows.append(
            {
                "label_model": name,
                f"dev_{metric}": compute_metrics(p_dev.argmax(1), y_dev, cardinality)[metric],
                "dev_log_loss": log_loss(p_dev, y_dev),
                "iterations": getattr(model, "n_iter", 0),
            }
        )
    # stable: rows that tie on both keys keep the candidates' order (the simpler model first)
    rows.sort(key=lambda r: (-_nan_low(r[f"dev_{metric}"]), r["dev_log_loss"]))
    return models[rows[0]["label_model"]], rows


def unanimous_agreement(model: LabelModelProtocol, L: LabelMatrix) -> float:
    """The share of the rows whose LFs all vote one class (at least one vote) where ``model``'s argmax is
    that class (nan without such rows). Any sane label model keeps those rows' class: a flipped or
    collapsed fit does not (on WRENCH trec the abstains-as-votes model kept 40%; on a 160-LF synthetic
    matrix classic Dawid-Skene kept 76-79%; every fit that beat majority vote kept 97-100%)."""
    V = as_votes(L, model.cardinality)
    voted = np.flatnonzero(np.diff(V.indptr))  # rows with at least one vote
    if not len(voted):
        return float("nan")
    classes = V.flat % V.k
    lo = np.minimum.reduceat(classes, V.indptr[voted])  # empty rows left out, so each segment is one row
    hi = np.maximum.reduceat(classes, V.indptr[voted])
    rows = voted[lo == hi]
    return float(np.mean(model.predict(V)[rows] == lo[lo == hi])) if len(rows) else float("nan")


def fit_or_majority_vote(
    model: LabelModel, L: LabelMatrix, dev_labels: np.ndarray | None = None, min_agreement: float = 0.95
) -> tuple[LabelModelProtocol, str | None]:
    """Fit ``model`` on ``L``; if the fit is degenerate (it keeps the class of fewer than ``min_agreement``
    of the unanimously voted rows: ``unanimous_agreement``), return majority vote instead, with the
    reason. No gold is used. This is what a task that names ``weak.label_model: dawid_skene`` gets: EM
    can settle in a solution that flips or collapses the labels (many LFs with few votes a row), and
    nothing in the data without gold would say so otherwise."""
    V = as_votes(L, model.cardinality)
    model.fit(V, dev_labels=dev_labels)
    kept = unanimous_agreement(model, V)
    if kept < min_agreement:  # nan (no unanimous rows) keeps the model
        reason = (
            f"the Dawid-Skene fit kept the class of only {kept:.0%} of the unanimously voted rows "
            f"(< {min_agreement:.0%}): a degenerate fit; majority vote is used instead"
        )
        return MajorityVote(model.cardinality).fit(V), reason
    return model, None


def _nan_low(x: float) -> float:
    return -np.inf if np.isnan(x) else x


def log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-6) -> float:
    """Mean negative log-likelihood of integer ``labels`` under rows of ``probs`` (nan for no rows)."""
    if len(labels) == 0:
        return float("nan")
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1.0)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-6) -> float:
    """The temperature T that minimises the negative log-likelihood of ``labels`` under ``probs ** (1/T)``
    (renormalised), searched on a log grid from 0.01 to 100 and refined around the best point.

    Temperature scaling (Guo et al., 2017) keeps every row's argmax, so a label model's accuracy is
    unchanged; it fixes its confidence. That matters for training on soft labels: classic Dawid-Skene
    on one-sided LFs (abstains as missing) ranks rows well but leaves every posterior near the prior
    (0.48 vs 0.52 on WRENCH youtube, 89% accurate), a target that teaches a model almost nothing.
    Rows of ``probs`` that are all zero (no vote) are ignored; returns 1.0 when none are left.
    """
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    keep = probs.sum(1) > 0
    if not keep.any():
        return 1.0
    rows, y = probs[keep], labels[keep]

    def nll(t: float) -> float:
        return float(-_tempered_log_probs(rows, t, eps)[np.arange(len(y)), y].mean())

    grid = np.exp(np.linspace(np.log(0.01), np.log(100.0), 81))
    best = min(grid, key=nll)
    fine = best * np.exp(np.linspace(-0.06, 0.06, 25))  # the coarse grid's step is 0.115 in log space
    return float(min(fine, key=nll))


def apply_temperature(probs: np.ndarray, temperature: float, eps: float = 1e-6) -> np.ndarray:
    """``probs ** (1/temperature)`` renormalised per row (probabilities clipped at ``eps`` first, as in
    ``fit_temperature``); all-zero rows (no target) stay zero."""
    probs = np.asarray(probs, dtype=float)
    keep = probs.sum(1) > 0
    out = np.zeros_like(probs)
    out[keep] = np.exp(_tempered_log_probs(probs[keep], temperature, eps))
    return out


def _tempered_log_probs(probs: np.ndarray, temperature: float, eps: float) -> np.ndarray:
    """Row-wise log-softmax of ``log(clip(probs, eps, 1)) / temperature``: the log of ``probs ** (1/T)``
    renormalised, the one computation ``fit_temperature`` scores and ``apply_temperature`` returns."""
    z = np.log(np.clip(probs, eps, 1.0)) / temperature
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))
