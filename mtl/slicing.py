"""Slicing functions (SFs): the subsets of a task that matter most, marked per example.

An SF is the LF machinery with another meaning: it votes 1 for "in the slice" and 0 otherwise, shares
preprocessors, resources, parallel application, caching and fault handling with LFs, and yields a slice
indicator matrix S (n x s, 0/1) per split.

Example:
    >>> from mtl.slicing import slicing_function
    >>> @slicing_function()
    ... def has_link(x):
    ...     return "http" in x["text"]
    >>> has_link({"text": "see http://t.co/x"})
    1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from mtl.config import RayConfig
from mtl.userload import load_list
from mtl.weak.lf import Example, LabelingFunction, Preprocessor
from mtl.weak.ray_apply import apply_lfs_backend


class SlicingFunction(LabelingFunction):
    """A named membership test: ``sf(x)`` is 1 when ``f(x, **resources)`` is truthy, else 0."""

    kind = "slicing function"

    def __call__(self, x: Example) -> int:
        for p in self.pre:
            x = p(x)
        return int(bool(self.f(x, **self.resources)))


def slicing_function(
    name: str | None = None,
    resources: Mapping[str, Any] | None = None,
    pre: Sequence[Preprocessor] | None = None,
) -> Callable[[Callable[..., Any]], SlicingFunction]:
    """Decorator making a ``SlicingFunction``; the name defaults to the function's."""

    def wrap(f: Callable[..., Any]) -> SlicingFunction:
        return SlicingFunction(name or f.__name__, f, resources, pre)

    return wrap


def load_sfs(ref: str) -> list[SlicingFunction]:
    """The SFs named by a config reference (``file.py:NAME`` or ``module:NAME``): a list of SFs."""
    return load_list(ref, SlicingFunction, "made with @slicing_function")


def slice_matrix(
    ds: datasets.Dataset,
    sfs: Sequence[SlicingFunction],
    *,
    num_proc: int | None = None,
    fault_tolerant: bool = False,
    backend: str = "datasets",
    ray: RayConfig | None = None,
) -> np.ndarray:
    """S (n x s, int8 0/1): which rows of ``ds`` are in each slice. Errors name the SF and the row; with
    ``fault_tolerant`` a failing SF leaves the row out of its slice. ``backend="ray"`` applies the SFs on
    the Ray cluster ``ray`` names (``apply_lfs_backend``)."""
    out = apply_lfs_backend(
        ds, sfs, 2, backend=backend, ray=ray, num_proc=num_proc, fault_tolerant=fault_tolerant
    )
    return (out.L == 1).astype(np.int8)
