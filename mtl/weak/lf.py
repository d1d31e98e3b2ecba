"""Labeling functions (LFs): small callables that vote a class index or ``ABSTAIN`` for one example.

An example is a ``dict`` (a row of a ``datasets.Dataset``, at least ``{"text": ...}``). Preprocessors
add fields to it (a sentiment score, a token list) and are memoized per example, so ten LFs that share
a preprocessor compute it once per row.

Example:
    >>> from mtl.weak import labeling_function, keyword_lf, ABSTAIN
    >>> @labeling_function()
    ... def has_link(x):
    ...     return 1 if "http" in x["text"] else ABSTAIN
    >>> has_link({"text": "see http://spam.example"})
    1
    >>> keyword_lf("free_prize", ["free", "prize"], label=1)({"text": "You won a FREE prize"})
    1
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from afinn import Afinn
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from mtl.types import ABSTAIN, MtlError
from mtl.userload import load_list

Example = dict[str, Any]

_MEMO = "__mtl_pre__"


class Preprocessor:
    """Adds fields to an example; with ``memoize`` the result is stored on the example and reused.

    Args:
        name: unique name (the memo key).
        f: ``f(x, **resources) -> dict`` of new fields.
        resources: keyword arguments passed to ``f`` (a lexicon, a model).
        memoize: compute once per example however many LFs use it.
    """

    def __init__(
        self,
        name: str,
        f: Callable[..., Mapping[str, Any]],
        resources: Mapping[str, Any] | None = None,
        memoize: bool = True,
    ) -> None:
        self.name, self.f, self.resources, self.memoize = name, f, dict(resources or {}), memoize

    def __call__(self, x: Example) -> Example:
        memo = x.setdefault(_MEMO, {})
        if self.memoize and self.name in memo:
            x.update(memo[self.name])
            return x
        fields = dict(self.f(x, **self.resources))
        if self.memoize:
            memo[self.name] = fields
        x.update(fields)
        return x

    def __repr__(self) -> str:
        return f"Preprocessor({self.name!r})"


def preprocessor(
    name: str | None = None, resources: Mapping[str, Any] | None = None, memoize: bool = True
) -> Callable[[Callable[..., Mapping[str, Any]]], Preprocessor]:
    """Decorator making a ``Preprocessor`` from ``f(x, **resources) -> dict of new fields``."""

    def wrap(f: Callable[..., Mapping[str, Any]]) -> Preprocessor:
        return Preprocessor(name or f.__name__, f, resources, memoize)

    return wrap


class LabelingFunction:
    """A named voter: ``lf(x)`` runs its preprocessors, then ``f(x, **resources)``.

    Args:
        name: unique within a task; it names the LF in errors, analysis and caches.
        f: returns a class index or ``ABSTAIN`` (-1).
        resources: keyword arguments passed to ``f``.
        pre: preprocessors run (in order) before ``f``.
    """

    kind = "labeling function"  # how errors and reports name it

    def __init__(
        self,
        name: str,
        f: Callable[..., int],
        resources: Mapping[str, Any] | None = None,
        pre: Sequence[Preprocessor] | None = None,
    ) -> None:
        self.name, self.f, self.resources, self.pre = name, f, dict(resources or {}), list(pre or [])

    def __call__(self, x: Example) -> int:
        for p in self.pre:
            x = p(x)
        return self.f(x, **self.resources)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, pre={[p.name for p in self.pre]})"


def labeling_function(
    name: str | None = None,
    resources: Mapping[str, Any] | None = None,
    pre: Sequence[Preprocessor] | None = None,
) -> Callable[[Callable[..., int]], LabelingFunction]:
    """Decorator making a ``LabelingFunction``; the name defaults to the function's."""

    def wrap(f: Callable[..., int]) -> LabelingFunction:
        return LabelingFunction(name or f.__name__, f, resources, pre)

    return wrap


