"""Slice discovery: where a trained model fails on dev, found without hand-written slicing functions.

The dev rows are clustered in the encoder's embedding space (k-means on the L2-normalised pooled
vectors); a cluster is a *discovered slice* when its error rate is above the split's and it holds at
least ``min_size`` rows. Slices are ranked by ``score = size x gap`` (``gap``: the cluster's error rate
minus the overall one; an error is a misclassified row, whatever the task's metric), described by their
most distinctive words and shown with examples (their errors first), and turned into keyword SFs that a
task's ``slices:`` can name (``sf_source``). Measured against a task's hand-written SFs (``rediscover``),
a hand slice counts as rediscovered when a discovered slice (its cluster, or its keyword SF) overlaps it
with a Jaccard index of at least a threshold.

The core takes arrays (texts, gold and predicted classes, vectors), so it runs without a model;
``discover`` adds the model (``predict`` and ``embed``) and the task's hand-written slices.

Example:
    >>> import numpy as np
    >>> texts = ["flight delayed again", "delayed flight, lost bag", "flight delayed two hours",
    ...          "lost bag and delayed flight", "love this song", "great song", "song of the day",
    ...          "nice song"]
    >>> gold = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> pred = np.array([1, 1, 1, 0, 1, 1, 1, 1])          # three errors, all on flights
    >>> vectors = np.array([[1.0, 0.1]] * 4 + [[0.1, 1.0]] * 4)
    >>> found = discover_slices(texts, gold, pred, vectors, k=2, min_size=2, min_count=2)
    >>> top = found.slices[0]
    >>> top.rows, top.stats.error_rate, top.words
    ([0, 1, 2, 3], 0.75, ['delayed', 'flight', 'bag', 'lost'])
    >>> print(sf_source(found).split("@slicing_function()")[1].strip())
    def discovered_1(x: dict) -> bool:
        return not {"delayed", "flight", "bag"}.isdisjoint(_words(x["text"]))
    <BLANKLINE>
    <BLANKLINE>
    SFS = [discovered_1]
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import datasets
import faiss
import numpy as np
import torch

from mtl.metrics import compute_metrics
from mtl.slicing import slice_matrix
from mtl.task import Task
from mtl.types import MtlError

WORD_PATTERN = r"[^\W\d_]+"
"""A word: a maximal run of letters (``"don't"`` is ``don`` and ``t``; ``"#sarcasm"`` is ``sarcasm``).
Distinctive words and the keyword SFs written by ``sf_source`` use this one definition."""
_WORD = re.compile(WORD_PATTERN)
_SMOOTHING = 0.5  # added to every count of the log-odds (Haldane-Anscombe): no log of zero


def words_of(text: str) -> set[str]:
    """The lower-cased words of ``text`` (see ``WORD_PATTERN``).

    Example:
        >>> sorted(words_of("Don't REFUND #refunds, 2x"))
        ['don', 'refund', 'refunds', 't', 'x']
    """
    return set(_WORD.findall(text.lower()))


def default_k(n: int) -> int:
    """The number of clusters for ``n`` dev rows: about one per 40 rows, between 2 and 30.

    Example:
        >>> default_k(300), default_k(50), default_k(5000)
        (7, 2, 30)
    """
    return max(2, min(30, n // 40))


# ------------------------------------------------------------------------------------------ figures


@dataclass(frozen=True)
class SliceStats:
    """A subset of dev rows against the whole split: its size, errors, error rate and error gap."""

    size: int
    errors: int
    error_rate: float
    gap: float

    @property
    def score(self) -> float:
        """``size x gap``: how many more errors than the split's rate would predict."""
        return self.size * self.gap

    def to_dict(self) -> dict[str, float]:
        return {
            "size": self.size,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "gap": self.gap,
            "score": self.score,
        }


def slice_stats(members: np.ndarray, errors: np.ndarray) -> SliceStats:
    """The figures of the rows in ``members`` (a boolean mask) given each row's error (a boolean mask);
    an empty subset has error rate NaN.

    Example:
        >>> slice_stats(np.array([True, True, False, False]), np.array([True, False, False, False]))
        SliceStats(size=2, errors=1, error_rate=0.5, gap=0.25)
    """
    members, errors = np.asarray(members, dtype=bool), np.asarray(errors, dtype=bool)
    size, wrong = int(members.sum()), int((members & errors).sum())
    rate = wrong / size if size else float("nan")
    return SliceStats(size, wrong, rate, rate - float(errors.mean()))


