"""``Task``: one task of a run, resolved once: its name, typed config, classes, and its labeling, slicing
and transformation functions, each loaded on first use and then kept.

Every step of the pipeline (``mtl.prepare``), the model factory, the trainer, evaluation and the
commands take ``Task`` objects, so a task's SF file is loaded once per process, not once per step.
Building a ``Task`` checks what the config schema cannot: classes, metric, label source and head options
that make sense together; the errors name the task and the key.

Example:
    >>> from mtl.config import SourceConfig, TaskConfig
    >>> cfg = TaskConfig(label_names=["ham", "spam"], source=SourceConfig(format="csv", path="x.csv"),
    ...                  slices="tasks/spam.py:SFS")
    >>> task = Task("sms", cfg)
    >>> task.num_classes, task.slice_names
    (2, ['short', 'has_link', 'has_number', 'all_caps'])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mtl.augment import Policy, TransformationFunction, build_policy, load_tfs
from mtl.config import (
    AugmentMode,
    HeadType,
    Metric,
    TaskConfig,
    as_task_config,
    check_choices,
    out_of_range,
)
from mtl.slicing import SlicingFunction, load_sfs
from mtl.sources import DataError
from mtl.types import MtlError
from mtl.weak.lf import LabelingFunction, load_lfs


@dataclass(frozen=True, eq=False)
class Task:
    """A task's name and config, checked, with its functions loaded once (see the module docstring).

    Attributes:
        name: the task's key under ``tasks`` (names its head, its reports and its cache folders).
        config: the typed task config.
    """

    name: str
    config: TaskConfig

    def __post_init__(self) -> None:
        validate_task(self.name, self.config)

    @property
    def label_names(self) -> list[str]:
        return list(self.config.label_names)

    @property
    def num_classes(self) -> int:
        return len(self.config.label_names)

    @property
    def metric(self) -> Metric:
        return Metric(self.config.metric)

    @cached_property
    def lfs(self) -> list[LabelingFunction]:
        """The task's labeling functions (``weak.lfs``; empty without)."""
        return load_lfs(self.config.weak.lfs) if self.config.weak.lfs else []

    @cached_property
    def sfs(self) -> list[SlicingFunction]:
        """The task's slicing functions (``slices``; empty without)."""
        return load_sfs(self.config.slices) if self.config.slices else []

    @cached_property
    def tfs(self) -> list[TransformationFunction]:
        """The task's transformation functions (``augment.tfs``; empty without)."""
        return load_tfs(self.config.augment.tfs) if self.config.augment.tfs else []

    @cached_property
    def policy(self) -> Policy | None:
        """The augmentation policy of ``augment`` (None without TFs)."""
        return build_policy(self.name, self.tfs, self.config.augment) if self.tfs else None

    @property
    def slice_names(self) -> list[str]:
        return [sf.name for sf in self.sfs]

    @property
    def num_slices(self) -> int:
        return len(self.sfs)

    @property
    def augments_on_the_fly(self) -> bool:
        """Whether the training split is augmented in the data loader (``augment.mode: on_the_fly``)."""
        return bool(self.config.augment.tfs) and self.config.augment.mode == AugmentMode.on_the_fly

    def replace(self, **changes: Any) -> Task:
        """The same task with config fields changed (``task.replace(labels="gold")``)."""
        return Task(self.name, dataclasses.replace(self.config, **changes))


def validate_task(task: str, cfg: TaskConfig) -> None:
    """Check what the schema cannot: classes, metric, label source and head options that fit together."""
    check_choices(cfg, f"task {task!r}: ")
    bad = out_of_range(cfg)
    if bad:
        raise DataError(f"task {task!r}: out of range: {', '.join(bad)}")
    names = list(cfg.label_names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"task {task!r}: label_names needs at least two distinct classes, got {names}")
    if cfg.metric == Metric.f1 and len(names) != 2:
        raise DataError(f"task {task!r}: metric 'f1' (of class 1) is for binary tasks; use macro_f1")
    if (
        cfg.labels not in ("gold", "weak")
        and not cfg.labels.endswith(".npy")
        and not Path(cfg.labels).is_dir()
    ):
        raise DataError(
            f"task {task!r}: labels must be gold, weak, or a train_probs.npy path, got {cfg.labels!r}"
        )
    if cfg.head.type != HeadType.plain and not cfg.slices:
        raise DataError(f"task {task!r}: head.type {cfg.head.type!r} needs slicing functions (set `slices`)")
    if cfg.weak.gold_weight > 0 and cfg.labels == "gold":
        raise DataError(
            f"task {task!r}: weak.gold_weight must be >= 0, and is for weak labels (labels=gold trains on "
            f"gold rows alone), got {cfg.weak.gold_weight} with labels={cfg.labels!r}"
        )
    if cfg.weak.gold_weight > 0 and cfg.split.dev_folds < 2:
        raise DataError(
            f"task {task!r}: weak.gold_weight={cfg.weak.gold_weight} trains on the dev split's gold labels, "
            "so dev must be cross-fitted: set split.dev_folds (>= 2) and split.dev_fold, or gold.folds "
            "and gold.fold with gold.mode=mix"
        )


def resolve_tasks(configs: Mapping[str, TaskConfig | DictConfig | dict[str, Any]]) -> dict[str, Task]:
    """``Task`` objects from composed (or saved) task configs, in order; errors name the task."""
    if not configs:
        raise MtlError(
            "no tasks selected: pass e.g. 'tasks=[youtube,sms]' (options: the files in conf/tasks/)"
        )
    return {str(name): Task(str(name), as_task_config(cfg)) for name, cfg in configs.items()}


__all__ = ["Task", "resolve_tasks", "validate_task"]
