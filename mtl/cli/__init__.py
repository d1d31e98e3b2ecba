"""Command-line entry points, one small ``@hydra.main`` each."""

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import datasets
import transformers
from omegaconf import DictConfig, OmegaConf

from mtl.config import check_config
from mtl.task import Task, resolve_tasks
from mtl.types import MtlError

T = TypeVar("T")

# The commands print their own progress (a training bar, a table); the libraries' per-file bars
# (saving prepared splits, loading weight shards) would bury it.
datasets.disable_progress_bars()
transformers.utils.logging.disable_progress_bar()


def user_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Check the command's config (``check_config``), and print a ``MtlError`` (bad data, config or
    checkpoint: the message names the culprit) as one line on stderr and exit with status 2, instead of
    a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            if args and isinstance(args[0], DictConfig):
                check_config(args[0])  # every choice and numeric range, before any work
            return fn(*args, **kwargs)
        except MtlError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def run_tasks(cfg: DictConfig) -> dict[str, Task]:
    """The ``Task`` objects of a composed command config's ``tasks``, in selection order (an error
    when none is selected)."""
    tasks = OmegaConf.to_object(cfg.tasks)  # resolves ${data_root} and friends against the root
    assert isinstance(tasks, dict)
    return resolve_tasks({str(name): task for name, task in tasks.items()})


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The fully resolved config as plain containers (what checkpoints and reports record)."""
    out = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}
