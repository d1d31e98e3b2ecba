"""Task heads: plain, slice upweighting, and slice-aware (slice-based learning).

Every head maps the pooled encoder vector to class logits (``forward``) and computes its own training
loss from the batch's labels and slice memberships (``loss``), so the training loop stays one loop.

* ``ClassificationHead`` (``head.type: plain``): dropout, optional hidden layer, linear to the classes.
* ``UpweightHead`` (``upweight``): the plain head; a training row's loss is multiplied by
  ``1 + slice_weight`` for each critical slice it is in.
* ``SliceAwareHead`` (``slice_aware``), after slice-based learning (Chen et al., NeurIPS 2019): for
  the base "all examples" slice and every critical slice, an *indicator* (is this example in the
  slice? trained with binary cross-entropy on the slice matrix) and an *expert* representation (a
  linear map of the pooled vector, trained with its own prediction layer on the slice's examples only);
  the experts are combined by attention over the indicators' confidence, and the pooled vector plus
  that combination (a residual: the head starts out as a plain head instead of waiting for its experts
  to learn, which made it predict the majority class after a few hundred steps) feeds the task's
  prediction layer (a plain head). Unlike Snorkel's binary-only
  version, every piece works for any number of classes and on soft labels, and the head needs the
  slice memberships only for training: at prediction time the indicators stand in for them.

Example:
    >>> import torch
    >>> head = SliceAwareHead(8, 3, num_slices=2)
    >>> head(torch.randn(4, 8)).shape
    torch.Size([4, 3])
    >>> build_head(8, 3, HeadConfig(type="upweight", slice_weight=1.0), num_slices=2).slice_weight
    1.0
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mtl.config import HeadConfig, HeadType, parse_choice
from mtl.types import ABSTAIN


def row_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's cross-entropy (float32) and whether the row counts (see ``soft_cross_entropy``)."""
    logits = logits.float()
    if labels.dtype.is_floating_point:
        if labels.shape != logits.shape:
            raise ValueError(
                f"soft labels of shape {tuple(labels.shape)} do not match logits {tuple(logits.shape)}"
            )
        weight = labels.sum(-1)
        target = labels / weight.unsqueeze(-1).clamp(min=1e-12)
        return -(target * F.log_softmax(logits, -1)).sum(-1) * weight, weight > 0
    per_row = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
    return per_row, labels != ABSTAIN


