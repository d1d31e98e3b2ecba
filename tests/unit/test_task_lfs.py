"""The shipped LFs in tasks/ do what their names say (loaded by path, as task configs load them)."""

from __future__ import annotations

from mtl.slicing import load_sfs
from mtl.weak import ABSTAIN, load_lfs


def _by_name(ref: str) -> dict:
    return {lf.name: lf for lf in load_lfs(ref)}


def test_tweet_lfs() -> None:
    lfs = _by_name("tasks/tweets.py:LFS")
    assert len(lfs) == 13
    assert lfs["negated_positive"]({"text": "@united not good at all, never happy with you"}) == 0
    assert lfs["negated_positive"]({"text": "@united good flight"}) == ABSTAIN
    assert lfs["sad_emoticon"]({"text": "see http://t.co/abc"}) == ABSTAIN  # a URL is not ":/"
    assert lfs["sad_emoticon"]({"text": "delayed again :("}) == 0
    assert lfs["happy_emoticon"]({"text": "made it :D"}) == 2
    assert lfs["service_failure"]({"text": "Flight Cancelled, still waiting for a refund"}) == 0
    assert lfs["no_sentiment_news"]({"text": "Google car test drive http://t.co/x"}) == 1
    assert lfs["vader_positive_not_negated"]({"text": "I love the new iPhone, it is great!"}) == 2


def test_spam_lfs() -> None:
    yt = _by_name("tasks/spam.py:YOUTUBE_LFS")
    assert yt["my_channel"]({"text": "Check out my channel please"}) == 1
    assert yt["short_comment"]({"text": "nice song"}) == 0
    assert yt["mentions_the_song"]({"text": "her voice in this song is amazing"}) == 0
    assert yt["mentions_the_song"]({"text": "love the song, subscribe to my channel"}) == ABSTAIN
    sms = _by_name("tasks/spam.py:SMS_LFS")
    assert sms["phone_number"]({"text": "Call 09061701461 to claim"}) == 1
    assert sms["personal_chat"]({"text": "I'll be home tonight"}) == 0
    assert sms["personal_chat"]({"text": "I'm giving you a free prize"}) == ABSTAIN


def test_shipped_slicing_functions() -> None:

    tweets = {sf.name: sf for sf in load_sfs("tasks/tweets.py:SFS")}
    assert tweets["negation"]({"text": "I don't like it"}) == 1 and tweets["negation"]({"text": "nice"}) == 0
    assert tweets["retweet"]({"text": "RT @bob: hi"}) == 1 and tweets["link"]({"text": "http://x"}) == 1
    assert tweets["sarcasm_marker"]({"text": "Thanks a lot @united, 5 hours late"}) == 1
    spam = {sf.name: sf for sf in load_sfs("tasks/spam.py:SFS")}
    assert spam["all_caps"]({"text": "WINNER!! CLAIM YOUR PRIZE NOW"}) == 1
    assert spam["has_number"]({"text": "call 08001234"}) == 1
    sentiment = {sf.name: sf for sf in load_sfs("tasks/sentiment.py:SFS")}
    assert sentiment["contrast"]({"text": "pretty, but empty"}) == 1
    assert sentiment["negation"]({"text": "never boring"}) == 1
