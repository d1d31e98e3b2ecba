"""Starting a run from a trained model: ``init_from`` an mtl checkpoint, an ``AutoModel`` folder or a Hub id.

From an mtl checkpoint the run takes the shared encoder (weights, tokenizer, pooling) and every head
whose task name, label names and head shape match a task of the run; other tasks of the run get fresh
heads, and the reason a same-named head was not taken is reported. Heads of checkpoint tasks that are
not in the run are kept as passengers (``keep_old_heads``): not trained, saved with every new checkpoint,
and evaluated before and after training so that a collapse of an old task shows (``old_task_change``).
From any other model folder or Hub id only the encoder is taken.

Example:
    >>> from mtl.config import EncoderConfig
    >>> init = init_model("outputs/train/x/checkpoint", tasks, EncoderConfig())  # doctest: +SKIP
    >>> print(init.describe())  # doctest: +SKIP
    init_from outputs/train/x/checkpoint (mtl checkpoint): encoder loaded; heads loaded: sms; ...
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from mtl.checkpoint import CheckpointError, checkpoint_dir, load_checkpoint
from mtl.config import EncoderConfig, TaskConfig
from mtl.data import load_tasks
from mtl.evaluate import TaskMetrics
from mtl.heads import TaskHead, build_head
from mtl.model import MultitaskModel, build_encoder
from mtl.slicing import num_slices
from mtl.trainer import Trainer
from mtl.types import MtlError

log = logging.getLogger("mtl.transfer")


@dataclass
class InitResult:
    """The model a run starts from and what was (not) taken from ``init_from``.

    Attributes:
        model: the encoder and one head per task of the run, plus the passenger heads.
        tokenizer: the encoder's tokenizer.
        pooling: the pooling the encoder was trained with.
        source: ``init_from`` as given; ``kind``: ``checkpoint``, ``encoder`` (a model folder or Hub
            id given as ``init_from``) or ``pretrained`` (no ``init_from``: the configured encoder).
        loaded_heads: tasks of the run whose head came from the checkpoint.
        fresh_heads: tasks of the run with a new head, each with the reason.
        old_tasks: passenger heads' task configs (checkpoint tasks not in the run).
    """

    model: MultitaskModel
    tokenizer: PreTrainedTokenizerBase
    pooling: str
    source: str
    kind: str
    loaded_heads: list[str] = field(default_factory=list)
    fresh_heads: dict[str, str] = field(default_factory=dict)
    old_tasks: dict[str, TaskConfig] = field(default_factory=dict)

    def describe(self) -> str:
        """One line per fact: what was loaded and what was not, and why."""
        if self.kind == "pretrained":
            return f"encoder {self.source} ({self.pooling} pooling), new heads: {', '.join(self.model.heads)}"
        lines = [f"init_from {self.source} ({'mtl checkpoint' if self.kind == 'checkpoint' else 'encoder'}):"]
        lines.append(f"  encoder: loaded ({self.pooling} pooling)")
        if self.loaded_heads:
            lines.append(f"  heads loaded: {', '.join(self.loaded_heads)}")
        for task, why in self.fresh_heads.items():
            lines.append(f"  head {task}: new ({why})")
        if self.old_tasks:
            lines.append(f"  old heads kept, not trained: {', '.join(self.old_tasks)}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "loaded_heads": self.loaded_heads,
            "fresh_heads": self.fresh_heads,
            "old_tasks": list(self.old_tasks),
        }


def _load_encoder(source: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise MtlError(
                f"init_from {source!r} is neither an mtl checkpoint (no model.json) nor an AutoModel folder "
                "(no config.json)"
            )
        return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise MtlError(
            f"init_from {source!r} does not exist (expected an mtl checkpoint, a model folder or a Hub id)"
        )
    try:  # a Hub id
        return AutoModel.from_pretrained(source), AutoTokenizer.from_pretrained(source)
    except OSError as e:
        raise MtlError(
            f"init_from {source!r} is not a local folder, and loading it as a Hub id failed: {e}"
        ) from e


def build_model(
    tasks: Mapping[str, TaskConfig],
    encoder_cfg: EncoderConfig,
    init_from: str | None = None,
    keep_old_heads: bool = True,
) -> InitResult:
    """The run's model: the configured encoder with fresh heads, or started from ``init_from``."""
    if init_from:
        return init_model(init_from, tasks, encoder_cfg, keep_old_heads)
    encoder, tokenizer = build_encoder(encoder_cfg)
    hidden = int(encoder.config.hidden_size)
    heads = {t: build_head(hidden, len(c.label_names), c.head, num_slices(c)) for t, c in tasks.items()}
    model = MultitaskModel(encoder, heads, pooling=encoder_cfg.pooling)
    return InitResult(model, tokenizer, encoder_cfg.pooling, encoder_cfg.name_or_path, "pretrained")


