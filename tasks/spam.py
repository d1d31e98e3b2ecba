"""Labeling functions over the raw text of the spam tasks (youtube comments, sms messages).

Classes: 0 = ham, 1 = spam. Referenced from task configs as ``tasks/spam.py:YOUTUBE_LFS`` and
``tasks/spam.py:SMS_LFS`` (loaded by path, so this folder is never a Python package on sys.path).
"""

from __future__ import annotations

import re

from mtl.augment import replace_entities, swap_words, typo
from mtl.slicing import slicing_function
from mtl.weak import ABSTAIN, keyword_lf, labeling_function, lexicon_lf, lexicon_preprocessor, regex_lf

HAM, SPAM = 0, 1
_textblob = lexicon_preprocessor("textblob")


@labeling_function()
def short_comment(x: dict) -> int:
    """Very short comments are rarely spam (spam wants room for a pitch)."""
    return HAM if len(x["text"].split()) < 5 else ABSTAIN


@labeling_function()
def mentions_the_song(x: dict) -> int:
    """Talking about the video's song or singer is what real viewers do."""
    text = x["text"].lower()
    promo = re.search(r"my (channel|video|page)|subscribe|check (out|it)", text)
    return HAM if re.search(r"\b(song|singer|voice|dance|beat|lyrics)\b", text) and not promo else ABSTAIN


YOUTUBE_LFS = [
    keyword_lf("my_channel", ["my channel", "my video", "my page", "my music"], SPAM),
    keyword_lf("subscribe", ["subscribe", "subscribers", "sub4sub"], SPAM),
    regex_lf("check_out", r"check\s*(it\s*)?out|look at my|visit my", SPAM),
    regex_lf("link", r"https?://|www\.|\.com\b", SPAM),
    keyword_lf("please_help", ["please", "plz", "pls", "help me"], SPAM),
    keyword_lf("money", ["money", "earn", "cash", "free", "giveaway", "gift card"], SPAM),
    short_comment,
    mentions_the_song,
    lexicon_lf("very_positive", "textblob", positive=HAM, negative=None, threshold=0.7, pre=_textblob),
]


@labeling_function()
def personal_chat(x: dict) -> int:
    """First-person chat between friends ("i'll be home", "are you coming") is ham."""
    text = x["text"].lower()
    if re.search(r"\b(i'?ll|i'?m|gonna|wanna|lol|haha|home|tonight|tmr|tomorrow|u r|are you|r u)\b", text):
        return HAM if not re.search(r"\b(free|win|prize|claim|txt|urgent)\b", text) else ABSTAIN
    return ABSTAIN


SMS_LFS = [
    keyword_lf("prize", ["prize", "winner", "won", "win", "awarded", "claim"], SPAM),
    keyword_lf("free", ["free", "bonus", "offer", "discount", "cash"], SPAM),
    keyword_lf("text_to", ["txt", "text stop", "reply", "sms", "ringtone", "mobile"], SPAM),
    keyword_lf("urgent", ["urgent", "important", "guaranteed", "call now", "now!"], SPAM),
    regex_lf("phone_number", r"\b0\d{9,10}\b|\b\d{5}\b", SPAM),
    regex_lf("money_sign", r"[£$€]\s?\d|\d+p\b|per min|/min", SPAM),
    regex_lf("link", r"https?://|www\.", SPAM),
    personal_chat,
    regex_lf(
        "short_reply", r"^\W*(ok|okay|k|yes|no|sure|thanks|thank you|lol|haha|hmm|sorry)\W*\w*\W*$", HAM
    ),
]


# ------------------------------------------------------------------------------------------ slices
# Where spam filters slip: messages too short to judge, links and numbers (both in spam and in ham), and
# shouting, which ham does too.


@slicing_function()
def short(x: dict) -> bool:
    return len(x["text"].split()) < 6


@slicing_function()
def has_link(x: dict) -> bool:
    return bool(re.search(r"https?://|www\.|\.com\b", x["text"].lower()))


@slicing_function()
def has_number(x: dict) -> bool:
    return bool(re.search(r"\d{4,}", x["text"]))


@slicing_function()
def all_caps(x: dict) -> bool:
    letters = [c for c in x["text"] if c.isalpha()]
    return len(letters) >= 10 and sum(c.isupper() for c in letters) / len(letters) > 0.6


SFS = [short, has_link, has_number, all_caps]


# ------------------------------------------------------------------------------------------ augmentation
# Spam stays spam with a typo, another link or number, or words swapped; nothing is deleted (a deleted
# "subscribe" could turn spam into ham).
TFS = [swap_words, typo, replace_entities]
