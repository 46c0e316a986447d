"""The compiled text twin (streams/_textcore.pyx) against streams.features.analyse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models.text import _MENTION, STOP_WORDS, stop_words_for
from streams import _textcore
from streams.features import _CAP_RUN, analyse, entities

# the characters the reference treats specially, and some it must treat as any other
_SPECIAL = "#@'+._%-/:?=&!,;()\"$ \t\n\x0b\x0c\r\x1c\x1f\x85\xa0\u2028\u3000"
_LETTERS = "aAbBsStTpPhHxXzZ019"
_UNICODE = "éÉßİ\u0131\u017fK\u212aΣ\u03c3ς€ø😀\u0301ǅ"  # (odd case rules)
# letters and digits of other scripts (word characters), Japanese among them
_SCRIPTS = "дЖ地震ãç٣²½\u0663\u00b9でスーｱ々지진이"
_PIECES = (
    "http://",
    "HTTPS://",
    "https://www.bbc.co.uk/news?x=1).",
    "http://t.co/x",
    "@user",
    "a@b",
    "@a@b",
    "é@x",
    "_@y",
    "@é_1",
    "@@z",
    "#tag",
    "##x",
    "'s",
    "...",
    "3.14",
    "10%",
    "c++",
    "the",
    "and",
    "New York Fire Department",
    "U.S.",
    "que",
    "für",
    "Gödel",
    "São Paulo",
    "١٢٣",
    "2²",
    "#地震",
    "東京で地震があった",
)
# the stop words of an English, a Portuguese and a German post
_STOPS = (STOP_WORDS, stop_words_for("pt"), stop_words_for("de"))

_chars = st.sampled_from(_SPECIAL + _LETTERS + _UNICODE + _SCRIPTS)
_texts = st.lists(
    st.one_of(st.text(_chars, min_size=1, max_size=6), st.sampled_from(_PIECES)), max_size=30
).map("".join)


def _same(text: str, limit: int) -> None:
    assert _textcore.analyse(text, limit) == analyse(text, limit)
    for stop in _STOPS[1:]:
        assert _textcore.analyse(text, limit, stop) == analyse(text, limit, stop)
    assert _textcore.drop_mentions(text) == _MENTION.sub(" ", text)


@given(_texts, st.integers(min_value=-12, max_value=60))
@settings(max_examples=1500)
@example("", 48)
@example("#", 48)
@example("a'''s b's #c's abc's", 48)
@example("Check http://Example.COM/x and HTTP://www.bbc.co.uk now", 48)
@example("storm storm storm #storm storm", 1)
@example("Moore Oklahoma tornado: the National Weather Service says EF5", 48)
@example("a.b.c 1.2.3 ..1 x1.2 +++ %%% 50% c++ a-b-c", 48)
@example("Gödel's proof: São Paulo für Zürich, Москва ٣.٣ 2² #Zürich que und der", 48)
def test_analyse_twin_on_adversarial_texts(text: str, limit: int) -> None:
    _same(text, limit)


@given(st.text(max_size=200), st.integers(min_value=-12, max_value=60))
@settings(max_examples=500)
def test_analyse_twin_on_any_text(text: str, limit: int) -> None:
    _same(text, limit)


_WORDS = ["fire", "tornado", "moore", "the", "#ok", "Oklahoma"]


@given(st.lists(st.sampled_from(_WORDS), max_size=80))
def test_analyse_twin_at_the_item_limit(words: list[str]) -> None:
    text = " ".join(words)
    for limit in (0, 1, 2, 3, 5, 48):
        _same(text, limit)


# capitalised runs: words in every case, stop words, the characters a word may hold or end at
_CAPS = st.lists(
    st.one_of(
        st.sampled_from(["New", "York", "NASA", "EF5", "The", "Of", "And", "A", "I", "X-Ray"]),
        st.sampled_from(["fire", "the", "of", "a", "o'neil", "O'Neil", "U.S.", "co-op", "_X"]),
        st.text(st.sampled_from("AaBZz09_'-.,:;!éÉΩǅ٣\u0301…\u2019"), min_size=1, max_size=5),
    ),
    max_size=24,
)
_GAPS = st.lists(
    st.sampled_from(
        [" ", "  ", "\t", "\n", "\x1c", "\x1f", "", "-", "'", ", ", "\xa0", "\u2028", "\u3000", "é"]
    )
)


@given(_CAPS, _GAPS.filter(bool))
@settings(max_examples=1500)
@example(["Moore", "Oklahoma", "EF5", "Tornado"], [" "])
@example(["AB-", "CD'", "Ef-g"], [" "])
@example(["Xx", "Ab-", "and", "more", "words", "here"], [" "])
@example(["The", "New", "York", "Times", "and", "the", "storm", "today", "here"], [" "])
@example(["Café", "Été", "Moore", "Oklahoma", "storm", "hits", "the", "town"], ["\xa0", " "])
@example(["New", "Yorké", "Ab\u0301", "Cd", "and", "the", "storm", "today"], ["\u3000"])
def test_entities_twin(words: list[str], gaps: list[str]) -> None:
    text = "".join(w + gaps[i % len(gaps)] for i, w in enumerate(words))
    assert _textcore.cap_runs(text) == _CAP_RUN.findall(text)
    assert _textcore.entities(text) == entities(text)
    for stop in _STOPS[1:]:
        assert _textcore.entities(text, stop) == entities(text, stop)
    _same(text, 48)


def test_analyse_twin_on_the_replay_files(shared_data: Path) -> None:
    files = sorted((shared_data / "replay").glob("*.jsonl"))
    if not files:
        pytest.skip("no replay files")
    for path in files:
        with path.open() as f:
            for n, line in enumerate(f):
                if n >= 3000:
                    break
                _same(json.loads(line)["text"], 48)
