"""The shared encoder, pooling, heads and the masked soft cross-entropy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mtl.config import EncoderConfig
from mtl.model import ClassificationHead, MultitaskModel, build_encoder, soft_cross_entropy
from mtl.types import ABSTAIN


@pytest.fixture
def model_and_tok(tiny_encoder_dir: Path):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    enc, tok = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    heads = {
        "a": ClassificationHead(32, 2),
        "b": ClassificationHead(32, 3, hidden_size=8),
    }
    return MultitaskModel(enc, heads).eval(), tok


def test_forward_shapes_per_task(model_and_tok) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    batch = tok(["hello how are you", "win cash"], padding=True, return_tensors="pt")
    assert model(batch, "a").shape == (2, 2)
    assert model(batch, "b").shape == (2, 3)
    both = model.forward_all(batch, ["a", "b"])
    torch.testing.assert_close(both["b"], model(batch, "b"))
    with pytest.raises(KeyError, match="no head for task 'c'"):
        model(batch, "c")


def test_mean_pooling_ignores_padding(model_and_tok) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    alone = tok(["win cash"], return_tensors="pt")
    padded = tok(["win cash", "hello how are you today see you"], padding=True, return_tensors="pt")
    torch.testing.assert_close(model.encode(alone)[0], model.encode(padded)[0], atol=1e-5, rtol=1e-5)


def test_cls_pooling_takes_first_token(model_and_tok) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    model.pooling = "cls"
    batch = tok(["win cash"], return_tensors="pt")
    hidden = model.encoder(**batch).last_hidden_state
    torch.testing.assert_close(model.encode(batch), hidden[:, 0])


def test_random_init_encoder_uses_tokenizer_vocab(tiny_encoder_dir: Path) -> None:
    enc, tok = build_encoder(
        EncoderConfig(
            name_or_path=str(tiny_encoder_dir),
            random_init={
                "hidden_size": 16,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 32,
            },
        )
    )
    assert enc.config.hidden_size == 16 and enc.config.vocab_size == tok.vocab_size
    with pytest.raises(ValueError, match="pooling"):
        build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir), pooling="max"))


def test_soft_labels_one_hot_equal_hard_labels() -> None:
    logits = torch.randn(4, 3)
    hard = torch.tensor([0, 2, 1, 2])
    soft = F.one_hot(hard, 3).float()
    torch.testing.assert_close(soft_cross_entropy(logits, soft), F.cross_entropy(logits, hard))


def test_soft_label_value() -> None:
    logits = torch.tensor([[0.0, 0.0]])
    probs = torch.tensor([[0.3, 0.7]])
    assert soft_cross_entropy(logits, probs).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_abstain_rows_are_masked() -> None:
    logits = torch.randn(3, 2, requires_grad=True)
    labels = torch.tensor([1, ABSTAIN, 0])
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    loss = soft_cross_entropy(logits, labels)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad[1] == 0)
    soft = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])  # an all-zero soft row is an abstain too
    torch.testing.assert_close(soft_cross_entropy(logits, soft), expected)


def test_all_abstain_batch_gives_zero_loss_not_nan() -> None:
    logits = torch.randn(2, 2, requires_grad=True)
    loss = soft_cross_entropy(logits, torch.tensor([ABSTAIN, ABSTAIN]))
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="do not match"):
        soft_cross_entropy(logits, torch.ones(2, 3))


def test_soft_row_weight_scales_its_loss() -> None:
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    full = soft_cross_entropy(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    light = soft_cross_entropy(logits, torch.tensor([[1.0, 0.0], [0.0, 0.1]]))  # second row at weight 0.1
    ce = F.cross_entropy(logits, torch.tensor([0, 1]), reduction="none")
    assert full.item() == pytest.approx(ce.mean().item())
    assert light.item() == pytest.approx(((ce[0] + 0.1 * ce[1]) / 2).item())
    heavy = soft_cross_entropy(logits, torch.tensor([[1.0, 0.0], [0.0, 3.0]]))  # a gold row mixed in at 3
    assert heavy.item() == pytest.approx(((ce[0] + 3 * ce[1]) / 2).item())


def test_predict_runs_the_encoder_once_per_batch_and_keeps_text_order(model_and_tok) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    texts = ["win cash now call free entry", "hi", "see you at lunch tomorrow", "great video"]
    with pytest.raises(ValueError, match="no tokenizer: load it with load_checkpoint"):
        model.predict(texts)
    model.tokenizer, model.max_length = tok, 32
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    probs = model.predict(texts, batch_size=3)
    assert len(calls) == 2  # 2 batches, both heads read each pass
    assert probs["a"].shape == (4, 2) and probs["b"].shape == (4, 3)
    torch.testing.assert_close(probs["b"].sum(-1), torch.ones(4))
    for i, text in enumerate(texts):  # length-sorted batching does not reorder the output
        alone = model(tok([text], return_tensors="pt"), "b").softmax(-1)[0]
        torch.testing.assert_close(probs["b"][i], alone, atol=1e-5, rtol=1e-4)
    assert list(model.predict(texts, tasks=["b"])) == ["b"]
    with pytest.raises(KeyError, match=r"no head for task\(s\) \['c'\]"):
        model.predict(texts, tasks=["c"])