# --------------------------------------------------------------------------------------- clustering


def cluster_rows(vectors: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means (``faiss.Kmeans``, spherical, seeded) of the L2-normalised rows of ``vectors``: each row's
    cluster (n,) and the unit-length centroids (k x d)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) < k:
        raise MtlError(f"k={k} clusters need at least {k} rows of vectors, got shape {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    # min_points_per_centroid=1: a small dev split is the normal case here, not a mistake to warn about
    km = faiss.Kmeans(x.shape[1], k, niter=25, seed=seed, spherical=True, min_points_per_centroid=1)
    km.train(x)
    _, assigned = km.index.search(x, 1)
    return assigned[:, 0].astype(np.int64), np.asarray(km.centroids)


def distinctive_words(
    texts: Sequence[str], members: np.ndarray, top: int = 8, min_count: int = 3
) -> list[str]:
    """The words (>= 3 letters, in at least ``min_count`` member rows) most over-represented in the rows of
    ``members`` against the rest, best first: the smoothed log-odds ratio of a row containing the word
    inside vs outside, divided by its standard error (Monroe et al. 2008), so a word seen in 3 rows does
    not outrank one seen in 30 on a slightly larger ratio. Only words with a positive score qualify.

    Example:
        >>> texts = ["lost my bag", "bag lost again", "my bag", "nice song", "my song"]
        >>> distinctive_words(texts, np.array([1, 1, 1, 0, 0], dtype=bool), min_count=2)
        ['bag', 'lost']
    """
    members = np.asarray(members, dtype=bool)
    n_in, n_out = int(members.sum()), int((~members).sum())
    inside: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    for text, member in zip(texts, members, strict=True):
        (inside if member else outside).update(w for w in words_of(text) if len(w) >= 3)
    a0 = _SMOOTHING
    scored = []
    for word, a in inside.items():
        if a < min_count:
            continue
        b = outside[word]
        delta = math.log((a + a0) / (n_in - a + a0)) - math.log((b + a0) / (n_out - b + a0))
        var = 1 / (a + a0) + 1 / (n_in - a + a0) + 1 / (b + a0) + 1 / (n_out - b + a0)
        z = delta / math.sqrt(var)
        if z > 0:
            scored.append((-z, word))
    return [w for _, w in sorted(scored)[:top]]


def keyword_mask(texts: Sequence[str], words: Sequence[str]) -> np.ndarray:
    """Which texts contain any of ``words`` as a whole word (case-insensitive): what the keyword SFs of
    ``sf_source`` mark.

    Example:
        >>> keyword_mask(["REFUND now!", "refunds", "no"], ["refund"]).tolist()
        [True, False, False]
    """
    wanted = {w.lower() for w in words}
    return np.array([not wanted.isdisjoint(words_of(t)) for t in texts], dtype=bool)


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Example:
    """A dev row shown with a slice: its text, gold class and the model's prediction."""

    text: str
    gold: str
    predicted: str

    @property
    def error(self) -> bool:
        return self.gold != self.predicted


@dataclass
class DiscoveredSlice:
    """A cluster of dev rows where the model errs more than on the whole split, and its keyword SF.

    Attributes:
        name: ``discovered_<rank>``, the name of its keyword SF.
        cluster: the k-means cluster it is.
        rows: the dev rows in the cluster (indices).
        stats: the cluster's size, error rate and gap.
        words: its most distinctive words, best first.
        keywords: the words of its keyword SF (the first ``n_words`` of ``words``; empty: no SF).
        keyword_rows: the dev rows the keyword SF marks.
        keyword_stats: the keyword SF's own figures on dev (it is not the cluster).
        examples: a few of its rows, its errors first (closest to the centroid first).
    """

    name: str
    cluster: int
    rows: list[int]
    stats: SliceStats
    words: list[str]
    keywords: list[str]
    keyword_rows: list[int]
    keyword_stats: SliceStats | None
    examples: list[Example]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cluster": self.cluster,
            **self.stats.to_dict(),
            "words": self.words,
            "keyword_sf": {
                "words": self.keywords,
                **(self.keyword_stats.to_dict() if self.keyword_stats else {}),
                "rows": self.keyword_rows,
            },
            "examples": [{**vars(e), "error": e.error} for e in self.examples],
            "rows": self.rows,
        }


