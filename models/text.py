"""Text features shared by the classifiers and the burst detector. Pure, no I/O."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")
_TOKEN = re.compile(r"#?[a-z0-9][a-z0-9'+._%-]*[a-z0-9+%]|#?[a-z0-9]")
# Words that carry no topic in social posts, beyond sklearn's English list.
_EXTRA_STOP = frozenset(
    """rt via amp http https www com just like get got im dont cant wont thats lol omg gonna
    wanna really know think going today tonight day new good people time want need make
    right love yes yeah hey oh u ur""".split()
)
# Contractions are function words too ("isn't", "we're", "i'm"); the token scan keeps the
# apostrophe, and reads a typographic one (U+2019) as it (see :func:`tokens`).
_CONTRACTIONS = frozenset(
    [
        f"{aux}n't"
        for aux in """is are was were do does did has have had wo would ca could should must
        need ai sha might""".split()
    ]
    + [
        f"{who}'{end}"
        for who in "i you we they he she it that there who what where here how".split()
        for end in ("m", "re", "ll", "ve", "d")
    ]
    + ["let's", "y'all"]
)
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | _EXTRA_STOP | _CONTRACTIONS


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (hashtags keep their '#'); URLs and @mentions removed; a
    typographic apostrophe (U+2019) read as "'" ("don't" typed either way is one token).

    Hot (every post, in the classifier and the detector): a text without "http" or "@"
    skips that pass.
    """
    t = text.lower()
    if "\u2019" in t:
        t = t.replace("\u2019", "'")
    if "http" in t:
        t = _URL.sub(" ", t)
    if "@" in t:
        t = _MENTION.sub(" ", t)
    return _TOKEN.findall(t)


def normalize_phrase(phrase: str) -> str:
    """A keyword/phrase in the form :func:`contains_phrase` matches against."""
    return " ".join(tokens(phrase))


def contains_phrase(padded_tokens: str, phrase: str) -> bool:
    """``padded_tokens`` is ``" " + " ".join(tokens) + " "``; phrase from normalize_phrase."""
    return f" {phrase} " in padded_tokens


_SKIPPED_HOSTS = ("t.co",)  # link shorteners: the host says nothing about the content
# the plain links to them, recognised before parsing (most tweets' only link is one)
_SKIPPED_LINKS = tuple(f"{s}://{h}/" for h in _SKIPPED_HOSTS for s in ("http", "https"))
_SKIPPED_LEN = max(map(len, _SKIPPED_LINKS))


def domains(text: str) -> list[str]:
    out: list[str] = []
    for m in _URL.findall(text):
        if m[:_SKIPPED_LEN].lower().startswith(_SKIPPED_LINKS):
            continue
        host = (urlsplit(m.rstrip(").,;!?\"'")).hostname or "").lower()
        host = host.removeprefix("www.")
        if host and host not in _SKIPPED_HOSTS and host not in out:
            out.append(host)
    return out


def terms(text: str, limit: int = 16) -> list[str]:
    """Distinct burst-detection terms of a post, in order of first appearance.

    Unigrams (3+ chars, not stop words, not bare numbers), hashtags folded to their word
    (``#tornado`` counts as ``tornado``) and linked domains (``domain:example.com``).
    """
    seen: dict[str, None] = {}
    for tok in tokens(text):
        word = tok.lstrip("#").strip("'.-_%")
        if word.endswith("'s"):
            word = word[:-2]
        if len(word) < 3 or word in STOP_WORDS or word.replace(".", "").isdigit():
            continue
        seen.setdefault(word, None)
        if len(seen) >= limit:
            break
    out = list(seen)
    for d in domains(text):
        if len(out) >= limit + 2:
            break
        out.append(f"domain:{d}")
    return out
