"""First-stage classifier: watchlist keyword/claim matching plus a rule-based stance cue.

Cheap and explicit; it decides which dossiers and claims a post touches. Later stages
(embedding models) refine it. Pure: no Faust, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from models.text import contains_phrase, match_tokens, normalize_phrase, terms
from seismo.contracts import ClaimHit, ClassifiedPost, Post, Stance
from seismo.watchlist import Watchlist

_DENY = re.compile(
    r"\b(fake|false|hoax|debunk\w*|not true|untrue|isn'?t true|no evidence|misleading|"
    r"myth|wrong|lie|lies|lying|denie[sd]|deny|rumou?r)\b",
    re.IGNORECASE,
)
_SUPPORT = re.compile(
    r"\b(confirm\w*|verified|official(ly)?|indeed|proves?|true|it'?s real|according to)\b",
    re.IGNORECASE,
)
_QUERY = re.compile(r"\?|\b(is it true|really|source\??|any proof|can anyone confirm)\b", re.I)


def rule_stance(text: str) -> Stance:
    """A transparent stance cue: deny > query > support > comment."""
    if _DENY.search(text):
        return "deny"
    if _QUERY.search(text):
        return "query"
    if _SUPPORT.search(text):
        return "support"
    return "comment"


@dataclass(frozen=True)
class _CompiledClaim:
    id: str
    dossier: str | None
    keywords: tuple[str, ...]
    min_keywords: int


class KeywordClassifier:
    """Maps a post to watchlist dossiers and claims by whole-word keyword matching."""

    name = "watchlist-v1"

    def __init__(self, watchlist: Watchlist, max_terms: int = 16) -> None:
        self.max_terms = max_terms
        self._dossiers = [
            (d.id, tuple(normalize_phrase(k) for k in d.keywords)) for d in watchlist.dossiers
        ]
        self._claims = [
            _CompiledClaim(
                c.id, c.dossier, tuple(normalize_phrase(k) for k in c.keywords), c.min_keywords
            )
            for c in watchlist.claims
        ]

    def classify_batch(self, posts: Sequence[Post]) -> list[ClassifiedPost]:
        return [self.classify(p) for p in posts]

    def classify(self, post: Post) -> ClassifiedPost:
        padded = " " + " ".join(match_tokens(post.text)) + " "
        # a possessive also matches its word ("alibaba's" hits "alibaba"), and hashtags
        # their bare word ("#deepseek" hits "deepseek")
        if "'s " in padded:
            padded = padded + padded.replace("'s ", " ")
        padded = padded + padded.replace(" #", " ")
        dossiers = [
            did for did, kws in self._dossiers if any(contains_phrase(padded, k) for k in kws)
        ]
        claims: list[ClaimHit] = []
        stance: Stance | None = None
        for c in self._claims:
            hits = sum(1 for k in c.keywords if contains_phrase(padded, k))
            if hits >= c.min_keywords:
                stance = stance or rule_stance(post.text)
                claims.append(
                    ClaimHit(
                        claim=c.id,
                        dossier=c.dossier,
                        stance=stance,
                        score=round(hits / len(c.keywords), 3),
                    )
                )
                if c.dossier and c.dossier not in dossiers:
                    dossiers.append(c.dossier)
        return ClassifiedPost(
            post=post,
            dossiers=dossiers,
            claims=claims,
            terms=terms(post.text, self.max_terms),
            classifier=self.name,
        )