@dataclass(frozen=True)
class HandMatch:
    """A hand-written slice against the discovered ones: its own figures and its best match.

    Attributes:
        name: the SF's name.
        stats: its size, error rate and gap on dev.
        critical: at least ``min_size`` dev rows: counted in the rediscovery figures.
        match: the discovered slice overlapping it most (None when none was discovered).
        by: ``cluster`` (the cluster's rows) or ``keywords`` (the rows its keyword SF marks).
        jaccard: |D & H| / |D | H| of that match.
        precision: |D & H| / |D|, the share of the discovered slice inside the hand slice.
        recall: |D & H| / |H|, the share of the hand slice the discovered one covers.
        rediscovered: critical and ``jaccard`` at least the threshold.
    """

    name: str
    stats: SliceStats
    critical: bool
    match: str | None
    by: str | None
    jaccard: float
    precision: float
    recall: float
    rediscovered: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.stats.to_dict(),
            "critical": self.critical,
            "match": self.match,
            "by": self.by,
            "jaccard": self.jaccard,
            "precision": self.precision,
            "recall": self.recall,
            "rediscovered": self.rediscovered,
        }


@dataclass
class Discovery:
    """One task's discovered slices on dev, and (``hand``) how they meet its hand-written slices.

    Attributes:
        task: the task's name.
        n: dev rows.
        errors: misclassified dev rows.
        k: clusters asked of k-means.
        min_size: the fewest rows of a kept slice (and of a critical hand slice).
        slices: the kept clusters, best score first.
        message: why nothing was discovered (empty when something was).
        metric: the task's metric name and value on dev, for context.
        hand: the hand-written slices, in the order of the task's SFs (None: the task has none).
        hand_ref: where they come from (the task's ``slices``).
        jaccard: the rediscovery threshold.
    """

    task: str
    n: int
    errors: int
    k: int
    min_size: int
    slices: list[DiscoveredSlice]
    message: str = ""
    metric: tuple[str, float] | None = None
    hand: list[HandMatch] | None = None
    hand_ref: str | None = None
    jaccard: float = 0.3

    @property
    def error_rate(self) -> float:
        return self.errors / self.n

    @property
    def critical(self) -> int:
        """How many hand slices are critical (at least ``min_size`` dev rows)."""
        return sum(h.critical for h in self.hand or [])

    @property
    def rediscovered(self) -> int:
        """How many critical hand slices some discovered slice overlaps with Jaccard >= ``jaccard``."""
        return sum(h.rediscovered for h in self.hand or [])

    @property
    def critical_failing(self) -> int:
        """How many critical hand slices the model errs on more than on the split (gap > 0): the ones
        that discovery, which looks for errors, can be expected to find."""
        return sum(h.critical and h.stats.gap > 0 for h in self.hand or [])

    @property
    def rediscovered_failing(self) -> int:
        """How many of the ``critical_failing`` hand slices were rediscovered."""
        return sum(h.rediscovered and h.stats.gap > 0 for h in self.hand or [])

    def rediscovery_line(self) -> str:
        """``rediscovered 1 of 4 critical (1 of 3 with gap > 0)``."""
        return (
            f"rediscovered {self.rediscovered} of {self.critical} critical "
            f"({self.rediscovered_failing} of {self.critical_failing} with gap > 0)"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "n": self.n,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "k": self.k,
            "min_size": self.min_size,
            "message": self.message,
            "slices": [s.to_dict() for s in self.slices],
        }
        if self.metric:
            out["metric"] = {"name": self.metric[0], "value": self.metric[1]}
        if self.hand is not None:
            out["rediscovery"] = {
                "hand_slices": self.hand_ref,
                "jaccard_threshold": self.jaccard,
                "critical": self.critical,
                "rediscovered": self.rediscovered,
                "critical_with_gap": self.critical_failing,
                "rediscovered_with_gap": self.rediscovered_failing,
                "slices": [h.to_dict() for h in self.hand],
            }
        return out


# -------------------------------------------------------------------------------------- the pipeline


