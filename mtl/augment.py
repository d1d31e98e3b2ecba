"""Transformation functions (TFs): label-preserving augmentations of training examples, with policies.

A TF takes an example (a dict with ``text``) and a seeded ``random.Random`` and returns a transformed
copy, or ``None`` when it does not apply. A policy decides which TFs make each augmented copy:
``random`` (``n_tfs`` TFs drawn uniformly) or ``mean_field`` (each TF applied with its own probability),
built from a task's ``augment`` config by ``build_policy``. ``augment`` applies a policy to a training
split once, through ``Dataset.map`` (so the result is cached), seeded per row and copy: the same seed
gives the same augmented set. ``OnTheFly`` instead augments in the data loader: every pass over the
split draws new variants, seeded per pass and row.

Example:
    >>> import random
    >>> from mtl.augment import typo
    >>> typo({"text": "wonderful flight"}, random.Random(0))["text"] != "wonderful flight"
    True
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import datasets
import torch
from transformers import PreTrainedTokenizerBase
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from mtl.config import AugmentConfig, AugmentPolicy, parse_choice
from mtl.model import load_pretrained
from mtl.slicing import SlicingFunction
from mtl.types import MtlError
from mtl.userload import load_list
from mtl.weak.lf import Example, Preprocessor


class TransformationFunction:
    """A named augmentation: ``tf(x, rng)`` runs its preprocessors, then ``f(x, rng, **resources)``.

    ``f`` gets a copy of the example and returns the transformed example (a dict with a ``text``
    string) or ``None`` when it does not apply.
    """

    kind = "transformation function"

    def __init__(
        self,
        name: str,
        f: Callable[..., Example | None],
        resources: Mapping[str, Any] | None = None,
        pre: Sequence[Preprocessor] | None = None,
    ) -> None:
        self.name, self.f, self.resources, self.pre = name, f, dict(resources or {}), list(pre or [])

    def __call__(self, x: Example, rng: random.Random) -> Example | None:
        x = dict(x)
        for p in self.pre:
            x = p(x)
        out = self.f(x, rng, **self.resources)
        if out is not None and (not isinstance(out, dict) or not isinstance(out.get("text"), str)):
            raise MtlError(
                f"transformation function {self.name!r} returned {type(out).__name__}; expected a dict "
                "with a 'text' string (the transformed example) or None"
            )
        return out

    def __repr__(self) -> str:
        return f"TransformationFunction({self.name!r})"


def transformation_function(
    name: str | None = None,
    resources: Mapping[str, Any] | None = None,
    pre: Sequence[Preprocessor] | None = None,
) -> Callable[[Callable[..., Example | None]], TransformationFunction]:
    """Decorator making a ``TransformationFunction``; the name defaults to the function's."""

    def wrap(f: Callable[..., Example | None]) -> TransformationFunction:
        return TransformationFunction(name or f.__name__, f, resources, pre)

    return wrap


def load_tfs(ref: str) -> list[TransformationFunction]:
    """The TFs named by a config reference (``file.py:NAME`` or ``module:NAME``)."""
    return load_list(ref, TransformationFunction, "transformation functions")


