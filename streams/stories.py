"""What makes a run of bursts one story, and what a reader is told about it. Pure logic.

The :class:`~streams.alertbook.AlertBook` keeps one story per real-world event: a burst
joins a story (open, or resolved not longer than a horizon ago) that holds its key, whose
posts it shares, whose links or authors its posts carry, or whose words it uses (a cosine
over term counts: the story's running centroid against the burst's posts). This module
holds the pieces that need no book: the similarity, the links in a post, the story's
headline, and the throttle that decides which versions go to the sinks and says what
changed since the previous delivered one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from models.text import _CJK, STOP_WORDS
from models.text import terms as content_terms
from seismo.contracts import Changes, Severity, Stance, StanceShift
from streams import _storycore, core

_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
# a link whose host is plain (ASCII letters, digits, dots, dashes): it has one, no need to
# parse it (most links; ``urlsplit`` is not remembered past its last 128 URLs)
_PLAIN_HOST = re.compile(r"https?://[A-Za-z0-9.-]+(?:[/?#]|\Z)")
_LEAD = re.compile(r"^(?:(?:rt|via)\b:?\s*)?(?:@\w+:?\s*)+", re.IGNORECASE)
_MENTION_RT = re.compile(r"\bRT\s+@\w+:?\s*")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")  # a letter of any script, then word characters
HEADLINE_CHARS = 110
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")


def links_in(text: str, own: str | None = None) -> list[str]:
    """The URLs a post's text shares, in order, without trailing punctuation and without
    the post's own address ``own``."""
    out: list[str] = []
    if "://" not in text:  # (most posts: no URL can match)
        return out
    for m in _URL.findall(text):
        url = m.rstrip(").,;:!?…]")
        if url == own or url in out:
            continue
        if _PLAIN_HOST.match(url) or urlsplit(url).hostname:
            out.append(url)
    return out


