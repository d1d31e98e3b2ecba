"""Transformation functions, policies and the augmented training split."""

from __future__ import annotations

import random
from pathlib import Path

import datasets
import pytest
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from mtl.augment import (
    EmbeddingSynonyms,
    OnTheFly,
    Policy,
    augment,
    build_policy,
    delete_word,
    replace_entities,
    swap_words,
    synonym_swap_tf,
    transformation_function,
    typo,
)
from mtl.config import AugmentConfig
from mtl.data import Collator, tokenize
from mtl.slicing import slice_matrix, slicing_function
from mtl.types import MtlError


def test_library_tfs_keep_sentiment_words_and_negations() -> None:
    x = {"text": "the movie was not good but the popcorn tasted fine today", "label": 0}
    for seed in range(30):
        rng = random.Random(seed)
        for tf in (swap_words, delete_word, typo):
            out = tf(x, rng)
            assert out is not None and out["label"] == 0
            if tf is not typo:
                assert {"not", "good", "fine"} <= set(out["text"].split())
    assert delete_word({"text": "so good"}, random.Random(0)) is None  # too short to delete from
    out = replace_entities({"text": "@united call 555 now http://t.co/x @bob"}, random.Random(0))
    assert out is not None and out["text"].startswith("@united call ") and "http://t.co/x" not in out["text"]
    assert replace_entities({"text": "nothing to replace"}, random.Random(0)) is None


def test_embedding_synonyms_from_an_encoder_folder(tiny_encoder_dir: Path) -> None:
    syn = EmbeddingSynonyms(str(tiny_encoder_dir), k=3)
    neighbours = syn.neighbours("lunch")
    assert 0 < len(neighbours) <= 3 and "lunch" not in neighbours
    tf = synonym_swap_tf(syn)
    out = tf({"text": "see you at lunch tomorrow"}, random.Random(0))
    assert out is not None and out["text"] != "see you at lunch tomorrow"


@transformation_function()
def returns_text(x: dict, rng: random.Random) -> str:
    return x["text"].upper()


@transformation_function()
def explodes(x: dict, rng: random.Random) -> dict:
    raise RuntimeError("boom")


TFS = [swap_words, typo]
BAD = [returns_text]
BOOM = [explodes]


def _ds() -> datasets.Dataset:
    texts = [f"word{i} alpha beta gamma delta" for i in range(20)] + ["ok"]
    return datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(21)]})


def _augment(
    tfs: list, seed: int = 0, copies: int = 1, keep: bool = True, **policy: object
) -> datasets.Dataset:
    """``_ds()`` augmented by ``Policy(tfs, **policy)``; ``keep``: keep the originals."""
    policy_ = Policy(tfs, **policy)  # type: ignore[arg-type]
    return augment(_ds(), policy_, copies=copies, keep_original=keep, seed=seed)


def test_random_policy_copies_labels_and_is_seeded() -> None:
    out = _augment(TFS, copies=2)
    # "ok" has nothing to swap or mistype, and a copy equal to its original (a typo swapping "mm" in
    # "gamma") is not added: at most 2 copies for each of the 20 other rows
    originals = set(_ds()["text"])
    new = [(t, y) for t, y in zip(out["text"], out["label"], strict=True) if t not in originals]
    assert 36 <= len(new) <= 40 and len(out) == 21 + len(new)
    by_prefix = {t.split()[0]: y for t, y in zip(_ds()["text"], _ds()["label"], strict=True)}
    assert all(by_prefix.get(t.split()[0], y) == y for t, y in new)
    assert list(_augment(TFS, copies=2)["text"]) == list(out["text"])
    assert list(_augment(TFS, seed=1, copies=2)["text"]) != list(out["text"])
    only = _augment(TFS, keep=False)
    assert 18 <= len(only) <= 20 and not set(only["text"]) & originals


def test_mean_field_policy_and_errors() -> None:
    never = _augment(TFS, kind="mean_field", probabilities=[0.0, 0.0])
    assert len(never) == 21
    always = _augment([typo], kind="mean_field", probabilities=[1.0], keep=False)
    assert len(always) == 20 and set(always["text"]).isdisjoint(_ds()["text"])  # "ok" has no word to mistype
    with pytest.raises(
        MtlError, match=r"task 't': augment\.probabilities needs one probability per TF \(2\), got 1"
    ):
        build_policy("t", TFS, AugmentConfig(policy="mean_field", probabilities=[0.5]))  # type: ignore[arg-type]
    with pytest.raises(MtlError, match=r"task 't': augment\.copies must be >= 1, got 0"):
        build_policy("t", TFS, AugmentConfig(copies=0))
    with pytest.raises(MtlError, match="'returns_text' returned str; expected a dict"):
        _augment(BAD)
    with pytest.raises(MtlError, match="'explodes' failed on row 0: RuntimeError: boom"):
        _augment(BOOM)


@transformation_function()
def add_link(x: dict, rng: random.Random) -> dict:
    return {**x, "text": f"{x['text']} http://t.co/{rng.randrange(10**6)}"}


@slicing_function()
def has_link(x: dict) -> bool:
    return "http" in x["text"]


LINK = [add_link]
LINK_SFS = [has_link]


def _passes(tok: PreTrainedTokenizerBase, cfg: AugmentConfig, seed: int, n: int) -> list[list[list[int]]]:
    """n passes of a prepared (accelerate) loader over an on-the-fly split: input_ids, slices per row."""
    ds = _ds().add_column("slices", slice_matrix(_ds(), LINK_SFS).tolist())
    policy = build_policy("t", LINK, cfg)
    data = OnTheFly(
        tokenize(ds, tok, 32, keep_text=True),
        policy,
        tok,
        32,
        copies=cfg.copies,
        keep_original=cfg.keep_original,
        seed=seed,
        sfs=LINK_SFS,
    )
    loader = Accelerator(cpu=True).prepare(DataLoader(data, batch_size=7, collate_fn=Collator(tok)))
    out = []
    for _ in range(n):
        rows = []
        for b in loader:
            for ids, mask, s in zip(b["input_ids"], b["attention_mask"], b["slices"], strict=True):
                rows.append([*ids[mask.bool()].tolist(), -1, *s.tolist()])
        out.append(rows)
    return out


def test_on_the_fly_draws_new_seeded_variants_each_pass(tiny_encoder_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(tiny_encoder_dir))
    cfg = AugmentConfig(mode="on_the_fly", copies=1)  # type: ignore[arg-type]
    p0, p1 = _passes(tok, cfg, seed=0, n=2)
    assert len(p0) == len(p1) == 21  # the split keeps its size
    # re-sliced: a row is in the link slice exactly when it was augmented (longer than its original)
    original = [len(tok(t)["input_ids"]) for t in _ds()["text"]]
    augmented = [[len(r) - 2 > n for r, n in zip(p, original, strict=True)] for p in (p0, p1)]
    for p, aug in zip((p0, p1), augmented, strict=True):
        assert [r[-1] for r in p] == [int(a) for a in aug]
    # keep_original with one copy: about half the reads are originals; passes draw differently
    assert 4 <= sum(augmented[0]) <= 17 and p0 != p1
    assert _passes(tok, cfg, seed=0, n=2) == [p0, p1]  # same seed, same variants
    assert _passes(tok, cfg, seed=1, n=1)[0] != p0
    never_original = AugmentConfig(mode="on_the_fly", keep_original=False)  # type: ignore[arg-type]
    assert all(r[-1] == 1 for r in _passes(tok, never_original, seed=0, n=1)[0])