class Policy:
    """Which TFs make one augmented copy, applied in sequence: ``random`` draws ``n_tfs`` of them
    uniformly (with replacement); ``mean_field`` applies each TF with its own probability.

    ``policy(x, rng, row)`` returns the augmented example, or ``None`` when no chosen TF applies. A TF
    that raises is reported with its name and the row.

    Example:
        >>> import random
        >>> policy = Policy([typo], "random", n_tfs=1)
        >>> policy({"text": "wonderful flight"}, random.Random(0), row=0)["text"] != "wonderful flight"
        True
    """

    def __init__(
        self,
        tfs: Sequence[TransformationFunction],
        kind: AugmentPolicy | str = AugmentPolicy.random,
        *,
        n_tfs: int = 1,
        probabilities: Sequence[float] = (),
    ) -> None:
        self.tfs, self.kind, self.n_tfs = (
            list(tfs),
            parse_choice(AugmentPolicy, kind, "augment.policy"),
            n_tfs,
        )
        self.probabilities = list(probabilities)
        if not self.tfs:
            raise MtlError("an augmentation policy needs at least one transformation function")
        if self.kind == AugmentPolicy.mean_field and len(self.probabilities) != len(self.tfs):
            raise MtlError(
                f"augment.probabilities needs one probability per TF ({len(self.tfs)}), "
                f"got {len(self.probabilities)}"
            )
        if n_tfs < 1:
            raise MtlError(f"augment.n_tfs must be >= 1, got {n_tfs}")

    def __call__(self, x: Example, rng: random.Random, row: int) -> Example | None:
        if self.kind == AugmentPolicy.random:
            chosen = [self.tfs[rng.randrange(len(self.tfs))] for _ in range(self.n_tfs)]
        else:
            chosen = [tf for tf, p in zip(self.tfs, self.probabilities, strict=True) if rng.random() < p]
        out: Example | None = None
        for tf in chosen:
            try:
                res = tf(out or x, rng)
            except MtlError:
                raise
            except Exception as e:
                raise MtlError(
                    f"transformation function {tf.name!r} failed on row {row}: {type(e).__name__}: {e}"
                ) from e
            out = res if res is not None else out
        return out


def build_policy(task: str, tfs: Sequence[TransformationFunction], cfg: AugmentConfig) -> Policy:
    """The policy a task's ``augment`` config describes; errors name the task and the key."""
    if cfg.copies < 1:
        raise MtlError(f"task {task!r}: augment.copies must be >= 1, got {cfg.copies}")
    try:
        return Policy(tfs, cfg.policy, n_tfs=cfg.n_tfs, probabilities=cfg.probabilities)
    except MtlError as e:
        raise MtlError(f"task {task!r}: {e}") from e