class BatchLabelingFunction(LabelingFunction):
    """An LF that votes for a whole batch of texts at once (a model's predictions).

    ``f(texts: list[str]) -> sequence of class index or ABSTAIN``; calling it on one example works too.
    """

    def __init__(self, name: str, f: Callable[[list[str]], Sequence[int]], field: str = "text") -> None:
        super().__init__(name, lambda x: int(f([x[field]])[0]))
        self.batch_f, self.field = f, field

    def vote_batch(self, examples: list[Example]) -> list[int]:
        votes = list(self.batch_f([x[self.field] for x in examples]))
        if len(votes) != len(examples):
            raise MtlError(f"batch LF {self.name!r} returned {len(votes)} votes for {len(examples)} texts")
        return [int(v) for v in votes]


# ------------------------------------------------------------------------------------------ builders


def regex_lf(
    name: str, pattern: str, label: int, field: str = "text", flags: int = re.IGNORECASE
) -> LabelingFunction:
    """Vote ``label`` when ``pattern`` is found in ``x[field]`` (case-insensitive by default)."""
    rx = re.compile(pattern, flags)

    def f(x: Example) -> int:
        return label if rx.search(x[field] or "") else ABSTAIN

    return LabelingFunction(name, f)


def keyword_lf(
    name: str, keywords: Sequence[str], label: int, field: str = "text", whole_word: bool = True
) -> LabelingFunction:
    """Vote ``label`` when any keyword occurs in ``x[field]`` (case-insensitive, whole words by default)."""
    if not keywords:
        raise MtlError(f"keyword LF {name!r} has no keywords")
    alternatives = "|".join(re.escape(k) for k in keywords)
    pattern = rf"(?<!\w)(?:{alternatives})(?!\w)" if whole_word else alternatives
    return regex_lf(name, pattern, label, field)


def _vader() -> Callable[[str], float]:
    analyzer = SentimentIntensityAnalyzer()
    return lambda text: float(analyzer.polarity_scores(text)["compound"])


def _afinn() -> Callable[[str], float]:
    scorer = Afinn(emoticons=True)
    return lambda text: float(scorer.score(text))


def _textblob() -> Callable[[str], float]:
    # imported here, not at the top: textblob imports nltk (0.6 s), paid only by a run whose LFs use it
    from textblob import TextBlob

    return lambda text: float(TextBlob(text).sentiment.polarity)


LEXICONS: dict[str, Callable[[], Callable[[str], float]]] = {
    "vader": _vader,
    "afinn": _afinn,
    "textblob": _textblob,
}
"""Sentiment scorers that work offline: VADER compound in [-1, 1], AFINN sum of word scores, TextBlob
polarity in [-1, 1]."""


def lexicon_preprocessor(lexicon: str, field: str = "text") -> Preprocessor:
    """A memoized preprocessor adding ``x[lexicon]``: the lexicon's sentiment score of ``x[field]``."""
    if lexicon not in LEXICONS:
        raise MtlError(f"unknown lexicon {lexicon!r}; choose one of {sorted(LEXICONS)}")
    score = LEXICONS[lexicon]()

    def f(x: Example) -> dict[str, float]:
        return {lexicon: score(x[field] or "")}

    return Preprocessor(f"lexicon_{lexicon}_{field}", f)


def lexicon_lf(
    name: str,
    lexicon: str,
    *,
    positive: int | None,
    negative: int | None,
    threshold: float,
    neutral: int | None = None,
    neutral_band: float = 0.0,
    pre: Preprocessor | None = None,
) -> LabelingFunction:
    """Vote from a sentiment lexicon's score s: ``positive`` if s >= threshold, ``negative`` if
    s <= -threshold, ``neutral`` if |s| <= neutral_band (when given), else abstain.

    Pass ``pre=lexicon_preprocessor(...)`` to share one scorer between several LFs.
    """
    p = pre or lexicon_preprocessor(lexicon)

    def f(x: Example) -> int:
        s = x[lexicon]
        if positive is not None and s >= threshold:
            return positive
        if negative is not None and s <= -threshold:
            return negative
        if neutral is not None and abs(s) <= neutral_band:
            return neutral
        return ABSTAIN

    return LabelingFunction(name, f, pre=[p])


def load_lfs(ref: str) -> list[LabelingFunction]:
    """The LFs named by a config reference (``file.py:NAME`` or ``module:NAME``): a list of LFs."""
    return load_list(ref, LabelingFunction, "labeling functions")
