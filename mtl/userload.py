"""The one loader of user code: ``path/to/file.py:NAME`` or ``dotted.module:NAME``.

A task's labeling, slicing and transformation functions live in plain Python files named by its config
(``weak.lfs``, ``slices``, ``augment.tfs``). Files are loaded by path, relative to the working directory
or the project root, under a private module name: the generic folder name ``tasks`` never has to be
importable, nor can it shadow another package. A file is executed once per process.

Example:
    >>> from mtl.userload import load_list
    >>> from mtl.weak import LabelingFunction
    >>> lfs = load_list("tasks/spam.py:SMS_LFS", LabelingFunction, "labeling functions")
    >>> all(isinstance(lf, LabelingFunction) for lf in lfs)
    True
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any, TypeVar

from mtl.config import PROJECT_ROOT
from mtl.types import MtlError

T = TypeVar("T")


def resolve_path(path: str) -> Path:
    """Resolve a relative path against the working directory, then against the project root."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute() or p.exists():
        return p
    alt = PROJECT_ROOT / p
    return alt if alt.exists() else p


def load_object(ref: str) -> Any:
    """The object ``ref`` names: ``path/to/file.py:NAME`` or ``dotted.module:NAME``."""
    if ":" not in ref:
        raise MtlError(f"expected 'file.py:NAME' or 'module:NAME', got {ref!r}")
    where, attr = ref.rsplit(":", 1)
    if where.endswith(".py"):
        path = resolve_path(where)
        if not path.exists():
            raise MtlError(
                f"task code file {where!r} not found (looked in the working directory and project root)"
            )
        modname = "mtl_user_code." + re.sub(r"\W", "_", str(path.resolve().with_suffix("")))
        module = sys.modules.get(modname)
        if module is None:
            spec = importlib.util.spec_from_file_location(modname, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module  # so worker processes and pickling find it
            spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    if not hasattr(module, attr):
        raise MtlError(f"{where!r} has no attribute {attr!r}")
    return getattr(module, attr)


def load_list(ref: str, kind: type[T], what: str) -> list[T]:
    """The non-empty list (or tuple) of ``kind`` objects that ``ref`` names; ``what`` names them in the
    error (``"labeling functions"``)."""
    obj = load_object(ref)
    items = list(obj) if isinstance(obj, list | tuple) else None
    if not items or not all(isinstance(x, kind) for x in items):
        raise MtlError(f"{ref!r} must be a non-empty list of {kind.__name__} objects ({what})")
    return items


__all__ = ["load_list", "load_object", "resolve_path"]