def check_settings(
    task: str,
    n: int,
    k: int,
    *,
    min_size: int = 20,
    n_words: int = 3,
    examples: int = 5,
    jaccard: float = 0.3,
) -> None:
    """Refuse settings that make no sense for ``n`` dev rows, naming the task and the key."""
    bad = [
        f"{key}={value} (must be {rule})"
        for key, value, ok, rule in [
            ("k", k, k >= 2, ">= 2"),
            ("min_size", min_size, min_size >= 1, ">= 1"),
            ("n_words", n_words, n_words >= 1, ">= 1"),
            ("examples", examples, examples >= 0, ">= 0"),
            ("jaccard", jaccard, 0 < jaccard <= 1, "in (0, 1]"),
        ]
        if not ok
    ]
    if bad:
        raise MtlError(f"task {task!r}: out of range: {', '.join(bad)}")
    if n < k:
        raise MtlError(
            f"task {task!r}: k={k} clusters need at least {k} dev rows, but its dev split has {n}; "
            "pass a smaller k"
        )


def discover_slices(
    texts: Sequence[str],
    gold: np.ndarray,
    pred: np.ndarray,
    vectors: np.ndarray,
    *,
    label_names: Sequence[str] | None = None,
    k: int | None = None,
    min_size: int = 20,
    n_words: int = 3,
    top_words: int = 8,
    min_count: int = 3,
    examples: int = 5,
    seed: int = 0,
    task: str = "task",
) -> Discovery:
    """Cluster the dev rows (``vectors``, n x d) and keep the clusters where the model errs more than on
    the whole split, as described in the module docstring.

    Args:
        texts: the dev texts.
        gold: their gold classes (n,) or soft labels (n x classes, scored by their argmax).
        pred: the predicted classes (n,).
        vectors: the encoder's pooled vectors (normalised here).
        label_names: class names for the examples (default: the class indices).
        k: clusters (default ``default_k(n)``).
        min_size: the fewest rows of a kept cluster.
        n_words: distinctive words per keyword SF.
        top_words: distinctive words shown per slice.
        min_count: the fewest member rows a distinctive word appears in.
        examples: example rows per slice.
        seed: seeds k-means.
        task: names the task in errors and the result.
    """
    gold, pred = np.asarray(gold), np.asarray(pred)
    gold = gold.argmax(-1) if gold.ndim == 2 else gold
    n = len(texts)
    if not (len(gold) == len(pred) == len(vectors) == n) or n == 0:
        raise MtlError(
            f"task {task!r}: texts, gold, pred and vectors must have one row per dev row, "
            f"got {n}, {len(gold)}, {len(pred)} and {len(vectors)}"
        )
    k = default_k(n) if k is None else k
    check_settings(task, n, k, min_size=min_size, n_words=n_words, examples=examples)
    errors = pred != gold
    found = Discovery(task, n, int(errors.sum()), k, min_size, [])
    if not errors.any():
        found.message = f"no errors on the {n} dev rows: nothing to discover"
        return found
    labels, centroids = cluster_rows(vectors, k, seed)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    kept = []
    for c in range(k):
        members = labels == c
        stats = slice_stats(members, errors)
        if stats.size >= min_size and stats.gap > 0:
            kept.append((-stats.score, c, members, stats))
    names = list(label_names) if label_names is not None else None

    def show(i: int) -> Example:
        g, p = int(gold[i]), int(pred[i])
        return Example(texts[i], names[g] if names else str(g), names[p] if names else str(p))

    for rank, (_, c, members, stats) in enumerate(sorted(kept, key=lambda t: t[:2]), start=1):
        words = distinctive_words(texts, members, top_words, min_count)
        keywords = words[:n_words]
        marked = keyword_mask(texts, keywords) if keywords else np.zeros(n, dtype=bool)
        rows = np.flatnonzero(members)
        # errors first, then the rest; within each, the rows closest to the centroid (most typical)
        near = unit[rows] @ centroids[c]
        order = sorted(range(len(rows)), key=lambda j: (not errors[rows[j]], -near[j], rows[j]))
        found.slices.append(
            DiscoveredSlice(
                name=f"discovered_{rank}",
                cluster=c,
                rows=rows.tolist(),
                stats=stats,
                words=words,
                keywords=keywords,
                keyword_rows=np.flatnonzero(marked).tolist(),
                keyword_stats=slice_stats(marked, errors) if keywords else None,
                examples=[show(int(rows[j])) for j in order[:examples]],
            )
        )
    if not found.slices:
        found.message = (
            f"no cluster of at least min_size={min_size} rows has an error rate above the split's "
            f"({found.error_rate:.3f}) among k={k} clusters"
        )
    return found


