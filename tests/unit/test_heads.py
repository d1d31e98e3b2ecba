"""Plain, upweight and slice-aware heads: shapes, losses, gradients, any number of classes, soft labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from mtl.checkpoint import load_checkpoint
from mtl.config import EncoderConfig, GroupDroConfig, HeadConfig, SourceConfig, TaskConfig, TrainerConfig
from mtl.heads import (
    ClassificationHead,
    GroupDRO,
    SliceAwareHead,
    UpweightHead,
    build_head,
    soft_cross_entropy,
)
from mtl.model import MultitaskModel, build_encoder
from mtl.prepare import load_tasks
from mtl.task import resolve_tasks
from mtl.trainer import Trainer
from mtl.types import ABSTAIN


def test_upweight_loss_counts_slice_rows_more() -> None:
    torch.manual_seed(0)
    head = UpweightHead(8, 3, num_slices=2, slice_weight=2.0, dropout=0.0)
    pooled, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    slices = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 0]], dtype=torch.int8)
    ce = F.cross_entropy(head(pooled), labels, reduction="none")
    expected = (ce * torch.tensor([1.0, 3.0, 5.0, 1.0])).mean()
    torch.testing.assert_close(head.loss(pooled, labels, slices), expected)
    with pytest.raises(ValueError, match="needs the batch's slice memberships"):
        head.loss(pooled, labels, None)


@pytest.mark.parametrize("num_classes", [2, 5])
def test_slice_aware_head_multiclass_soft_labels_and_gradients(num_classes: int) -> None:
    torch.manual_seed(0)
    head = SliceAwareHead(8, num_classes, num_slices=3, dropout=0.0)
    torch.nn.init.normal_(head.experts.weight)  # experts start at zero; as after some training here
    pooled = torch.randn(6, 8)
    assert head(pooled).shape == (6, num_classes)
    soft = torch.softmax(torch.randn(6, num_classes), -1)
    slices = torch.tensor(
        [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.int8
    )
    loss = head.loss(pooled, soft, slices)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name
    # slice 3 has no rows in this batch: its expert's own predictor gets no gradient from it
    assert torch.all(head.expert_predictors.grad[3] == 0)
    assert torch.any(head.expert_predictors.grad[1] != 0)
    hard = soft.argmax(-1)
    assert torch.isfinite(head.loss(pooled, hard, slices))


def test_slice_aware_head_is_a_plain_head_plus_the_experts_correction() -> None:
    torch.manual_seed(0)
    head = SliceAwareHead(8, 3, num_slices=2, dropout=0.0).eval()
    pooled = torch.randn(5, 8)
    # a fresh head's experts output gelu(0) = 0: it predicts exactly as its plain prediction layer
    torch.testing.assert_close(head(pooled), head.prediction(pooled))
    slices = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0]])
    head.loss(pooled, torch.tensor([0, 1, 2, 0, 1]), slices).backward()
    assert head.experts.weight.grad is not None and head.experts.weight.grad.abs().sum() > 0  # they learn


def test_slice_aware_attention_follows_the_indicators() -> None:
    """An example the indicators put in slice 1 and not in slice 2 is moved by expert 1, not expert 2."""
    torch.manual_seed(0)
    head = SliceAwareHead(8, 3, num_slices=2, dropout=0.0).eval()
    with torch.no_grad():
        head.indicators.weight.zero_()
        head.indicators.bias.copy_(torch.tensor([0.0, 20.0, -20.0]))  # base, in slice 1, out of slice 2
        head.experts.bias.normal_()  # each expert outputs its own constant vector
    pooled = torch.randn(4, 8)
    before = head(pooled)
    with torch.no_grad():
        head.experts.bias[16:] += 5.0  # expert 2 (slots 0, 1, 2 take 8 features each)
    torch.testing.assert_close(head(pooled), before, atol=1e-6, rtol=0)
    with torch.no_grad():
        head.experts.bias[8:16] += 5.0  # expert 1
    assert (head(pooled) - before).abs().max() > 0.1


def test_build_head_and_bad_options() -> None:
    assert type(build_head(8, 2, HeadConfig(), 0)) is ClassificationHead
    assert isinstance(build_head(8, 2, HeadConfig(type="slice_aware"), 2), SliceAwareHead)
    with pytest.raises(ValueError, match="needs slicing functions"):
        build_head(8, 2, HeadConfig(type="upweight"), 0)
    with pytest.raises(
        ValueError, match=r"head\.type 'fancy' is not one of \['plain', 'upweight', 'slice_aware'\]"
    ):
        build_head(8, 2, HeadConfig(type="fancy"), 1)


def _sfs_file(tmp_path: Path) -> str:
    (tmp_path / "sfs.py").write_text(
        "from mtl.slicing import slicing_function\n"
        "@slicing_function()\ndef money(x):\n    return 'cash' in x['text']\n"
        "@slicing_function()\ndef greeting(x):\n    return 'hello' in x['text']\n"
        "SFS = [money, greeting]\n"
    )
    return f"{tmp_path}/sfs.py:SFS"


@pytest.mark.parametrize("head_type", ["upweight", "slice_aware", "group_dro"])
def test_training_and_checkpoint_with_slice_heads(
    head_type: str,
    tiny_encoder_dir: Path,
    spam_folder: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Through the trainer with bf16 mixed precision (accelerate's shared state, as `accelerate launch
    --mixed_precision bf16` sets it) and gradient accumulation, like any head."""
    AcceleratorState._reset_state(reset_partial_state=True)  # earlier tests' Accelerator was fp32
    request.addfinalizer(lambda: AcceleratorState._reset_state(reset_partial_state=True))
    Accelerator(mixed_precision="bf16")  # the trainer's Accelerator joins this state
    torch.manual_seed(0)
    enc, tok = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    task = TaskConfig(
        label_names=["ham", "spam"],
        source=SourceConfig(format="wrench", path=str(spam_folder)),
        slices=_sfs_file(tmp_path),
        head=HeadConfig(type="plain" if head_type == "group_dro" else head_type),
    )
    tasks = resolve_tasks({"spam": task})
    data = load_tasks(tasks, tok, 32, tmp_path / "cache")
    model = MultitaskModel(enc, {"spam": build_head(32, 2, task.head, tasks["spam"].num_slices)})
    cfg = TrainerConfig(
        epochs=4,
        batch_size=8,
        eval_batch_size=16,
        grad_accum_steps=2,
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
        group_dro=GroupDroConfig(step_size=0.5 if head_type == "group_dro" else 0.0, adjustment=1.0),
    )
    trainer = Trainer(model, tok, tasks, data, cfg, tmp_path / "run", max_length=32, seed=0)
    assert trainer.accelerator.mixed_precision == "bf16"
    result = trainer.fit()
    assert result.steps == 12  # 48 rows / batch 8 = 6 batches per epoch, 4 epochs, 2 batches per step
    assert result.best_dev["spam"]["accuracy"] >= 0.75
    assert set(result.best_dev["spam"]["slices"]) == {"money", "greeting"}
    if head_type == "group_dro":  # a plain head, trained on the worst-group objective
        weights = result.group_weights["spam"]
        assert list(weights) == ["(no slice)", "money", "greeting"] and sum(
            weights.values()
        ) == pytest.approx(1)
        assert max(weights.values()) > 0.4  # moved off uniform (1/3 each)
        return
    assert result.group_weights == {}
    loaded, _, tasks, _ = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert tasks["spam"].head.type == head_type
    assert (
        json.loads((tmp_path / "run" / "checkpoint" / "heads" / "spam.json").read_text())["num_slices"] == 2
    )
    batch = tok(["win cash", "hello"], padding=True, return_tensors="pt")
    # accelerate runs the prepared model's forward under bf16 autocast; the loaded copy runs in fp32
    torch.testing.assert_close(loaded(batch, "spam"), model.eval()(batch, "spam"), atol=1e-2, rtol=0)


