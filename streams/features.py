"""What a post can burst on: unigrams, bigrams, hashtags, linked domains, named entities.

Pure and cheap; no list of terms is needed (anything can emerge). Items are plain strings:
``tornado`` (unigram), ``black hole`` (bigram), ``#yycflood`` (hashtag), ``domain:bbc.co.uk``
(linked site), ``ent:event horizon telescope`` (a run of capitalised words in running text).
"""

from __future__ import annotations

import re
from itertools import chain
from typing import cast

from models.text import (
    STOP_WORDS,
    domains,
    match_tokens,
    tokens_and_pieces,
    word_of,
    wordlike,
)

# what kind of post a Hacker News title is ("Ask HN: ...", "Show HN: ...") and what its link
# holds ("[pdf]", "[video]"): the site's format, not what the post is about
_HN_FORMAT = re.compile(
    r"^\s*(?:ask|show|tell|launch) hn\s*[:\u2013-]|\[(?:pdf|video|audio|slides)\]", re.IGNORECASE
)
_CAP_RUN = re.compile(r"\b(?:[A-Z][\w'-]+|[A-Z]{2,})(?:\s+(?:[A-Z][\w'-]+|[A-Z]{2,})){1,3}\b")
_WORDISH = re.compile(r"[A-Za-z][\w'-]*")
# token -> its word, or "" when it is too short or a number (a bounded memo: tokens repeat a
# lot); whether the word is a stop word depends on the post's language
_WORD_OF: dict[str, str] = {}


def topic_text(text: str, source: str) -> str:
    """The text a post's items are taken from: a Hacker News title without the site's
    format markers ("Ask HN:", "Show HN:", "Tell HN:", "Launch HN:", "[pdf]", "[video]"),
    which say what kind of post or link it is, not what it is about (a day with more "Ask
    HN" posts than usual is no event); any other post's text as it is."""
    return _HN_FORMAT.sub(" ", text) if source == "hackernews" else text


def entities(text: str, stop: frozenset[str] = STOP_WORDS) -> list[str]:
    """Runs of 2-4 capitalised words in running text (not in Title Case Headlines), without
    their ``stop`` words.

    The reference; ``streams._textcore.entities`` is its compiled twin.
    """
    if text.islower():  # (no capital letter)
        return []
    runs = _CAP_RUN.findall(text)
    if not runs:
        return []
    words = _WORDISH.findall(text)
    capitalised = sum(1 for w in words if w[0].isupper())
    if capitalised > 0.5 * len(words):  # a headline in title case: every run is a false hit
        return []
    out: list[str] = []
    for run in runs:
        parts = [p for p in run.split() if p.lower() not in stop]
        if len(parts) >= 2:
            ent = "ent:" + " ".join(p.lower() for p in parts)
            if ent not in out:
                out.append(ent)
    return out


def _content_words(toks: list[str], stop: frozenset[str]) -> list[str]:
    """Per token its content word, or "" when it is none (through the bounded memo)."""
    memo = _WORD_OF
    words = list(map(memo.get, toks))
    if None in words:  # a token not seen yet
        if len(memo) > 100_000:
            memo.clear()
        for j, w in enumerate(words):
            if w is None:
                word = word_of(toks[j])
                words[j] = memo[toks[j]] = word if wordlike(word) else ""
    return [w if w not in stop else "" for w in cast("list[str]", words)]  # (no None left)


def analyse(
    text: str, limit: int = 48, stop: frozenset[str] = STOP_WORDS
) -> tuple[list[str], list[str]]:
    """(burst items, content words) of one post, tokenised once.

    Items, distinct and in order: unigrams and bigrams, hashtags, domains, entities. The
    content words (no ``stop`` words, links or mentions) are the post's MinHash shingles.
    ``stop``: the stop words of the post's language (:func:`models.text.stop_words_for`).

    The readable reference: the detector runs its compiled twin,
    ``streams._textcore.analyse`` (the same output for every text, checked in
    tests/test_core_text.py), unless ``streams.core.PURE_PYTHON`` is set.
    """
    toks = tokens_and_pieces(text)
    words = _content_words(toks, stop)
    content = list(filter(None, words))
    seen: dict[str, None]
    if "#" not in text and 2 * len(content) - 2 < limit:  # every token counts: one pass
        # per token its word, then its bigram with the previous token's word (if both are)
        prev = ["", *words[:-1]] if words else []
        pairs = [f"{a} {b}" if a and b and a != b else "" for a, b in zip(prev, words, strict=True)]
        seen = dict.fromkeys(chain.from_iterable(zip(words, pairs, strict=True)))
        seen.pop("", None)
    else:
        seen = _items(toks, words, limit)
    for d in domains(text):  # (links in any case: "HTTP://" too)
        seen.setdefault(f"domain:{d}", None)
    for e in entities(text, stop):
        seen.setdefault(e, None)
    return list(seen)[: limit + 8], content


def _items(toks: list[str], words: list[str], limit: int) -> dict[str, None]:
    """Unigrams, hashtags and bigrams, token by token, until ``limit`` is reached."""
    seen: dict[str, None] = {}
    prev = ""
    for tok, word in zip(toks, words, strict=True):
        if not word:
            prev = ""
            continue
        if len(seen) >= limit:
            continue
        seen.setdefault(word, None)
        if tok[0] == "#":
            seen.setdefault("#" + word, None)
        if prev and prev != word:
            seen.setdefault(f"{prev} {word}", None)
        prev = word
    return seen


def burst_items(text: str, limit: int = 48, stop: frozenset[str] = STOP_WORDS) -> list[str]:
    """Distinct items of one post (see :func:`analyse`)."""
    return analyse(text, limit, stop)[0]


def words(text: str) -> list[str]:
    """All words of a post, normalised as items are (hashtags folded, possessives cut;
    Chinese, Japanese and Korean as their character bigrams)."""
    return [w for w in (word_of(t) for t in match_tokens(text)) if w]


def label_words(item: str) -> str:
    """An item as plain words (``#yycflood`` -> ``yycflood``, ``ent:m87 eht`` -> ``m87 eht``)."""
    for prefix in ("ent:", "domain:", "#"):
        if item.startswith(prefix):
            return item[len(prefix) :]
    return item
