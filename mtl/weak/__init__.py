"""Weak supervision: labeling functions, applying them, LF analysis and label models.

Example:
    >>> from mtl.weak import ABSTAIN, labeling_function, apply_lfs, LabelModel
"""

from importlib import import_module
from typing import Any

from mtl.types import ABSTAIN
from mtl.weak.analysis import format_summary, lf_summary, write_summary
from mtl.weak.apply import (
    LFApplicationError,
    LFOutput,
    apply_lfs,
    from_sparse,
    label_matrix_from_column,
    to_sparse,
)
from mtl.weak.label_model import (
    LabelModel,
    MajorityVote,
    apply_temperature,
    fit_temperature,
    load_label_model,
    select_label_model,
)
from mtl.weak.lf import (
    BatchLabelingFunction,
    LabelingFunction,
    Preprocessor,
    keyword_lf,
    labeling_function,
    lexicon_lf,
    lexicon_preprocessor,
    load_lfs,
    preprocessor,
    regex_lf,
)
from mtl.weak.model_lf import ModelLabelingFunction, checkpoint_lf, model_lf

_LAZY = {"extend_votes": "mtl.weak.neighbours", "similarity_lf": "mtl.weak.neighbours"}


def __getattr__(name: str) -> Any:
    """The nearest-neighbour helpers load torch and faiss: imported on first use, so that unpickling an
    LF (``import mtl.weak``, in every Ray worker) stays light."""
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mtl.weak' has no attribute {name!r}")


__all__ = [
    "ABSTAIN",
    "BatchLabelingFunction",
    "LFApplicationError",
    "LFOutput",
    "LabelModel",
    "LabelingFunction",
    "MajorityVote",
    "ModelLabelingFunction",
    "Preprocessor",
    "apply_lfs",
    "apply_temperature",
    "checkpoint_lf",
    "extend_votes",
    "fit_temperature",
    "format_summary",
    "from_sparse",
    "keyword_lf",
    "label_matrix_from_column",
    "labeling_function",
    "lexicon_lf",
    "lexicon_preprocessor",
    "lf_summary",
    "load_label_model",
    "load_lfs",
    "model_lf",
    "preprocessor",
    "regex_lf",
    "select_label_model",
    "similarity_lf",
    "to_sparse",
    "write_summary",
]