def rediscover(
    hand: np.ndarray,
    names: Sequence[str],
    slices: Sequence[DiscoveredSlice],
    errors: np.ndarray,
    *,
    min_size: int = 20,
    jaccard: float = 0.3,
) -> list[HandMatch]:
    """For each hand-written slice (a column of ``hand``, the n x s slice matrix, named by ``names``), its
    best overlap (Jaccard) with any discovered slice's cluster or keyword SF; a critical hand slice (at
    least ``min_size`` rows) with a Jaccard of at least ``jaccard`` is rediscovered.

    Example:
        >>> s = DiscoveredSlice("discovered_1", 0, [0, 1], slice_stats(np.array([1, 1, 0, 0]), np.ones(4)),
        ...                     ["bag"], ["bag"], [0, 1, 2], None, [])
        >>> m = rediscover(np.array([[1], [1], [0], [0]]), ["lost_bag"], [s], np.ones(4, bool), min_size=2)
        >>> m[0].match, m[0].by, m[0].jaccard, m[0].rediscovered
        ('discovered_1', 'cluster', 1.0, True)
    """
    hand = np.asarray(hand, dtype=bool)
    if hand.ndim != 2 or hand.shape[1] != len(names) or hand.shape[0] != len(errors):
        raise MtlError(
            f"the hand slice matrix must be rows x slices = {len(errors)} x {len(names)}, got {hand.shape}"
        )
    if not 0 < jaccard <= 1:
        raise MtlError(f"jaccard={jaccard} (must be in (0, 1])")
    n = len(errors)
    candidates: list[tuple[str, str, np.ndarray]] = []
    for s in slices:
        for by, rows in (("cluster", s.rows), ("keywords", s.keyword_rows if s.keywords else None)):
            if rows is not None:
                mask = np.zeros(n, dtype=bool)
                mask[rows] = True
                candidates.append((s.name, by, mask))
    out = []
    for j, name in enumerate(names):
        h = hand[:, j]
        best: tuple[float, float, float, str | None, str | None] = (0.0, 0.0, 0.0, None, None)
        for s_name, by, d in candidates:
            inter, union = int((d & h).sum()), int((d | h).sum())
            jac = inter / union if union else 0.0
            if jac > best[0] or best[3] is None:
                prec = inter / int(d.sum()) if d.any() else 0.0
                rec = inter / int(h.sum()) if h.any() else 0.0
                best = (jac, prec, rec, s_name, by)
        critical = int(h.sum()) >= min_size
        out.append(
            HandMatch(
                name=name,
                stats=slice_stats(h, errors),
                critical=critical,
                match=best[3],
                by=best[4],
                jaccard=best[0],
                precision=best[1],
                recall=best[2],
                rediscovered=critical and best[3] is not None and best[0] >= jaccard,
            )
        )
    return out


class SliceModel(Protocol):
    """What ``discover`` needs of a model (``MultitaskModel`` has it): class probabilities per task and
    the encoder's pooled vectors, for raw texts."""

    def predict(
        self, texts: Sequence[str], tasks: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]: ...

    def embed(self, texts: Sequence[str]) -> torch.Tensor: ...


