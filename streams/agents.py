"""The worker's agents. Thin: decode, call the pure logic, send.

posts.raw.v1 --ingest--> posts.classified.v1 + signals.v1 (keyed by burst key)
signals.v1   --detect--> alerts.v1 (keyed by alert id)   [table: burst state per key]
alerts.v1    --deliver-> webhooks / JSONL file           [table: delivered alert ids]
any failure  ----------> dlq.v1 with the reason, counted; the stream goes on
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import faust
from faust.streams import _current_event  # see _enter_event
from faust.types import EventT

from models.classifier import Classifier
from seismo.config import Settings
from seismo.contracts import (
    ALERTS,
    DLQ,
    POSTS_CLASSIFIED,
    POSTS_RAW,
    SIGNALS,
    Alert,
    ClassifiedPost,
    Post,
    Signal,
    dead_letter,
    decode,
)
from seismo.errors import ContractError
from seismo.metrics import Metrics
from streams.delivery import AlertSinks
from streams.detector import BurstDetector, KeyState
from streams.pipeline import signals_for

log = logging.getLogger(__name__)


@dataclass
class Stages:
    """Handles to the agents, for tests and the CLI."""

    ingest: Any
    detect: Any
    deliver: Any


def _since(ingested_at: datetime | None) -> float | None:
    if ingested_at is None:
        return None
    return max(0.0, time.time() - ingested_at.timestamp())


def _enter_event(event: EventT[Any]) -> None:
    """Make ``event`` the current event of this task, as ``stream.events()`` does.

    ``take_events`` consumes in a background task, so table writes made while handling a
    batch would otherwise see no current event (Faust picks the changelog partition from
    it). Only this task's context variable is set; the stream's own attribute is left alone.
    """
    _current_event.set(weakref.ref(event))


def register(
    app: faust.App,
    settings: Settings,
    metrics: Metrics,
    classifier: Classifier,
    detector: BurstDetector,
    sinks: AlertSinks,
) -> Stages:
    parts = settings.topic_partitions
    raw_t = app.topic(settings.topic(POSTS_RAW), partitions=settings.partitions(POSTS_RAW))
    classified_t = app.topic(settings.topic(POSTS_CLASSIFIED), partitions=parts)
    signals_t = app.topic(settings.topic(SIGNALS), partitions=parts)
    alerts_t = app.topic(settings.topic(ALERTS), partitions=parts)
    dlq_t = app.topic(settings.topic(DLQ), partitions=parts)

    # JSON values under str keys; a table's changelog partition is the source event's.
    burst_state = app.Table("burst-state", partitions=parts)
    delivered = app.Table("delivered", partitions=parts)
    # post key -> offset it was first seen at (raw posts are keyed by post key, so this
    # table is co-partitioned with posts.raw.v1)
    seen_posts = app.Table("seen-posts", partitions=settings.partitions(POSTS_RAW))

    async def to_dlq(stage: str, reason: str, event: EventT[Any]) -> None:
        msg = event.message
        dl = dead_letter(
            stage,
            reason,
            msg.topic,
            msg.value,
            key=msg.key,
            partition=msg.partition,
            offset=msg.offset,
        )
        await dlq_t.send(key=msg.key, value=dl.to_bytes())
        metrics.dlq.labels(stage).inc()
        log.warning(
            "%s: record %s[%s]@%s to DLQ: %s", stage, msg.topic, msg.partition, msg.offset, reason
        )

    async def guarded(
        stage: str, event: EventT[Any], handle: Callable[[EventT[Any]], Awaitable[None]]
    ) -> None:
        """Run one record's handler; a bad record goes to the DLQ, never stops the stream."""
        try:
            await handle(event)
        except ContractError as exc:
            await to_dlq(stage, exc.reason, event)
        except Exception as exc:
            log.exception(
                "%s failed on %s[%s]@%s",
                stage,
                event.message.topic,
                event.message.partition,
                event.message.offset,
            )
            await to_dlq(stage, f"{type(exc).__name__}: {exc}", event)

    def admit(event: EventT[Any]) -> Post | None:
        """Decode and dedupe one raw record; None = a copy already seen, skip it."""
        post = decode(Post, event.value)
        metrics.posts_in.labels("ingest", post.source).inc()
        # The same post at another offset is a copy (a replay re-run, a connector resending):
        # skip it. At the same offset it is a retry after a restart: process it again, since
        # its outputs may not have been written; downstream recognises what it already has.
        first_offset = seen_posts.get(post.key)
        if first_offset is not None and first_offset != event.message.offset:
            metrics.duplicates.labels("ingest").inc()
            return None
        seen_posts[post.key] = event.message.offset
        return post

    async def ingest_one(event: EventT[Any]) -> None:
        post = admit(event)
        if post is not None:
            await ingest_emit(classifier.classify(post))

    async def ingest_batch(events: list[EventT[Any]]) -> None:
        """Admit each record, classify the admitted posts in one model call off the event
        loop, then emit each; every step is guarded per record, so a bad record goes to the
        DLQ alone and a failed batch call falls back to one by one."""
        admitted: list[tuple[EventT[Any], Post]] = []

        async def admit_into_batch(event: EventT[Any]) -> None:
            post = admit(event)
            if post is not None:
                admitted.append((event, post))

        for event in events:
            _enter_event(event)
            await guarded("ingest", event, admit_into_batch)
        if not admitted:
            return
        posts = [post for _, post in admitted]
        classified: list[ClassifiedPost | None]
        try:
            classified = list(await asyncio.to_thread(classifier.classify_batch, posts))
        except Exception:
            log.exception("ingest: batch of %d failed to classify; retrying one by one", len(posts))
            classified = [None] * len(posts)
        for (event, post), cp in zip(admitted, classified, strict=True):
            _enter_event(event)

            async def emit(
                _: EventT[Any], post: Post = post, cp: ClassifiedPost | None = cp
            ) -> None:
                await ingest_emit(cp if cp is not None else classifier.classify(post))

            await guarded("ingest", event, emit)

    async def ingest_emit(cp: ClassifiedPost) -> None:
        post = cp.post
        ts = post.created_at.timestamp()
        await classified_t.send(key=post.key.encode(), value=cp.to_bytes(), timestamp=ts)
        for sig in signals_for(cp):
            await signals_t.send(key=sig.key.encode(), value=sig.to_bytes(), timestamp=ts)
            metrics.signals.labels(sig.kind).inc()
        metrics.posts_out.labels("ingest", post.source).inc()
        lat = _since(post.ingested_at)
        if lat is not None:
            metrics.latency.labels("ingest").observe(lat)

    async def detect_one(event: EventT[Any]) -> None:
        sig = decode(Signal, event.value)
        st = KeyState.from_dict(burst_state.get(sig.key))
        offset = event.message.offset
        if offset <= st.offset:  # redelivered after a restart: already counted
            metrics.duplicates.labels("detect").inc()
            if offset == st.alert_offset and st.alert_json is not None:
                # the state was saved but the alert may have died in the producer buffer:
                # send it again (same id, so every consumer drops a repeat)
                again = decode(Alert, st.alert_json)
                await alerts_t.send(
                    key=again.id.encode(),
                    value=st.alert_json.encode(),
                    timestamp=again.raised_at.timestamp(),
                )
            return
        clock_key = f"__stream_start__:{event.message.partition}"
        stream_start = burst_state.get(clock_key)
        if stream_start is None:
            stream_start = burst_state[clock_key] = sig.created_at.timestamp()
        alert = detector.observe(st, sig, stream_start=stream_start)
        st.offset = offset
        if alert is not None:
            st.alert_offset = offset
            st.alert_json = alert.model_dump_json(exclude_none=True)
        burst_state[sig.key] = st.to_dict()
        if alert is not None:
            metrics.alerts.labels(alert.kind).inc()
            log.info(
                "alert %s %s observed=%d expected=%.2f score=%.1f at %s",
                alert.id,
                alert.key,
                alert.observed,
                alert.expected,
                alert.score,
                alert.raised_at.isoformat(),
            )
            await alerts_t.send(
                key=alert.id.encode(),
                value=alert.to_bytes(),
                timestamp=alert.raised_at.timestamp(),
            )
        lat = _since(sig.ingested_at)
        if lat is not None:
            metrics.latency.labels("detect").observe(lat)

    async def deliver_one(event: EventT[Any]) -> None:
        alert = decode(Alert, event.value)
        done = delivered.get(alert.id)
        if done is not None and done >= alert.version:
            metrics.duplicates.labels("deliver").inc()
            return
        for reason in await sinks.deliver(alert):
            await to_dlq("deliver", reason, event)
        delivered[alert.id] = alert.version

    @app.agent(raw_t, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        if settings.classify_batch_size <= 1:  # one record at a time, classified inline
            async for event in stream.events():
                await guarded("ingest", event, ingest_one)
            return
        # dynamic batching (opt-in, classify_batch_size > 1): a batch closes when full or
        # after the wait, whichever is first; its events are acked after the batch is done.
        wait = settings.classify_batch_wait_ms / 1000.0
        batches = stream.take_events(  # type: ignore[attr-defined]  # in faust, not in StreamT
            settings.classify_batch_size, within=wait
        )
        async for events in batches:
            await ingest_batch(list(events))

    @app.agent(signals_t, name="detect")
    async def detect(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await guarded("detect", event, detect_one)

    @app.agent(alerts_t, name="deliver")
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await guarded("deliver", event, deliver_one)

    return Stages(ingest=ingest, detect=detect, deliver=deliver)
