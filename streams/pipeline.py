"""The pipeline's pure steps, composed: post -> classified post -> alerts.

The Faust agents call these same functions one step each; :class:`OfflinePipeline` runs
them in one process (evaluation, tests, benchmarks) with the same logic and state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from models.classifier import Classifier
from seismo.config import Settings
from seismo.contracts import Alert, ClassifiedPost, Post, Signal
from streams.detector import BurstEngine, DetectorParams, tracked_keys


def detector_params(settings: Settings) -> DetectorParams:
    return settings.detector.params()


class OfflinePipeline:
    """All stages in one process with in-memory state; same logic as the agents."""

    def __init__(
        self,
        classifier: Classifier,
        params: DetectorParams,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.classifier = classifier
        self.engine = BurstEngine(params, clock or (lambda: datetime.now(UTC)))

    def feed(self, post: Post) -> list[Alert]:
        return self.engine.observe(self.classifier.classify(post))

    def feed_many(self, posts: Iterable[Post]) -> list[Alert]:
        """:meth:`feed` each post in order (the same alerts; the detector counts the batch
        in one pass, see :meth:`BurstEngine.observe_many`)."""
        return self.engine.observe_many([self.classifier.classify(p) for p in posts])

    def run(self, posts: Iterable[Post]) -> Iterator[Alert]:
        for post in posts:
            yield from self.feed(post)


def signals_for(cp: ClassifiedPost, text_chars: int = 500) -> list[Signal]:
    """One ``signals.v1`` observation per burst key the post counts toward."""
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
    for key, kind, label, claim, dossier_id in tracked_keys(cp):
        stance = key.rsplit(":", 1)[-1] if kind == "stance" else None
        out.append(
            Signal(
                key=key,
                kind=kind,
                label=label,
                dossier=dossier_id,
                claim=claim,
                stance=stance,  # type: ignore[arg-type]
                **common,
            )
        )
    return out
