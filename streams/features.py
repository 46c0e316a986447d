"""What a post can burst on: unigrams, bigrams, hashtags, linked domains, named entities.

Pure and cheap; no list of terms is needed (anything can emerge). Items are plain strings:
``tornado`` (unigram), ``black hole`` (bigram), ``#yycflood`` (hashtag), ``domain:bbc.co.uk``
(linked site), ``ent:event horizon telescope`` (a run of capitalised words in running text).
"""

from __future__ import annotations

import re

from models.text import STOP_WORDS, domains, tokens

_CAP_RUN = re.compile(r"\b(?:[A-Z][\w'-]+|[A-Z]{2,})(?:\s+(?:[A-Z][\w'-]+|[A-Z]{2,})){1,3}\b")
_WORDISH = re.compile(r"[A-Za-z][\w'-]*")
# token -> its content word, or None when it is none (a bounded memo: tokens repeat a lot)
_CONTENT_WORD: dict[str, str | None] = {}


def _word(tok: str) -> str:
    word = tok.lstrip("#").strip("'.-_%")
    if word.endswith("'s"):
        word = word[:-2]
    return word


def _content(word: str) -> bool:
    return len(word) >= 3 and word not in STOP_WORDS and not word.replace(".", "").isdigit()


def entities(text: str) -> list[str]:
    """Runs of 2-4 capitalised words in running text (not in Title Case Headlines)."""
    runs = _CAP_RUN.findall(text)
    if not runs:
        return []
    words = _WORDISH.findall(text)
    capitalised = sum(1 for w in words if w[0].isupper())
    if capitalised > 0.5 * len(words):  # a headline in title case: every run is a false hit
        return []
    out: list[str] = []
    for run in runs:
        parts = [p for p in run.split() if p.lower() not in STOP_WORDS]
        if len(parts) >= 2:
            ent = "ent:" + " ".join(p.lower() for p in parts)
            if ent not in out:
                out.append(ent)
    return out


def analyse(text: str, limit: int = 48) -> tuple[list[str], list[str]]:
    """(burst items, content words) of one post, tokenised once.

    Items, distinct and in order: unigrams and bigrams, hashtags, domains, entities. The
    content words (no stop words, links or mentions) are the post's MinHash shingles.
    """
    seen: dict[str, None] = {}
    content: list[str] = []
    prev: str | None = None
    memo = _CONTENT_WORD
    if len(memo) > 100_000:
        memo.clear()
    for tok in tokens(text):
        word = memo.get(tok, "")
        if word == "":  # not seen yet ("" is never a content word)
            w = _word(tok)
            word = memo[tok] = w if _content(w) else None
        if word is None:
            prev = None
            continue
        content.append(word)
        if len(seen) >= limit:
            continue
        seen.setdefault(word, None)
        if tok[0] == "#":
            seen.setdefault("#" + word, None)
        if prev is not None and prev != word:
            seen.setdefault(f"{prev} {word}", None)
        prev = word
    if "http" in text:
        for d in domains(text):
            seen.setdefault(f"domain:{d}", None)
    for e in entities(text):
        seen.setdefault(e, None)
    return list(seen)[: limit + 8], content


def burst_items(text: str, limit: int = 48) -> list[str]:
    """Distinct items of one post (see :func:`analyse`)."""
    return analyse(text, limit)[0]


def words(text: str) -> list[str]:
    """All words of a post, normalised as items are (hashtags folded, possessives cut)."""
    return [w for w in (_word(t) for t in tokens(text)) if w]


def label_words(item: str) -> str:
    """An item as plain words (``#yycflood`` -> ``yycflood``, ``ent:m87 eht`` -> ``m87 eht``)."""
    for prefix in ("ent:", "domain:", "#"):
        if item.startswith(prefix):
            return item[len(prefix) :]
    return item