def test_group_dro_weights_give_the_weighted_mean_of_group_losses() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(12, 3), torch.randint(0, 3, (12,))
    slices = torch.tensor([[1, 0]] * 3 + [[0, 1]] * 2 + [[1, 1]] + [[0, 0]] * 6)
    labels[-1] = ABSTAIN  # a masked row counts in no group
    dro = GroupDRO(sizes=[50, 40, 10], step_size=0.3, adjustment=2.0)
    before = dro.q.clone()
    w = dro.row_weights(logits, labels, slices)
    per_row = torch.nn.functional.cross_entropy(logits, labels.clamp(min=0), reduction="none")
    member = GroupDRO.groups(slices, 12) & (labels != ABSTAIN).unsqueeze(1)
    means = torch.stack([per_row[member[:, g]].mean() for g in range(3)])
    expected = before * torch.exp(0.3 * (means + torch.tensor([2 / 50**0.5, 2 / 40**0.5, 2 / 10**0.5])))
    torch.testing.assert_close(dro.q, expected / expected.sum())
    # the head's mean over unmasked rows, weighted, is the q-weighted sum of the group means
    weighted = soft_cross_entropy(logits, labels, w)
    torch.testing.assert_close(weighted, (dro.q * means).sum())
    assert w[-1] == 0
    # two processes with the same batch (a reduce that sums) move q exactly as one does
    one, two = GroupDRO([50, 40, 10], 0.3), GroupDRO([50, 40, 10], 0.3)
    one.row_weights(logits, labels, slices)
    two.row_weights(logits, labels, slices, reduce=lambda t: 2 * t)
    torch.testing.assert_close(one.q, two.q)
    # without slices: one group, every unmasked row weighs 1 (plain training)
    plain = GroupDRO([12], 1.0).row_weights(logits, labels, None)
    assert plain[:-1].tolist() == [1.0] * 11 and plain[-1] == 0
