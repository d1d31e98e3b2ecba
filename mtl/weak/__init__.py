"""Weak supervision: labeling functions, applying them, LF analysis and label models.

Example:
    >>> from mtl.weak import ABSTAIN, labeling_function, apply_lfs, LabelModel
"""

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
from mtl.weak.model_lf import checkpoint_lf, model_lf
from mtl.weak.neighbours import extend_votes, similarity_lf

__all__ = [
    "ABSTAIN",
    "BatchLabelingFunction",
    "LFApplicationError",
    "LFOutput",
    "LabelModel",
    "LabelingFunction",
    "MajorityVote",
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