def augment(
    ds: datasets.Dataset,
    policy: Policy,
    *,
    copies: int = 1,
    keep_original: bool = True,
    seed: int = 0,
    desc: str = "augment",
) -> datasets.Dataset:
    """The training split with ``copies`` augmented copies per example (and the originals when
    ``keep_original``), each drawn by ``policy`` seeded per row and copy; every other column (labels,
    soft labels) is copied to the augmented rows. A copy that no chosen TF applies to is not added."""
    columns = ds.column_names

    def batch_fn(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {c: [] for c in columns}
        for i, row in enumerate(indices):
            x = {c: batch[c][i] for c in columns}
            if keep_original:
                for c in columns:
                    out[c].append(x[c])
            for copy in range(copies):
                rng = random.Random(f"{seed}-{row}-{copy}")
                new = policy(x, rng, row)
                if new is not None and new["text"] != x["text"]:
                    for c in columns:
                        out[c].append(new["text"] if c == "text" else x[c])
        return out

    return ds.map(batch_fn, batched=True, with_indices=True, desc=desc)


class OnTheFly(torch.utils.data.Dataset[dict[str, Any]]):
    """A tokenized training split (with its ``text`` column) that augments each example as it is read.

    Each read of row ``i`` in pass ``p`` (``set_epoch(p)``, which accelerate's prepared data loaders call
    at the start of every pass) draws from ``random.Random(f"{seed}-{p}-{i}")``: the original with
    probability ``1 / (copies + 1)`` when ``keep_original``, otherwise the policy's augmented variant (the
    original where no TF applies). The variant is re-tokenized and, with ``sfs``, re-sliced. The result
    does not depend on the number of processes or workers.

    Args:
        ds: the tokenized split; it must keep its ``text`` column.
        policy: draws the augmented variants.
        tokenizer: the encoder's tokenizer.
        max_length: truncation length.
        copies: variants per original (sets the chance of reading the original).
        keep_original: whether the original itself is read sometimes.
        seed: the run's seed.
        sfs: the task's slicing functions, if it has slices.
    """

    def __init__(
        self,
        ds: datasets.Dataset,
        policy: Policy,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        *,
        copies: int = 1,
        keep_original: bool = True,
        seed: int = 0,
        sfs: Sequence[SlicingFunction] = (),
    ) -> None:
        if "text" not in ds.column_names:
            raise ValueError("OnTheFly needs the split's text column (tokenize with keep_text=True)")
        self.ds, self.policy, self.seed, self.sfs = ds, policy, seed, list(sfs)
        self.copies, self.keep_original = copies, keep_original
        self.tokenizer, self.max_length = tokenizer, max_length
        self.lengths = [len(x) for x in ds["input_ids"]]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The pass whose variants the next reads draw."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = dict(self.ds[i])
        rng = random.Random(f"{self.seed}-{self.epoch}-{i}")
        if self.keep_original and rng.random() < 1 / (self.copies + 1):
            new = None
        else:
            new = self.policy(row, rng, i)
        text = row.pop("text")
        if new is not None and new["text"] != text:
            row.update(self.tokenizer(new["text"], truncation=True, max_length=self.max_length))
            if self.sfs:
                row["slices"] = [_in_slice(sf, new, i) for sf in self.sfs]
        return row


def _in_slice(sf: SlicingFunction, x: Example, row: int) -> int:
    try:
        return sf(x)
    except Exception as e:
        raise MtlError(
            f"slicing function {sf.name!r} failed on augmented row {row}: {type(e).__name__}: {e}"
        ) from e


# ---------------------------------------------------------------------------------------------- library

_NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "nothing",
        "nobody",
        "none",
        "nor",
        "neither",
        "cannot",
        "n't",
        "don't",
        "didn't",
        "doesn't",
        "isn't",
        "wasn't",
        "won't",
        "can't",
        "couldn't",
        "shouldn't",
        "wouldn't",
        "aren't",
        "weren't",
        "hardly",
    ]
)


@functools.lru_cache(maxsize=1)
def sentiment_words() -> frozenset[str]:
    """Words that carry sentiment (VADER's lexicon) plus negations: the TFs below never touch them."""
    return frozenset(SentimentIntensityAnalyzer().lexicon) | _NEGATIONS


_WORD = re.compile(r"[A-Za-z][A-Za-z']+")


def _free_words(text: str) -> list[re.Match[str]]:
    """Word matches that may be changed: alphabetic, not sentiment-bearing, not negations."""
    blocked = sentiment_words()
    return [m for m in _WORD.finditer(text) if m.group().lower() not in blocked]


def _replace(text: str, m: re.Match[str], new: str) -> str:
    return text[: m.start()] + new + text[m.end() :]


@transformation_function()
def swap_words(x: Example, rng: random.Random) -> Example | None:
    """Swap two non-sentiment words."""
    words = _free_words(x["text"])
    if len(words) < 2:
        return None
    a, b = sorted(rng.sample(words, 2), key=lambda m: m.start())
    t = x["text"]
    return {**x, "text": t[: a.start()] + b.group() + t[a.end() : b.start()] + a.group() + t[b.end() :]}


@transformation_function()
def delete_word(x: Example, rng: random.Random) -> Example | None:
    """Delete one non-sentiment word (only from texts of 4+ words)."""
    words = _free_words(x["text"])
    if len(x["text"].split()) < 4 or not words:
        return None
    m = rng.choice(words)
    return {**x, "text": re.sub(r"\s{2,}", " ", _replace(x["text"], m, "")).strip()}