def init_model(
    source: str, tasks: Mapping[str, TaskConfig], encoder_cfg: EncoderConfig, keep_old_heads: bool = True
) -> InitResult:
    """The run's model started from ``source`` (see the module docstring); errors name the path."""
    try:
        root = checkpoint_dir(source)
    except CheckpointError:
        root = None
    if root is None:
        encoder, tokenizer = _load_encoder(source)
        hidden = int(encoder.config.hidden_size)
        new = {t: build_head(hidden, len(c.label_names), c.head, num_slices(c)) for t, c in tasks.items()}
        model = MultitaskModel(encoder, new, pooling=encoder_cfg.pooling)
        fresh = {t: "init_from is not an mtl checkpoint" for t in tasks}
        return InitResult(model, tokenizer, encoder_cfg.pooling, source, "encoder", fresh_heads=fresh)
    old, tokenizer, old_tasks, info = load_checkpoint(root)
    hidden = old.hidden_size
    heads: dict[str, TaskHead] = {}
    loaded, fresh = [], {}
    for t, c in tasks.items():
        head = build_head(hidden, len(c.label_names), c.head, num_slices(c))
        why = _why_not(t, c, head, old_tasks, old)
        if why is None:
            head.load_state_dict(old.heads[t].state_dict())
            loaded.append(t)
        else:
            fresh[t] = why
        heads[t] = head
    passengers = {t: c for t, c in old_tasks.items() if t not in tasks} if keep_old_heads else {}
    for t in passengers:
        heads[t] = old.heads[t]  # type: ignore[assignment]
    model = MultitaskModel(old.encoder, heads, pooling=info["pooling"])
    return InitResult(model, tokenizer, info["pooling"], source, "checkpoint", loaded, fresh, passengers)


def _why_not(
    task: str, cfg: TaskConfig, head: TaskHead, old_tasks: Mapping[str, TaskConfig], old: MultitaskModel
) -> str | None:
    """Why the checkpoint's head for ``task`` cannot be used (None: it can)."""
    if task not in old_tasks:
        return "no head of that name in the checkpoint"
    was = old_tasks[task]
    if list(was.label_names) != list(cfg.label_names):
        return f"label set differs: checkpoint {list(was.label_names)}, this run {list(cfg.label_names)}"
    old_head = old.heads[task]
    if type(old_head) is not type(head) or old_head.num_slices != head.num_slices:
        return (
            f"head differs: checkpoint {was.head.type} with {old_head.num_slices} slices, this run "
            f"{cfg.head.type} with {head.num_slices}"
        )
    shapes = {k: tuple(v.shape) for k, v in old_head.state_dict().items()}
    if shapes != {k: tuple(v.shape) for k, v in head.state_dict().items()}:
        return "head shape differs (head.hidden_size)"
    return None


def old_task_change(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, float]]:
    """Per old task and split: its metric before and after training the new tasks, and the change."""
    out: dict[str, dict[str, float]] = {}
    for split, per_task in after.items():
        for task, m in per_task.items():
            b = before.get(split, {}).get(task, {}).get("metric", math.nan)
            out[f"{task}/{split}"] = {"before": b, "after": m["metric"], "change": m["metric"] - b}
    return out


def format_change(change: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table of ``old_task_change``."""
    rows = ["| old task / split | before | after | change |", "|---|---|---|---|"]
    for k, v in change.items():
        rows.append(f"| {k} | {v['before']:.4f} | {v['after']:.4f} | {v['change']:+.4f} |")
    return "\n".join(rows)


class OldTasks:
    """The passenger heads' tasks, evaluated on dev and test when made (before training) and by
    ``change()`` (after): a collapse of an old task shows in the report. An old task whose data cannot
    be loaded any more is skipped with a warning (its head is still kept)."""

    def __init__(self, trainer: Trainer, tasks: Mapping[str, TaskConfig], cache_dir: str, seed: int) -> None:
        self.trainer, self.tasks = trainer, dict(tasks)
        self.data: dict[str, datasets.DatasetDict] = {}
        for name, cfg in tasks.items():
            try:
                self.data |= load_tasks(
                    {name: cfg}, trainer.tokenizer, trainer.max_length, cache_dir, seed, ["dev", "test"]
                )
            except MtlError as e:
                log.warning("old task %s: its data could not be loaded (%s); kept, not evaluated", name, e)
        self.before = self._evaluate()

    def _evaluate(self) -> dict[str, TaskMetrics]:
        if not self.data:
            return {}
        tasks = {t: self.tasks[t] for t in self.data}
        return {s: self.trainer.evaluate(s, self.data, tasks) for s in ("dev", "test")}

    def change(self) -> dict[str, dict[str, float]]:
        """Per old task and split: the metric before training, after it, and the change."""
        return old_task_change(self.before, self._evaluate()) if self.data else {}
