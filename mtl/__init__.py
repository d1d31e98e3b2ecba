"""mtl: multi-task transfer learning on weakly labeled text.

One shared pretrained encoder with a head per task, configured by Hydra, trained by one accelerate loop.

Example:
    >>> from mtl import MultitaskModel, load_checkpoint
    >>> model, tokenizer, tasks, info = load_checkpoint("outputs/train/<run>/checkpoint")  # doctest: +SKIP
"""

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