@transformation_function()
def insert_word(x: Example, rng: random.Random) -> Example | None:
    """Repeat a non-sentiment word of the text at another word boundary."""
    words = _free_words(x["text"])
    if not words:
        return None
    word = rng.choice(words).group()
    spaces = [m.start() for m in re.finditer(r" ", x["text"])]
    if not spaces:
        return None
    at = rng.choice(spaces)
    return {**x, "text": x["text"][:at] + " " + word + x["text"][at:]}


@transformation_function()
def typo(x: Example, rng: random.Random) -> Example | None:
    """Swap two adjacent letters inside a word of 4+ letters (a typing slip)."""
    words = [m for m in _WORD.finditer(x["text"]) if len(m.group()) >= 4]
    if not words:
        return None
    m = rng.choice(words)
    w = m.group()
    i = rng.randrange(1, len(w) - 2)
    return {**x, "text": _replace(x["text"], m, w[:i] + w[i + 1] + w[i] + w[i + 2 :])}


_HANDLES = ["@alex", "@sam_k", "@newsdesk", "@jordan22", "@the_real_pat", "@maria"]
_URLS = ["http://t.co/a1b2c3", "https://example.com/story", "http://bit.ly/x9y8", "www.example.org/page"]


@transformation_function()
def replace_entities(x: Example, rng: random.Random) -> Example | None:
    """Replace URLs, @handles (not the first one, which often names the topic) and numbers with other
    values of the same kind."""
    text = x["text"]
    new = re.sub(r"https?://\S+|www\.\S+", lambda _m: rng.choice(_URLS), text)
    first = re.search(r"@\w+", new)
    keep = first.group() if first else None
    new = re.sub(r"@\w+", lambda m: m.group() if m.group() == keep else rng.choice(_HANDLES), new)
    new = re.sub(
        r"\b\d+\b", lambda m: str(rng.randrange(10 ** (len(m.group()) - 1), 10 ** len(m.group()))), new
    )
    return {**x, "text": new} if new != text else None


class EmbeddingSynonyms:
    """Nearest neighbours of whole words in an encoder's input-embedding table (offline "synonyms").

    Neighbours by cosine can be antonyms ("good" ~ "bad"), which is why ``synonym_swap`` only replaces
    non-sentiment words.
    """

    def __init__(self, name_or_path: str, k: int = 5) -> None:
        self.name_or_path, self.k = name_or_path, k
        self.words: list[str] = []
        self.index: dict[str, int] = {}
        self.matrix: Any = None

    def _load(self) -> None:
        """Read the embedding table on first use, so importing a task file stays cheap."""
        model, tok = load_pretrained(self.name_or_path, "the embedding TF's name_or_path")
        emb = cast(torch.Tensor, model.get_input_embeddings().weight).detach()
        vocab = tok.get_vocab()
        self.words = [w for w in vocab if w.isalpha() and len(w) > 2]
        idx = torch.tensor([vocab[w] for w in self.words])
        self.matrix = torch.nn.functional.normalize(emb[idx], dim=-1)
        self.index = {w: i for i, w in enumerate(self.words)}

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one table per process, lives as long as it
    def neighbours(self, word: str) -> tuple[str, ...]:
        if self.matrix is None:
            self._load()
        i = self.index.get(word.lower())
        if i is None:
            return ()
        sims = self.matrix @ self.matrix[i]
        top = sims.topk(self.k + 1).indices.tolist()
        blocked = sentiment_words()
        return tuple(self.words[j] for j in top if j != i and self.words[j] not in blocked)


def synonym_swap_tf(synonyms: EmbeddingSynonyms) -> TransformationFunction:
    """Replace one non-sentiment word by one of its embedding neighbours."""

    def f(x: Example, rng: random.Random) -> Example | None:
        options = [(m, synonyms.neighbours(m.group())) for m in _free_words(x["text"])]
        options = [(m, n) for m, n in options if n]
        if not options:
            return None
        m, neighbours = rng.choice(options)
        return {**x, "text": _replace(x["text"], m, rng.choice(neighbours))}

    return TransformationFunction("synonym_swap", f)