def soft_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, row_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy against hard labels (ints, ``ABSTAIN`` masked) or soft labels (probability rows).

    A soft row is a distribution scaled by its weight: a row summing to w > 0 is the normalised
    distribution counted with weight w (how uncovered rows are kept at low weight and gold rows mixed
    in at a higher one), a row of zeros is masked like an abstain. ``row_weight`` multiplies each row's
    loss further (slice upweighting, group DRO). The mean is over unmasked rows. Returns 0 (with a
    gradient path) when every row in the batch is masked, so a batch of abstains does not produce NaN.
    """
    per_row, mask = row_losses(logits, labels)
    if row_weight is not None:
        per_row = per_row * row_weight.to(per_row.dtype)
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return per_row[mask].mean()


class GroupDRO:
    """Online group DRO (Sagawa et al., ICLR 2020) over a task's slice groups: group 0 is the rows in
    no slice, group j the rows of slice j (a row in several slices counts in each). ``row_weights``
    turns a batch's per-group mean losses into weights q (exponentiated gradient, renormalised) and
    returns per-row loss weights such that the mean weighted loss is ``sum_g q_g x mean loss of g in
    the batch``. With several processes, pass ``reduce`` (a sum over processes) so every process keeps
    the same q.

    Example:
        >>> dro = GroupDRO(sizes=[90, 10], step_size=1.0)
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0]])  # all predict class 0
        >>> labels = torch.tensor([0, 0, 1])  # the third row, in the slice, is wrong
        >>> w = dro.row_weights(logits, labels, torch.tensor([[0], [0], [1]]))
        >>> bool(dro.q[1] > dro.q[0]), bool(w[2] > w[0])  # the slice's weight grows
        (True, True)
    """

    def __init__(self, sizes: list[int], step_size: float, adjustment: float = 0.0) -> None:
        self.q = torch.full((len(sizes),), 1.0 / len(sizes))
        self.step = step_size
        self.adjust = torch.tensor([adjustment / max(n, 1) ** 0.5 for n in sizes])

    @staticmethod
    def groups(slices: torch.Tensor | None, rows: int) -> torch.Tensor:
        """Rows x groups membership (bool): no slice, then each slice."""
        if slices is None or slices.shape[1] == 0:
            return torch.ones(rows, 1, dtype=torch.bool)
        member = slices.bool()
        return torch.cat([~member.any(1, keepdim=True), member], 1)

    def row_weights(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        slices: torch.Tensor | None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Update q on this batch and return its per-row loss weights (no gradient flows through)."""
        with torch.no_grad():
            per_row, mask = row_losses(logits.detach(), labels)
            member = (self.groups(slices, len(per_row)).to(per_row.device) & mask.unsqueeze(1)).float()
            totals = torch.stack([member.T @ per_row, member.sum(0)])  # loss sums and counts per group
            if reduce is not None:
                totals = reduce(totals)
            sums, counts = totals.cpu()
            present = counts > 0
            mean = sums / counts.clamp(min=1)
            q = self.q * torch.exp(self.step * (mean + self.adjust) * present)
            self.q = q / q.sum()
            # rows count once in the head's mean over unmasked rows: scale so that the weighted mean is
            # sum_g q_g x (group g's mean loss)
            per_group = torch.where(present, self.q / counts.clamp(min=1), torch.zeros_like(self.q))
            weights = member @ per_group.to(member.device) * mask.sum()
        return weights


