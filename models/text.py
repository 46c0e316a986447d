"""Text features shared by the classifiers and the burst detector. Pure, no I/O."""

from __future__ import annotations

import re
from functools import cache
from itertools import chain
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


# Chinese, Japanese and Korean characters: Han (with the marks U+3005-U+3007), Hangul
# syllables, Katakana (full and half width) and Hiragana
_HAN = "\u3005-\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_HANGUL = "\uac00-\ud7a3"
_KATAKANA = "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_CJK_CHARS = f"{_HAN}{_HANGUL}{_KATAKANA}\u3040-\u309f"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_CJK_RUNS = re.compile(
    f"([{_HAN}]+|[{_HANGUL}]+)|([{_KATAKANA}]+)|[\u3040-\u309f]+|([^{_CJK_CHARS}]+)"
)


def cjk_pieces(tok: str) -> list[str]:
    """A token with Chinese, Japanese or Korean characters as the tokens that stand for it.

    Chinese and Japanese put no space between words, so a token is a clause; a Korean
    token is a word with its particles ("지진이", "지진으로"). It stands for the overlapping
    character bigrams of each run of Han characters or Hangul syllables ("緊急地震速報":
    緊急 急地 地震 震速 速報: a word of two characters or more shares a bigram with every
    text that holds it, as in Lucene's CJK bigram indexing), each run of two Katakana or
    more (loanwords and names, "ツイッター"), and each run of other characters inside it, a
    token of its own ("iphone16発売": iphone16, 発売); Hiragana runs are mostly grammar
    (particles, endings) and stand for nothing. A hashtag stands for itself too ("#地震").
    Empty tokens go around each piece: the pieces make no word pairs.
    """
    tag = tok[0] == "#"
    out = ["", tok] if tag else []
    for m in _CJK_RUNS.finditer(tok[1:] if tag else tok):
        han_or_hangul, kana, other = m.groups()
        if han_or_hangul:
            run = han_or_hangul
            out += chain.from_iterable(("", run[k : k + 2]) for k in range(len(run) - 1))
        elif kana and len(kana) >= 2:
            out += ("", kana)
        elif other:
            out += ("", other)
    out.append("")
    return out


def word_of(tok: str) -> str:
    """A token's word: its "#" and the characters "'.-_%" around it stripped, then a final
    "'s" cut ("#storm" -> "storm", "o'brien's" -> "o'brien")."""
    word = tok.lstrip("#").strip("'.-_%")
    return word[:-2] if word.endswith("'s") else word


def wordlike(word: str) -> bool:
    """Three characters or more (two of Chinese, Japanese or Korean: one of
    :func:`cjk_pieces`), and not a number (of any script)."""
    n = len(word)
    return (n >= 3 or (n == 2 and _CJK.match(word) is not None)) and not (
        word.replace(".", "").isdigit()
    )


def tokens_and_pieces(text: str) -> list[str]:
    """:func:`tokens`, each Chinese, Japanese or Korean one replaced by its :func:`cjk_pieces`
    (empty tokens included)."""
    toks = tokens(text)
    if text.isascii() or not _CJK.search(text):
        return toks
    return [p for t in toks for p in (cjk_pieces(t) if _CJK.search(t) else (t,))]


def match_tokens(text: str) -> list[str]:
    """The tokens a keyword is matched against: :func:`tokens_and_pieces` without the empty
    ones ("地震" is found in "東京で地震があった")."""
    return list(filter(None, tokens_and_pieces(text)))


def normalize_phrase(phrase: str) -> str:
    """A keyword/phrase in the form :func:`contains_phrase` matches against."""
    return " ".join(match_tokens(phrase))


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

    Words (:func:`wordlike`, not stop words; Chinese, Japanese and Korean as their
    :func:`cjk_pieces`), hashtags folded to their word (``#tornado`` counts as ``tornado``)
    and linked domains (``domain:example.com``).
    """
    seen: dict[str, None] = {}
    for tok in match_tokens(text):
        word = word_of(tok)
        if not wordlike(word) or word in STOP_WORDS:
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
