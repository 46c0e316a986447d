"""The pipeline's pure steps, composed: post -> classified post -> signals -> alerts.

The Faust agents call these same functions one step each; :class:`OfflinePipeline` runs
them in one process (evaluation, tests) with the same logic and in-memory state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from models.classifier import Classifier
from seismo.config import Settings
from seismo.contracts import Alert, ClassifiedPost, Post, Signal
from streams.detector import BurstDetector, DetectorParams, KeyState


def detector_params(settings: Settings) -> DetectorParams:
    return DetectorParams(
        bucket_seconds=settings.bucket_seconds,
        halflife_buckets=settings.baseline_halflife_buckets,
        floor=settings.baseline_floor,
        min_count=settings.min_count,
        min_score=settings.min_score,
        cooldown_seconds=settings.cooldown_seconds,
        warmup_seconds=settings.warmup_seconds,
        evidence_size=settings.evidence_size,
    )


def signals_for(cp: ClassifiedPost, text_chars: int = 500) -> list[Signal]:
    """One signal per burst key the post counts toward."""
    post = cp.post
    dossier = cp.dossiers[0] if cp.dossiers else None
    common: dict[str, Any] = {
        "post_id": post.key,
        "source": post.source,
        "created_at": post.created_at,
        "text": post.text[:text_chars],
        "author": post.author,
        "url": post.url,
        "terms": cp.terms,
        "ingested_at": post.ingested_at,
    }
    out = [
        Signal(key=f"term:{t}", kind="term", label=t, dossier=dossier, **common) for t in cp.terms
    ]
    out += [
        Signal(key=f"dossier:{d}", kind="dossier", label=d, dossier=d, **common)
        for d in cp.dossiers
    ]
    for hit in cp.claims:
        out.append(
            Signal(
                key=f"claim:{hit.claim}",
                kind="claim",
                label=hit.claim,
                dossier=hit.dossier,
                claim=hit.claim,
                stance=hit.stance,
                **common,
            )
        )
        out.append(
            Signal(
                key=f"claim:{hit.claim}:stance:{hit.stance}",
                kind="stance",
                label=f"{hit.claim} ({hit.stance})",
                dossier=hit.dossier,
                claim=hit.claim,
                stance=hit.stance,
                **common,
            )
        )
    return out


class OfflinePipeline:
    """All stages in one process with in-memory state; same logic as the agents."""

    def __init__(
        self, classifier: Classifier, detector: BurstDetector, now: datetime | None = None
    ) -> None:
        self.classifier = classifier
        self.detector = detector
        self.states: dict[str, KeyState] = {}
        self.stream_start: float | None = None
        self._now = now

    def feed(self, post: Post) -> list[Alert]:
        alerts = []
        if self.stream_start is None:
            self.stream_start = post.created_at.timestamp()
        for sig in signals_for(self.classifier.classify(post)):
            st = self.states.get(sig.key)
            if st is None:
                st = self.states[sig.key] = KeyState()
            alert = self.detector.observe(st, sig, stream_start=self.stream_start, now=self._now)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def run(self, posts: Iterable[Post]) -> Iterator[Alert]:
        for post in posts:
            yield from self.feed(post)