@lru_cache(maxsize=8192)
def domain_of(url: str) -> str:
    """A URL's host, lower-case, without ``www.`` (remembered: a story lists its links again
    at every version)."""
    return (urlsplit(url).hostname or "").lower().removeprefix("www.")


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Cosine of two sparse term-count vectors (sublinear: log1p of each count). The
    compiled twin is ``streams._storycore.cosine``."""
    if len(a) > len(b):
        a, b = b, a
    dot = sum(math.log1p(x) * math.log1p(b[k]) for k, x in a.items() if k in b)
    if dot == 0.0:
        return 0.0
    na = math.sqrt(sum(math.log1p(x) ** 2 for x in a.values()))
    nb = math.sqrt(sum(math.log1p(x) ** 2 for x in b.values()))
    return dot / (na * nb)


def most_common(counts: Mapping[str, int], n: int) -> list[str]:
    """The names of the ``n`` largest counts, most first, ties by name (never by insertion
    order)."""
    # (two stable sorts, the first of the names alone, which compare faster than pairs)
    return sorted(sorted(counts), key=counts.__getitem__, reverse=True)[:n]


def prune(counts: Counter[str], keep: int) -> None:
    """Bound a term counter: past twice ``keep`` entries, keep the ``keep`` largest (ties
    by name, so the result never depends on insertion order), most first."""
    if len(counts) > 2 * keep:
        kept = {name: counts[name] for name in most_common(counts, keep)}
        counts.clear()
        counts.update(kept)


def clean_text(text: str) -> str:
    """A post's text as a headline: no retweet prefix, leading mentions or links, one line,
    at most ``HEADLINE_CHARS`` characters (cut at a word, with an ellipsis)."""
    t = _URL.sub(" ", text)
    t = _MENTION_RT.sub(" ", t)
    t = _SPACE.sub(" ", t).strip()
    t = _LEAD.sub("", t).strip(" :-|")
    if len(t) > HEADLINE_CHARS:
        cut = t[: HEADLINE_CHARS - 1]
        t = (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:-") + "…"
    return t


@lru_cache(maxsize=8192)
def headline_text(text: str) -> str | None:
    """A post's text cleaned for a headline, or None when it is not :func:`readable`
    (a pure function of the text, remembered: a story asks again at every version)."""
    cleaned = clean_text(text)
    return cleaned if readable(cleaned) else None


def readable(text: str) -> bool:
    """At least three words, two of them content words (not stop words or contractions);
    or, in a text with Chinese, Japanese or Korean words (not spaced, or with their
    particles), three distinct content words as the classifier reads them
    (:func:`models.text.terms`: their character bigrams)."""
    ws = _WORD.findall(text)
    content = [w for w in ws if len(w) >= 3 and w.lower() not in STOP_WORDS and "'" not in w]
    if len(ws) >= 3 and len(content) >= 2:
        return True
    if _CJK.search(text) is None:
        return False
    return sum(not t.startswith("domain:") for t in content_terms(text, limit=3)) >= 3


def phrase(terms: Sequence[str]) -> str | None:
    """A multi-word name from leading terms: the first phrase of content words, else the
    first three content terms joined."""

    def ok(w: str) -> bool:
        return len(w) >= 3 and w not in STOP_WORDS and "'" not in w and "\u2019" not in w

    for t in terms:
        parts = t.split()
        if len(parts) >= 2 and all(ok(p) for p in parts):
            return t
    words = [t for t in terms if ok(t)]
    return " · ".join(words[:3]) if len(words) >= 2 else None


def centrality(terms: Sequence[tuple[str, ...]], weights: Mapping[str, float]) -> list[float]:
    """How central each post is to a story whose terms weigh ``weights`` (the story's term
    counts, sublinear): per post (its ``terms``), the sum of its terms' weights over the
    square root of its number of terms, so a long post is not central merely by being long.
    The compiled twin is ``streams._storycore.centrality``."""
    out = []
    for post in terms:
        if not post:
            out.append(0.0)
            continue
        total = 0.0
        for term in post:
            total += weights.get(term, 0.0)
        out.append(total / math.sqrt(len(post)))
    return out


def centrality_of_counts(
    terms: Sequence[tuple[str, ...]], counts: Mapping[str, int]
) -> list[float]:
    """:func:`centrality` weighed by a story's term ``counts`` (its posts included) taken
    sublinearly and leaving the post out: a term weighs ``log1p`` of its count in the
    story's *other* posts (count - 1), so a post is central for what it shares with them
    and its own words weigh 0: with :func:`centrality`'s square root of the post's length,
    the cosine of the post to the others' centroid (Radev et al., "Centroid-based
    summarization of multiple documents", 2004), up to a factor the same for every post.
    Taken where a post uses a term instead of for every counted term; the compiled twin is
    ``streams._storycore.centrality_of_counts``."""
    return centrality(terms, {t: math.log1p(max(n - 1, 0)) for t, n in counts.items()})


def headline_order(
    weights: Sequence[float], originals: Sequence[bool], ts: Sequence[float]
) -> list[int]:
    """The candidates' positions in the order a headline is chosen from: the most central
    first (a copy weighing 0.8 of an original, :func:`_rank`), then the oldest; equals in
    their given order. The compiled twin is ``streams._storycore.headline_order``."""
    ranks = [_rank(w, o, t) for w, o, t in zip(weights, originals, ts, strict=True)]
    return sorted(range(len(ranks)), key=ranks.__getitem__, reverse=True)


def _rank(weight: float, original: bool, ts: float) -> tuple[float, float]:
    return weight * (1.0 if original else 0.8), -ts


def headline(
    texts: list[str],
    weights: list[float],
    originals: list[bool],
    ts: list[float],
    terms: Sequence[str],
    fallback: str,
) -> str:
    """The most central readable original post (cleaned), else a phrase of the story's
    leading terms, else ``fallback`` (its opening key's label). Per candidate post its
    text, its weight (how central: its terms' weight in the story), whether it is the first
    of its near-duplicate cluster, and its time: the best rank (:func:`_rank`), then the
    greatest cleaned text. Texts are cleaned best first (:func:`headline_order`), until the
    first readable one and those ranked alike: a story's other posts are never cleaned."""
    order = headline_order if core.PURE_PYTHON else _storycore.headline_order
    best: tuple[tuple[float, float], str] | None = None
    for i in order(weights, originals, ts):
        rank = _rank(weights[i], originals[i], ts[i])
        if best is not None and rank != best[0]:
            break
        text = headline_text(texts[i])
        if text is not None and (best is None or text > best[1]):
            best = (rank, text)
    if best is not None:
        return best[1]
    return phrase(terms) or fallback


@dataclass(frozen=True)
class Sent:
    """A story as its previous delivered version told it."""

    version: int
    ts: float
    severity: int
    posts: int
    independent: int
    sources: frozenset[str]
    links: frozenset[str]
    claims: frozenset[str]
    stances: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Throttle:
    update_seconds: float = 1800.0
    stance_share: float = 0.2  # a stance's share moving this much is a shift...
    stance_posts: int = 5  # ...among at least this many posts with a stance
    growth: float = 0.25  # a plain update needs this many more independent posts (share)
    min_growth: int = 3  # (and at least this many)

    def shifts(self, before: Mapping[str, int], after: Mapping[str, int]) -> list[StanceShift]:
        n0, n1 = sum(before.values()), sum(after.values())
        if n1 < self.stance_posts:
            return []
        out = []
        for s in ("support", "deny", "query", "comment"):
            b = before.get(s, 0) / n0 if n0 else 0.0
            a = after.get(s, 0) / n1
            if abs(a - b) >= self.stance_share:
                out.append(StanceShift(stance=_stance(s), before=round(b, 3), after=round(a, 3)))
        return out

    def decide(
        self, prev: Sent | None, now: Sent, status: str, reopened: bool
    ) -> tuple[bool, str | None, Changes | None]:
        """Whether the version ``now`` goes to the sinks, why, and what changed since
        ``prev`` (the previous delivered version; None before the first)."""
        if prev is None:
            return True, "open", None
        changes = Changes(
            since_version=prev.version,
            new_posts=max(0, now.posts - prev.posts),
            new_independent_posts=max(0, now.independent - prev.independent),
            new_sources=sorted(now.sources - prev.sources),
            new_links=sorted(now.links - prev.links)[:10],
            new_claims=sorted(now.claims - prev.claims),
            stance_shift=self.shifts(dict(prev.stances), dict(now.stances)),
            severity_from=SEVERITIES[prev.severity] if now.severity != prev.severity else None,
        )
        if status == "resolved":
            return True, "resolved", changes
        if reopened:
            return True, "reopened", changes
        if now.severity > prev.severity:
            return True, "severity", changes
        if changes.new_claims:
            return True, "claim", changes
        if changes.stance_shift:
            return True, "stance", changes
        grown = changes.new_independent_posts >= max(
            self.min_growth, math.ceil(self.growth * prev.independent)
        )
        if now.ts - prev.ts >= self.update_seconds and (grown or changes.new_sources):
            return True, "update", changes
        return False, None, changes


def _stance(s: str) -> Stance:
    assert s in ("support", "deny", "query", "comment")
    return s  # type: ignore[return-value]
