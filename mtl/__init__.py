"""mtl: multi-task transfer learning on weakly labeled text.

One shared pretrained encoder with a head per task, configured by Hydra, trained by one accelerate loop.

Example:
    >>> from mtl import MultitaskModel, load_checkpoint
    >>> model, tokenizer, tasks, info = load_checkpoint("outputs/train/<run>/checkpoint")  # doctest: +SKIP
"""

from importlib import import_module, util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load on first use
    from mtl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from mtl.config import EncoderConfig, HeadConfig, SourceConfig, SplitConfig, TaskConfig, TrainerConfig
    from mtl.heads import ClassificationHead, SliceAwareHead, UpweightHead, build_head, soft_cross_entropy
    from mtl.model import MultitaskModel, build_encoder
    from mtl.prepare import load_task_splits, load_tasks, prepare_task
    from mtl.sources import DataError
    from mtl.starting_model import StartingModel, starting_model
    from mtl.task import Task, resolve_tasks
    from mtl.trainer import FitResult, Trainer
    from mtl.types import ABSTAIN, MtlError

# Imported on first use (PEP 562): `import mtl.weak.lf` (every Ray worker unpickling an LF does it) must
# not pull in torch and transformers through the model's modules.
_EXPORTS = {
    "CheckpointError": "mtl.checkpoint",
    "load_checkpoint": "mtl.checkpoint",
    "save_checkpoint": "mtl.checkpoint",
    "EncoderConfig": "mtl.config",
    "HeadConfig": "mtl.config",
    "SourceConfig": "mtl.config",
    "SplitConfig": "mtl.config",
    "TaskConfig": "mtl.config",
    "TrainerConfig": "mtl.config",
    "ClassificationHead": "mtl.heads",
    "SliceAwareHead": "mtl.heads",
    "UpweightHead": "mtl.heads",
    "build_head": "mtl.heads",
    "soft_cross_entropy": "mtl.heads",
    "MultitaskModel": "mtl.model",
    "build_encoder": "mtl.model",
    "load_task_splits": "mtl.prepare",
    "load_tasks": "mtl.prepare",
    "prepare_task": "mtl.prepare",
    "DataError": "mtl.sources",
    "StartingModel": "mtl.starting_model",
    "starting_model": "mtl.starting_model",
    "Task": "mtl.task",
    "resolve_tasks": "mtl.task",
    "FitResult": "mtl.trainer",
    "Trainer": "mtl.trainer",
    "ABSTAIN": "mtl.types",
    "MtlError": "mtl.types",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if util.find_spec(f"mtl.{name}") is not None:  # `import mtl; mtl.trainer`, as when all were imported
        return import_module(f"mtl.{name}")
    raise AttributeError(f"module 'mtl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "ABSTAIN",
    "CheckpointError",
    "ClassificationHead",
    "DataError",
    "EncoderConfig",
    "FitResult",
    "HeadConfig",
    "MtlError",
    "MultitaskModel",
    "SliceAwareHead",
    "SourceConfig",
    "SplitConfig",
    "StartingModel",
    "Task",
    "TaskConfig",
    "Trainer",
    "TrainerConfig",
    "UpweightHead",
    "build_encoder",
    "build_head",
    "load_checkpoint",
    "load_task_splits",
    "load_tasks",
    "prepare_task",
    "resolve_tasks",
    "save_checkpoint",
    "soft_cross_entropy",
    "starting_model",
]