class ClassificationHead(nn.Module):
    """Dropout, an optional hidden layer (GELU), then a linear layer to ``num_classes`` logits."""

    def __init__(
        self, in_features: int, num_classes: int, *, hidden_size: int = 0, dropout: float = 0.1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden_size > 0:
            layers += [nn.Linear(in_features, hidden_size), nn.GELU(), nn.Dropout(dropout)]
            in_features = hidden_size
        layers.append(nn.Linear(in_features, num_classes))
        self.net = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.num_slices = 0

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)

    def loss(
        self,
        pooled: torch.Tensor,
        labels: torch.Tensor,
        slices: torch.Tensor | None,
        row_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The training loss of a batch (``slices``: rows x slices 0/1, unused by the plain head;
        ``row_weight``: each row's loss weight, e.g. from ``GroupDRO``)."""
        return soft_cross_entropy(self(pooled), labels, row_weight)


class UpweightHead(ClassificationHead):
    """A plain head whose training loss counts a row ``1 + slice_weight x (number of its slices)`` times."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_slices: int,
        *,
        slice_weight: float = 2.0,
        hidden_size: int = 0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_features, num_classes, hidden_size=hidden_size, dropout=dropout)
        self.num_slices = num_slices
        self.slice_weight = slice_weight

    def loss(
        self,
        pooled: torch.Tensor,
        labels: torch.Tensor,
        slices: torch.Tensor | None,
        row_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if slices is None:
            raise ValueError("an upweight head needs the batch's slice memberships ('slices')")
        weight = 1.0 + self.slice_weight * slices.float().sum(-1)
        return soft_cross_entropy(self(pooled), labels, weight if row_weight is None else weight * row_weight)


class SliceAwareHead(nn.Module):
    """Slice indicators + slice experts combined by attention, feeding a plain prediction head.

    Slot 0 is the base slice (every example); slots 1..s are the task's slicing functions in order.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_slices: int,
        *,
        slice_loss_weight: float = 1.0,
        hidden_size: int = 0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        slots = num_slices + 1
        self.num_classes, self.num_slices = num_classes, num_slices
        self.indicators = nn.Linear(in_features, slots)
        self.experts = nn.Linear(in_features, slots * in_features)
        self.expert_predictors = nn.Parameter(torch.empty(slots, in_features, num_classes))
        self.expert_bias = nn.Parameter(torch.zeros(slots, num_classes))
        nn.init.xavier_uniform_(self.expert_predictors)
        # experts start at zero output (gelu(0) = 0), so a fresh head predicts exactly as a plain head
        # would; they still get gradients (gelu'(0) = 1/2) from the task and their slices' losses
        nn.init.zeros_(self.experts.weight)
        nn.init.zeros_(self.experts.bias)
        self.prediction = ClassificationHead(
            in_features, num_classes, hidden_size=hidden_size, dropout=dropout
        )
        self.aux_weight = slice_loss_weight

    def _parts(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, d = pooled.shape
        ind_logits = self.indicators(pooled)  # (n, slots)
        experts = F.gelu(self.experts(pooled)).view(n, -1, d)  # (n, slots, d)
        # attention by indicator confidence: the base slot is always "in", so it never gets zero weight
        attn = torch.softmax(F.logsigmoid(ind_logits), dim=-1)  # (n, slots)
        # residual: the prediction layer sees the pooled vector plus the experts' attention-weighted
        # correction, so the head does not wait for the experts to learn before it predicts
        combined = pooled + (attn.unsqueeze(-1) * experts).sum(1)  # (n, d)
        return ind_logits, experts, combined

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.prediction(self._parts(pooled)[2])

    def loss(
        self,
        pooled: torch.Tensor,
        labels: torch.Tensor,
        slices: torch.Tensor | None,
        row_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if slices is None:
            raise ValueError("a slice-aware head needs the batch's slice memberships ('slices')")
        ind_logits, experts, combined = self._parts(pooled)
        member = torch.cat([torch.ones_like(slices[:, :1]), slices], dim=1).float()  # (n, slots)
        task = soft_cross_entropy(self.prediction(combined), labels, row_weight)
        indicator = (
            F.binary_cross_entropy_with_logits(ind_logits[:, 1:].float(), member[:, 1:])
            if self.num_slices
            else ind_logits.sum() * 0.0
        )
        # each expert predicts the task from its own representation, trained on its slice's rows only
        expert_logits = torch.einsum("nsd,sdk->nsk", experts, self.expert_predictors) + self.expert_bias
        expert_losses = []
        for s in range(member.shape[1]):
            rows = member[:, s] > 0
            if bool(rows.any()):
                expert_losses.append(soft_cross_entropy(expert_logits[rows, s], labels[rows]))
        expert = torch.stack(expert_losses).mean()
        return task + self.aux_weight * (indicator + expert)


TaskHead = ClassificationHead | SliceAwareHead
"""Any head (``UpweightHead`` is a ``ClassificationHead``): ``forward(pooled)``, ``loss(...)``,
``num_classes``, ``num_slices``."""


def build_head(in_features: int, num_classes: int, cfg: HeadConfig, num_slices: int = 0) -> TaskHead:
    """The head a task's ``head`` config describes (``cfg.type``); slice heads need at least one slice."""
    kind = parse_choice(HeadType, cfg.type, "head.type")
    if kind == HeadType.plain:
        return ClassificationHead(in_features, num_classes, hidden_size=cfg.hidden_size, dropout=cfg.dropout)
    if num_slices < 1:
        raise ValueError(f"head.type {kind.value!r} needs slicing functions (the task's `slices`)")
    if kind == HeadType.upweight:
        return UpweightHead(
            in_features,
            num_classes,
            num_slices,
            slice_weight=cfg.slice_weight,
            hidden_size=cfg.hidden_size,
            dropout=cfg.dropout,
        )
    return SliceAwareHead(
        in_features,
        num_classes,
        num_slices,
        slice_loss_weight=cfg.slice_loss_weight,
        hidden_size=cfg.hidden_size,
        dropout=cfg.dropout,
    )