def discover(
    model: SliceModel,
    task: Task,
    dev: datasets.Dataset,
    *,
    k: int | None = None,
    min_size: int = 20,
    n_words: int = 3,
    examples: int = 5,
    jaccard: float = 0.3,
    seed: int = 0,
) -> Discovery:
    """``discover_slices`` on a task's dev split (columns ``text`` and ``label``) with ``model``'s
    predictions and pooled vectors; with the task's hand-written SFs (``slices``), ``rediscover`` too."""
    if len(dev) == 0:
        raise MtlError(f"task {task.name!r}: its dev split is empty")
    texts = [str(t) for t in dev["text"]]
    settings = {"min_size": min_size, "n_words": n_words, "examples": examples}
    # before the model runs: a bad setting fails at once
    check_settings(
        task.name, len(texts), default_k(len(texts)) if k is None else k, **settings, jaccard=jaccard
    )
    gold = np.asarray(dev["label"])
    pred = model.predict(texts, [task.name])[task.name].argmax(-1).numpy()
    vectors = model.embed(texts).float().numpy()
    found = discover_slices(
        texts,
        gold,
        pred,
        vectors,
        label_names=task.label_names,
        k=k,
        min_size=min_size,
        n_words=n_words,
        examples=examples,
        seed=seed,
        task=task.name,
    )
    hard_gold = gold.argmax(-1) if gold.ndim == 2 else gold
    metric = task.metric.value
    found.metric = (metric, float(compute_metrics(pred, hard_gold, task.num_classes)[metric]))
    found.jaccard = jaccard
    if task.sfs:
        w = task.config.weak
        hand = slice_matrix(
            dev, task.sfs, num_proc=w.num_proc, fault_tolerant=w.fault_tolerant, backend=w.backend, ray=w.ray
        )
        found.hand = rediscover(
            hand, task.slice_names, found.slices, pred != hard_gold, min_size=min_size, jaccard=jaccard
        )
        found.hand_ref = task.config.slices
    return found


# ----------------------------------------------------------------------------------------- outputs


def sf_source(found: Discovery, origin: str = "") -> str:
    """A self-contained Python file of the keyword SFs of ``found``'s slices (``discovered_<rank>``, each
    under a comment with its figures) ending in ``SFS = [...]``, for a task's ``slices: file.py:SFS``;
    ``origin`` is a line of its docstring saying where it comes from.
    A slice without distinctive words gets no SF; with none at all, ``SFS`` is empty (and a task naming
    it fails to load, saying the list is empty)."""
    lines = [
        f'"""Slicing functions discovered by mtl-slices on the dev split of task {found.task!r}.',
        "",
        *([origin, ""] if origin else []),
        "Each SF marks a row whose lower-cased text contains one of its words as a whole word (a maximal",
        "run of letters). Use it as a task's `slices: path/to/this_file.py:SFS`.",
        '"""',
        "",
        "import re",
        "",
        "from mtl.slicing import slicing_function",
        "",
        f'_WORD = re.compile(r"{WORD_PATTERN}")',
        "",
        "",
        "def _words(text: str) -> set[str]:",
        "    return set(_WORD.findall(text.lower()))",
        "",
    ]
    names = []
    for s in found.slices:
        st = s.stats
        lines += [
            "",
            f"# cluster {s.cluster}: {st.size} dev rows, error rate {st.error_rate:.3f} "
            f"(gap {st.gap:+.3f}, score {st.score:.1f})",
            f"# distinctive words: {', '.join(s.words) or '(none)'}",
        ]
        if not s.keywords or s.keyword_stats is None:
            lines += ["# no distinctive word: no keyword SF", ""]
            continue
        ks, words = s.keyword_stats, ", ".join(json.dumps(w) for w in s.keywords)
        lines += [
            f"# this keyword SF on dev: {ks.size} rows, error rate {ks.error_rate:.3f} (gap {ks.gap:+.3f})",
            "@slicing_function()",
            f"def {s.name}(x: dict) -> bool:",
            "    return not {" + words + '}.isdisjoint(_words(x["text"]))',
            "",
        ]
        names.append(s.name)
    if not names:
        lines += ["", f"# {found.message or 'no discovered slice has distinctive words'}"]
    lines += ["", f"SFS = [{', '.join(names)}]", ""]
    return "\n".join(lines)


def _cell(text: str, limit: int = 160) -> str:
    """One Markdown table cell: one line, pipes escaped, long texts cut."""
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _rate(stats: SliceStats | None) -> str:
    if stats is None:
        return "- | - | -"
    return f"{stats.size} | {stats.error_rate:.3f} | {stats.gap:+.3f}"


