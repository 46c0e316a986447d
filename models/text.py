"""Text features shared by the classifiers and the burst detector. Pure, no I/O."""

from __future__ import annotations

import re
from functools import cache
from urllib.parse import urlsplit

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from stop_words import LANGUAGE_MAPPING, get_stop_words

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")
# a run of letters and digits of any script ([^\W_]) with ' + . _ % - inside, ending in a letter,
# a digit, + or % ("c++", "50%"); a hashtag keeps its '#'
_TOKEN = re.compile(r"#?[^\W_][\w'+.%-]*(?:[^\W_]|[+%])|#?[^\W_]")
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
# language subtags the stop-words package files under another code
_LANGUAGE_ALIASES = {"no": "nb", "nn": "nb", "iw": "he", "in": "id"}


def stop_words_for(lang: str | None) -> frozenset[str]:
    """The stop words of a post written in ``lang``, a BCP 47 tag as Bluesky, X and feeds
    give it ("pt", "pt-BR", "de_AT"): :data:`STOP_WORDS` (English is everywhere in social
    posts), plus the language's own list from the stop-words package when it has one
    (33 languages). No tag, English, or a language it has no list for: STOP_WORDS alone.
    "que", "und" and "les" are function words in a Portuguese, German or French post; "war"
    and "die" are not in an English one."""
    if not lang:
        return STOP_WORDS
    code = lang.replace("_", "-").split("-", 1)[0].lower()
    code = _LANGUAGE_ALIASES.get(code, code)
    return _stop_words_of(code) if code != "en" and code in LANGUAGE_MAPPING else STOP_WORDS


@cache  # (one entry per language the package has a list for)
def _stop_words_of(code: str) -> frozenset[str]:
    own = (w.lower().replace("\u2019", "'") for w in get_stop_words(code))
    return STOP_WORDS | frozenset(own)


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
