"""Command-line entry points, one small ``@hydra.main`` each."""

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import datasets
import transformers

from mtl.types import MtlError

T = TypeVar("T")

# The commands print their own progress (a training bar, a table); the libraries' per-file bars
# (saving prepared splits, loading weight shards) would bury it.
datasets.disable_progress_bars()
transformers.utils.logging.disable_progress_bar()


def user_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Print a ``MtlError`` (bad data, config or checkpoint: the message names the culprit) as one
    line on stderr and exit with status 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return fn(*args, **kwargs)
        except MtlError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