def markdown_report(found: Discovery) -> str:
    """One task's section of the report: the ranked slices, their examples and the rediscovery table."""
    metric = f"; {found.metric[0]} {found.metric[1]:.4f}" if found.metric else ""
    out = [
        f"## {found.task}",
        "",
        f"dev: {found.n} rows, {found.errors} errors (error rate {found.error_rate:.3f}{metric}); "
        f"k = {found.k} clusters; a slice: gap > 0 and at least {found.min_size} rows.",
        "",
    ]
    if found.message:
        out += [f"**{found.message}.**", ""]
    if found.slices:
        out += [
            "| slice | rows | error rate | gap | score | distinctive words | keyword SF | SF rows | SF error "
            "rate | SF gap |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in found.slices:
            st = s.stats
            out.append(
                f"| {s.name} | {st.size} | {st.error_rate:.3f} | {st.gap:+.3f} | {st.score:.1f} | "
                f"{', '.join(s.words) or '-'} | {' or '.join(s.keywords) or '(none)'} | "
                f"{_rate(s.keyword_stats)} |"
            )
        out.append("")
        for s in found.slices:
            out += [
                f"### {s.name} ({s.stats.size} rows, {s.stats.errors} errors)",
                "",
                "| text | gold | predicted |",
                "|---|---|---|",
            ]
            out += [
                f"| {_cell(e.text)} | {e.gold} | {'**' + e.predicted + '**' if e.error else e.predicted} |"
                for e in s.examples
            ]
            out.append("")
    if found.hand is not None:
        out += [
            f"### Hand-written slices ({found.hand_ref}): {found.rediscovery_line()}",
            "",
            f"Rediscovered: a discovered slice (its cluster or its keyword SF) overlaps the hand slice with "
            f"Jaccard >= {found.jaccard}; critical: at least {found.min_size} dev rows; gap > 0: the model "
            "errs more on it than on the split (what discovery looks for). Precision: the share of the "
            "discovered slice inside the hand slice; recall: the share of the hand slice it covers.",
            "",
            "| hand slice | rows | error rate | gap | critical | best match | by | Jaccard | precision | "
            "recall | rediscovered |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for h in found.hand:
            rate = "- | -" if h.stats.size == 0 else f"{h.stats.error_rate:.3f} | {h.stats.gap:+.3f}"
            out.append(
                f"| {h.name} | {h.stats.size} | {rate} | {'yes' if h.critical else 'no'} | "
                f"{h.match or '-'} | {h.by or '-'} | {h.jaccard:.2f} | {h.precision:.2f} | {h.recall:.2f} | "
                f"{'**yes**' if h.rediscovered else 'no'} |"
            )
        out.append("")
    return "\n".join(out)


def summary_table(found: Mapping[str, Discovery]) -> str:
    """One row per task: dev size and error rate, discovered slices, critical hand slices rediscovered (all
    of them, and those the model errs on more than on the split); a total row for several tasks."""
    rows = [
        "| task | dev rows | error rate | discovered slices | keyword SFs | critical hand slices "
        "rediscovered | of those with gap > 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in found.items():
        hand = "(no hand slices) | -"
        if d.hand is not None:
            hand = f"{d.rediscovered} of {d.critical} | {d.rediscovered_failing} of {d.critical_failing}"
        sfs = sum(1 for s in d.slices if s.keywords)
        rows.append(f"| {name} | {d.n} | {d.error_rate:.3f} | {len(d.slices)} | {sfs} | {hand} |")
    with_hand = [d for d in found.values() if d.hand is not None]
    if len(found) > 1 and with_hand:
        total = f"{sum(d.rediscovered for d in with_hand)} of {sum(d.critical for d in with_hand)}"
        red, crit = (
            sum(getattr(d, a) for d in with_hand) for a in ("rediscovered_failing", "critical_failing")
        )
        failing = f"{red} of {crit}"
        n_slices = sum(len(d.slices) for d in found.values())
        n_sfs = sum(1 for d in found.values() for s in d.slices if s.keywords)
        rows.append(f"| **all** | | | {n_slices} | {n_sfs} | {total} | {failing} |")
    return "\n".join(rows)


__all__ = [
    "WORD_PATTERN",
    "DiscoveredSlice",
    "Discovery",
    "Example",
    "HandMatch",
    "SliceModel",
    "SliceStats",
    "cluster_rows",
    "default_k",
    "discover",
    "discover_slices",
    "distinctive_words",
    "keyword_mask",
    "markdown_report",
    "rediscover",
    "sf_source",
    "slice_stats",
    "summary_table",
    "words_of",
]
