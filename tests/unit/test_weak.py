"""Labeling functions, applying them, LF analysis and label models."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest

from mtl.metrics import compute_metrics
from mtl.types import MtlError
from mtl.weak import (
    ABSTAIN,
    LabelModel,
    LFApplicationError,
    MajorityVote,
    apply_lfs,
    apply_temperature,
    fit_temperature,
    from_sparse,
    keyword_lf,
    label_matrix_from_column,
    labeling_function,
    lexicon_lf,
    lf_summary,
    load_label_model,
    model_lf,
    preprocessor,
    regex_lf,
    select_label_model,
    to_sparse,
)
from mtl.weak.label_model import (
    LabelModelProtocol,
    fit_or_majority_vote,
    log_loss,
    unanimous_agreement,
)

CALLS = {"n": 0}


@preprocessor()
def word_count(x: dict) -> dict:
    CALLS["n"] += 1
    return {"words": len(x["text"].split())}


@labeling_function(pre=[word_count])
def short(x: dict) -> int:
    return 0 if x["words"] < 3 else ABSTAIN


@labeling_function(pre=[word_count])
def long(x: dict) -> int:
    return 1 if x["words"] > 5 else ABSTAIN


def test_decorator_builders_and_memoized_preprocessor() -> None:
    x = {"text": "hi there"}
    assert short(x) == 0 and long(x) == ABSTAIN
    CALLS["n"] = 0
    y = {"text": "one two three four five six"}
    short(y), long(y)
    assert CALLS["n"] == 1  # two LFs, one preprocessor run per example
    assert keyword_lf("kw", ["free", "win"], 1)({"text": "FREE stuff"}) == 1
    assert keyword_lf("kw", ["free"], 1)({"text": "freedom"}) == ABSTAIN  # whole words only
    assert regex_lf("rx", r"\d{5}", 1)({"text": "call 12345"}) == 1
    with pytest.raises(MtlError, match="no keywords"):
        keyword_lf("empty", [], 1)


def test_lexicon_lfs_work_offline() -> None:
    vader = lexicon_lf("v", "vader", positive=2, negative=0, threshold=0.5, neutral=1, neutral_band=0.05)
    assert vader({"text": "I love this, it is wonderful!"}) == 2
    assert vader({"text": "This is terrible and I hate it."}) == 0
    assert vader({"text": "The train leaves at noon."}) == 1
    afinn = lexicon_lf("a", "afinn", positive=1, negative=0, threshold=2)
    assert afinn({"text": "great great"}) == 1
    blob = lexicon_lf("t", "textblob", positive=1, negative=0, threshold=0.5)
    assert blob({"text": "an excellent movie"}) == 1
    with pytest.raises(MtlError, match="unknown lexicon 'nope'"):
        lexicon_lf("n", "nope", positive=1, negative=0, threshold=1)


def _ds(texts: list[str]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": texts, "label": [0] * len(texts)})


TEXTS = ["hi", "a b c d e f g", "free cash now", "ok then", "one two three four five six seven", "x y z"] * 5


def test_apply_builds_the_label_matrix_in_lf_order() -> None:
    lfs = [short, long, keyword_lf("cash", ["cash"], 1)]
    out = apply_lfs(_ds(TEXTS), lfs, 2, batch_size=4)
    assert out.names == ["short", "long", "cash"]
    assert out.L.dtype == np.int16 and out.L.shape == (30, 3)
    assert out.L[:6].tolist() == [
        [0, -1, -1],
        [-1, 1, -1],
        [-1, -1, 1],
        [0, -1, -1],
        [-1, 1, -1],
        [-1, -1, -1],
    ]


def test_parallel_apply_equals_serial_and_is_cached(tmp_path: Path) -> None:
    # (LFs without mutable globals: datasets fingerprints an LF's code *and* the globals it reads)
    lfs = [keyword_lf("cash", ["cash"], 1), regex_lf("short", r"^\w+$", 0), keyword_lf("free", ["free"], 1)]
    _ds(TEXTS).save_to_disk(str(tmp_path / "d"))
    ds = datasets.load_from_disk(str(tmp_path / "d"))
    serial = apply_lfs(ds, lfs, 2)
    parallel = apply_lfs(ds, lfs, 2, num_proc=2, batch_size=8)
    np.testing.assert_array_equal(serial.L, parallel.L)
    before = set((tmp_path / "d").glob("cache-*.arrow"))
    assert before  # datasets wrote the result next to the data
    apply_lfs(ds, lfs, 2)
    assert set((tmp_path / "d").glob("cache-*.arrow")) == before  # read back, not recomputed


@labeling_function()
def fragile(x: dict) -> int:
    return 1 if len(x["text"]) / (len(x["text"]) - 2) > 0 else 0  # ZeroDivisionError on 2-char texts


@labeling_function()
def bad_value(x: dict) -> int:
    return 7


def test_failing_lf_names_itself_and_the_row() -> None:
    with pytest.raises(LFApplicationError, match=r"'fragile' failed on row 0 \('hi'\): ZeroDivisionError"):
        apply_lfs(_ds(TEXTS), [short, fragile], 2)
    with pytest.raises(LFApplicationError, match=r"'bad_value' returned 7 on row 0"):
        apply_lfs(_ds(TEXTS), [bad_value], 2)
    out = apply_lfs(_ds(TEXTS), [short, fragile], 2, fault_tolerant=True)
    assert out.failures == {"fragile": 5}  # "hi" five times
    assert out.L[0].tolist() == [0, ABSTAIN]
    with pytest.raises(MtlError, match="repeated: \\['short'\\]"):
        apply_lfs(_ds(TEXTS), [short, short], 2)


def test_batch_model_lf_and_precomputed_votes() -> None:
    lf = model_lf(
        "m", lambda texts: [[0.9, 0.1] if len(t) < 3 else [0.4, 0.6] for t in texts], min_confidence=0.7
    )
    out = apply_lfs(_ds(TEXTS[:6]), [lf], 2)
    assert out.L[:, 0].tolist() == [0, -1, -1, -1, -1, -1]
    ds = datasets.Dataset.from_dict({"text": ["a", "b"], "weak_labels": [[1, -1], [-1, 0]]})
    assert label_matrix_from_column(ds, "weak_labels", 2).L.tolist() == [[1, -1], [-1, 0]]
    with pytest.raises(MtlError, match="row 1 vote 1 is 5"):
        label_matrix_from_column(
            ds.map(lambda r, i: {"weak_labels": [1, 5] if i else [1, 0]}, with_indices=True), "weak_labels", 2
        )


def test_sparse_round_trip() -> None:
    L = np.array([[0, -1, 2], [-1, -1, -1], [1, 1, -1]], dtype=np.int16)
    rows, cols, votes = to_sparse(L)
    assert len(votes) == 4
    np.testing.assert_array_equal(from_sparse(rows, cols, votes, L.shape), L)


def test_lf_summary_numbers() -> None:
    L = np.array([[0, 0, -1], [1, -1, 0], [-1, 0, -1], [-1, -1, -1]])
    rows = lf_summary(L, ["a", "b", "c"], np.array([0, 1, 1, 0]))
    a, b, c, total = rows
    assert (
        a["polarity"] == [0, 1] and a["coverage"] == 0.5 and a["overlaps"] == 0.5 and a["conflicts"] == 0.25
    )
    assert b["conflicts"] == 0.0 and b["accuracy"] == 0.5 and b["n_gold"] == 2
    assert c["accuracy"] == 0.0
    assert total["coverage"] == 0.75 and total["overlaps"] == 0.5 and total["conflicts"] == 0.25


def _synthetic(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unipolar LFs with known accuracies on an imbalanced binary task (70% class 0)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    specs = [(1, 0.9, 0.4), (1, 0.8, 0.3), (0, 0.85, 0.5), (0, 0.6, 0.6), (1, 0.55, 0.5)]  # class, acc, cov
    cols = []
    for cls, acc, cov in specs:
        fires = rng.random(n) < cov
        right = rng.random(n) < acc
        # fires on its class with probability acc among its votes
        vote_ok = np.where(y == cls, right, ~right)
        cols.append(np.where(fires & vote_ok, cls, ABSTAIN))
    return np.stack(cols, 1), y


def test_majority_vote_probabilities() -> None:
    L = np.array([[0, 0, 1], [1, -1, -1], [-1, -1, -1], [0, 1, -1]])
    p = MajorityVote(2).predict_proba(L)
    np.testing.assert_allclose(p, [[2 / 3, 1 / 3], [0, 1], [0.5, 0.5], [0.5, 0.5]])


def test_dawid_skene_beats_majority_vote_on_synthetic_lfs() -> None:
    L, y = _synthetic()
    mv = compute_metrics(MajorityVote(2).predict(L), y, 2)["accuracy"]
    lm = LabelModel(2, abstain_as_vote=True, class_balance="estimate").fit(L)
    ds = compute_metrics(lm.predict(L), y, 2)["accuracy"]
    assert ds > mv + 0.02
    assert lm.predict_proba(L).shape == (len(y), 2)
    np.testing.assert_allclose(lm.predict_proba(L).sum(1), 1.0)
    assert lm.lf_accuracies()[0, 1] > lm.lf_accuracies()[4, 1]  # LF 0 (0.9) is trusted over LF 4 (0.55)


def test_label_model_save_load_and_errors(tmp_path: Path) -> None:
    L, y = _synthetic(500)
    lm = LabelModel(2, abstain_as_vote=False, class_balance="dev").fit(L, dev_labels=y[:100])
    lm.save(tmp_path / "lm.json")
    again = load_label_model(tmp_path / "lm.json")
    np.testing.assert_allclose(again.predict_proba(L), lm.predict_proba(L))
    with pytest.raises(MtlError, match=r"L\[0, 0\] = 3 is neither ABSTAIN"):
        LabelModel(2).fit(np.array([[3, 0]]))
    with pytest.raises(MtlError, match="not fitted"):
        LabelModel(2).predict_proba(L)
    with pytest.raises(MtlError, match="needs dev_labels"):
        LabelModel(2, class_balance="dev").fit(L)
    with pytest.raises(MtlError, match="has 4 LFs but the label model was fit on 5"):
        lm.predict_proba(L[:, :4])


def test_temperature_fixes_confidence_and_keeps_the_argmax() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    right = rng.random(2000) < 0.9  # 90% of rows ranked right, every posterior within 0.02 of 0.5
    margin = 0.005 + 0.015 * rng.random(2000)
    p1 = 0.5 + np.where((y == 1) == right, margin, -margin)
    timid = np.stack([1 - p1, p1], 1)
    t = fit_temperature(timid, y)
    sharp = apply_temperature(timid, t)
    assert t < 0.1
    np.testing.assert_array_equal(sharp.argmax(1), timid.argmax(1))
    np.testing.assert_allclose(sharp.sum(1), 1.0)
    assert 0.85 < sharp.max(1).mean() < 0.97  # about the 90% the ranking deserves, not 0.51
    nll = [-np.log(q[np.arange(2000), y]).mean() for q in (timid, sharp)]
    assert nll[1] < nll[0] - 0.3
    bold = apply_temperature(sharp, 0.05)  # far more confident than 90% accuracy supports: T > 1
    assert fit_temperature(bold, y) > 1.0
    # rows without a target are ignored by the fit and stay zero
    with_empty = np.vstack([timid, np.zeros((3, 2))])
    assert fit_temperature(with_empty, np.r_[y, [0, 0, 0]]) == pytest.approx(t)
    assert not apply_temperature(with_empty, t)[-3:].any()
    assert fit_temperature(np.zeros((2, 2)), np.array([0, 1])) == 1.0


def test_select_label_model_uses_dev_only_to_choose() -> None:
    L, y = _synthetic(2000, seed=1)
    model, rows = select_label_model(L[:1500], L[1500:], y[1500:], 2, "accuracy")
    assert len(rows) == 7 and rows[0]["dev_accuracy"] == max(r["dev_accuracy"] for r in rows)
    best = compute_metrics(model.predict(L[1500:]), y[1500:], 2)["accuracy"]
    assert best == pytest.approx(rows[0]["dev_accuracy"])


def test_exact_ties_on_dev_go_to_the_lower_dev_log_loss() -> None:
    """Three candidates, majority vote (first in the list) among them, score a perfect dev accuracy; the
    one whose probabilities fit dev best wins, not the first listed."""
    L, _ = _synthetic(1500, seed=2)
    L_dev = np.array([[0, 0, 1, -1, -1], [1, 1, 0, -1, -1], [0, -1, 0, 1, -1]] * 20, dtype=np.int16)
    y_dev = np.array([0, 1, 0] * 20)
    model, rows = select_label_model(L, L_dev, y_dev, 2, "accuracy")
    tied = [r for r in rows if r["dev_accuracy"] == 1.0]
    assert len(tied) >= 2 and "majority_vote" in {r["label_model"] for r in tied}
    assert rows[0] is tied[0] and rows[0]["dev_log_loss"] == min(r["dev_log_loss"] for r in tied)
    assert rows[0]["label_model"] != "majority_vote"
    assert log_loss(model.predict_proba(L_dev), y_dev) == pytest.approx(rows[0]["dev_log_loss"])


def _many_lfs_few_votes(seed: int, n: int = 3000, m: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Six classes, 160 one-class LFs spread unevenly over them (45% vote class 0), each firing on about 1%
    of rows with a precision of 0.55-0.9: about 2 votes a row (the regime of WRENCH trec's 68 LFs)."""
    rng = np.random.default_rng(seed)
    prior = np.array([0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
    y = rng.choice(6, n, p=prior)
    lf_class = rng.choice(6, m, p=[0.45, 0.1, 0.15, 0.05, 0.2, 0.05])
    L = np.full((n, m), ABSTAIN, dtype=np.int16)
    for j, c in enumerate(lf_class):
        rate, precision = rng.uniform(0.2, 1.8) * 2 * 6 / m, rng.uniform(0.55, 0.9)
        other = rate * prior[c] / (1 - prior[c]) * (1 - precision) / precision
        L[rng.random(n) < np.where(y == c, rate, other), j] = c
    return L, y


def _four_lfs_sparse(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Two classes (25% positive), four one-class LFs covering about 25% of the rows."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    L = np.full((n, 4), ABSTAIN, dtype=np.int16)
    for j, (c, rate, precision) in enumerate([(1, 0.5, 0.85), (1, 0.2, 0.7), (0, 0.05, 0.9), (1, 0.15, 0.6)]):
        pc = float((y == c).mean())
        other = rate * pc / (1 - pc) * (1 - precision) / precision
        L[rng.random(n) < np.where(y == c, rate, other), j] = c
    return L, y


@pytest.mark.parametrize("seed", [0, 1])
def test_named_default_never_collapses_with_many_lfs_and_few_votes(seed: int) -> None:
    """The regime of WRENCH trec: both Dawid-Skene fits degenerate (the abstains-as-votes model, the
    named default before; and classic Dawid-Skene); the named default sees it and keeps majority vote."""
    L, y = _many_lfs_few_votes(seed)
    cov = (L != ABSTAIN).any(1)

    def f1(model: LabelModelProtocol) -> float:
        return compute_metrics(model.predict(L)[cov], y[cov], 6)["macro_f1"]

    mv = f1(MajorityVote(6).fit(L))
    for degenerate in (LabelModel(6, abstain_as_vote=True), LabelModel(6)):
        assert f1(degenerate.fit(L)) < mv - 0.2  # a real trap...
        assert unanimous_agreement(degenerate, L) < 0.9
    model, reason = fit_or_majority_vote(LabelModel(6), L)
    assert isinstance(model, MajorityVote) and reason is not None and "unanimously voted rows" in reason
    assert f1(model) == mv  # ...that the named default stays out of


@pytest.mark.parametrize("seed", [0, 1])
def test_named_default_keeps_the_labels_with_four_sparse_lfs(seed: int) -> None:
    L, y = _four_lfs_sparse(seed)
    cov = (L != ABSTAIN).any(1)
    assert 0.2 < cov.mean() < 0.35
    model, reason = fit_or_majority_vote(LabelModel(2), L)
    assert isinstance(model, LabelModel) and reason is None  # a sane fit is kept
    mv, lm = MajorityVote(2).predict(L)[cov], model.predict(L)[cov]
    assert (lm == mv).mean() > 0.95  # no flip: the votes' classes are kept
    assert compute_metrics(lm, y[cov], 2)["accuracy"] >= compute_metrics(mv, y[cov], 2)["accuracy"] - 0.01
