"""Turning composed configs into the objects a run needs (shared by the command-line entry points)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mtl.config import TaskConfig
from mtl.data import as_task_config


def task_configs(cfg: DictConfig) -> dict[str, TaskConfig]:
    """The typed task configs under ``cfg.tasks``, in selection order."""
    if not cfg.tasks:
        raise ValueError(
            "no tasks selected: pass e.g. 'tasks=[youtube,sms]' (options: the files in conf/tasks/)"
        )
    tasks = OmegaConf.to_object(cfg.tasks)  # resolves ${data_root} and friends against the root
    assert isinstance(tasks, dict)
    return {str(name): as_task_config(task) for name, task in tasks.items()}


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The fully resolved config as plain containers (what checkpoints and reports record)."""
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}
