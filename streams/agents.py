"""The worker's agents. Thin: decode, call the pure logic, send.

posts.raw.v1        --ingest--> posts.classified.v1 (same partitioning: order kept)
posts.classified.v1 --detect--> alerts.v1 (keyed by alert id, one record per version)
                                [table: detector checkpoints per partition]
alerts.v1           --deliver-> one lane per sink: webhooks, chat, JSONL file
                                [table: alert versions delivered per sink]
any failure         ----------> dlq.v1 with the reason, counted; the stream goes on
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
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
    ALERTS_DLQ,
    DLQ,
    POSTS_CLASSIFIED,
    POSTS_RAW,
    Alert,
    ClassifiedPost,
    Post,
    dead_letter,
    decode,
)
from seismo.errors import ContractError
from seismo.kafka import bootstrap_of, read_range
from seismo.metrics import Metrics
from streams.checkpoint import Checkpoints
from streams.delivery import AlertSinks, DeliveryFailure, Handoff, failed_delivery
from streams.detector import BurstEngine, DetectorParams, tracked_keys

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


def _seen_at(value: Any) -> tuple[int, int]:
    """(partition, offset) of a ``seen-posts`` value (a bare offset before 2026-11-23)."""
    return (int(value[0]), int(value[1])) if isinstance(value, list) else (0, int(value))


def _older(value: Any, partition: int, cutoff: int) -> bool:
    p, offset = _seen_at(value)
    return p == partition and offset < cutoff


def _failure(exc: BaseException) -> str:
    """The DLQ reason for a record whose handler raised ``exc``."""
    return f"{type(exc).__name__}: {exc}"


async def _batches(
    stream: faust.StreamT[bytes], size: int, wait_ms: float
) -> AsyncIterator[list[EventT[Any]]]:
    """The stream's events in batches: one closes when it holds ``size`` events or
    ``wait_ms`` after it opened, whichever is first. Faust acks a batch's events when the
    next one is asked for, i.e. after the caller is done with them."""
    takes = stream.take_events(  # type: ignore[attr-defined]  # in faust, not in StreamT
        size, within=wait_ms / 1000.0
    )
    async for events in takes:
        yield list(events)


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
    params: DetectorParams,
    sinks: AlertSinks,
) -> Stages:
    parts = settings.topic_partitions
    raw_t = app.topic(settings.topic(POSTS_RAW), partitions=settings.partitions(POSTS_RAW))
    classified_parts = settings.partitions(POSTS_CLASSIFIED)
    classified_t = app.topic(settings.topic(POSTS_CLASSIFIED), partitions=classified_parts)
    alerts_t = app.topic(settings.topic(ALERTS), partitions=parts)
    dlq_t = app.topic(settings.topic(DLQ), partitions=parts)
    alerts_dlq_t = app.topic(settings.topic(ALERTS_DLQ), partitions=parts)

    # JSON values under str keys; a table's changelog partition is the source event's.
    # detector checkpoints, co-partitioned with posts.classified.v1 (streams/checkpoint.py)
    checkpoints = Checkpoints(app.Table("detector-checkpoints", partitions=classified_parts))
    engines: dict[int, BurstEngine] = {}
    saved_at: dict[int, float] = {}
    delivered = app.Table("delivered", partitions=parts)
    # post key -> [raw partition, offset it was first seen at] (raw posts are keyed by post
    # key, so this table is co-partitioned with posts.raw.v1); bounded by prune_seen
    seen_posts = app.Table("seen-posts", partitions=settings.partitions(POSTS_RAW))
    prune_every = max(1, settings.dedupe_posts // 10)

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
            await to_dlq(stage, _failure(exc), event)

    def admit(event: EventT[Any]) -> Post | None:
        """Decode and dedupe one raw record; None = a copy already seen, skip it."""
        post = decode(Post, event.value)
        metrics.posts_in.labels("ingest", metrics.source(post.source)).inc()
        # The same post at another offset is a copy (a replay re-run, a connector resending):
        # skip it. At the same offset it is a retry after a restart: process it again, since
        # its outputs may not have been written; downstream recognises what it already has.
        msg = event.message
        first = seen_posts.get(post.key)
        if first is not None and _seen_at(first) != (msg.partition, msg.offset):
            metrics.duplicates.labels("ingest").inc()
            return None
        seen_posts[post.key] = [msg.partition, msg.offset]
        if msg.offset % prune_every == 0:
            prune_seen(msg.partition, msg.offset)
        return post

    def prune_seen(partition: int, offset: int) -> None:
        """Forget the posts of ``partition`` first seen more than ``dedupe_posts`` offsets
        ago (only this partition's: a delete goes to the current event's changelog
        partition). Runs every tenth of the window, so the table stays under 1.1x of it."""
        cutoff = offset - settings.dedupe_posts
        old = [k for k, v in seen_posts.items() if _older(v, partition, cutoff)]
        for key in old:
            del seen_posts[key]
        if old:
            log.info("ingest: forgot %d post keys of partition %d", len(old), partition)

    def classify(posts: list[Post]) -> list[ClassifiedPost]:
        """One classifier call, timed and counted (the classify_* series)."""
        t0 = time.perf_counter()
        out = classifier.classify_batch(posts)
        metrics.classify_latency.labels(classifier.name).observe(time.perf_counter() - t0)
        metrics.classify_batch.labels(classifier.name).observe(len(posts))
        return out

    async def ingest_one(event: EventT[Any]) -> None:
        post = admit(event)
        if post is not None:
            await ingest_emit(classify([post])[0])

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
            classified = list(await asyncio.to_thread(classify, posts))
        except Exception:
            log.exception("ingest: batch of %d failed to classify; retrying one by one", len(posts))
            classified = [None] * len(posts)
        for (event, post), cp in zip(admitted, classified, strict=True):
            _enter_event(event)

            async def emit(
                _: EventT[Any], post: Post = post, cp: ClassifiedPost | None = cp
            ) -> None:
                await ingest_emit(cp if cp is not None else classify([post])[0])

            await guarded("ingest", event, emit)

    async def ingest_emit(cp: ClassifiedPost) -> None:
        post = cp.post
        metrics.classified(cp)
        ts = post.created_at.timestamp()
        await classified_t.send(key=post.key.encode(), value=cp.to_bytes(), timestamp=ts)
        metrics.posts_out.labels("ingest", metrics.source(post.source)).inc()
        metrics.stage_done("ingest", ts, _since(post.ingested_at))

    async def send_alerts(alerts: list[Alert]) -> None:
        for alert in alerts:
            metrics.alert(alert)
            log.info(
                "alert %s v%d %s %s %s score=%.1f at %s",
                alert.id,
                alert.version,
                alert.status,
                alert.severity,
                alert.key,
                alert.score,
                alert.raised_at.isoformat(),
            )
            await alerts_t.send(
                key=alert.id.encode(), value=alert.to_bytes(), timestamp=alert.raised_at.timestamp()
            )

    async def engine_for(partition: int, offset: int) -> BurstEngine:
        """The partition's detector, restored from its checkpoint and caught up to ``offset``.

        Records between the checkpoint and ``offset`` were processed before a restart but
        are not in the checkpoint: they are read again and replayed, and the alert versions
        they raise are sent again (same id and version: every consumer drops repeats).
        """
        engine = engines.get(partition)
        # none yet, or one left from before the partition moved to another worker and back
        if engine is None or checkpoints.offset(partition) > engine.offset:
            engine = checkpoints.load(partition) or BurstEngine(params)
            for alert in engine.book.current():
                metrics.alert_restored(alert)
            engines[partition] = engine
            saved_at[partition] = time.monotonic()
        if engine.offset + 1 < offset:
            gap = await read_range(
                bootstrap_of(settings),
                classified_t.get_topic_name(),
                partition,
                engine.offset + 1,
                offset,
            )
            log.info("detect: replaying %d records of partition %d", len(gap), partition)
            step = max(settings.detector.batch_size, 1)
            for i in range(0, len(gap), step):
                chunk = gap[i : i + step]
                posts: list[ClassifiedPost] = []
                for _, value in chunk:
                    with contextlib.suppress(ContractError):  # it went to the DLQ then
                        posts.append(decode(ClassifiedPost, value or b""))
                try:  # the same alerts as one record at a time (observe_many's contract)
                    alerts = engine.observe_many(posts)
                finally:  # part of a chunk may be counted when it raises: never again
                    engine.offset = chunk[-1][0]
                await send_alerts(alerts)
            engine.offset = offset - 1
        return engine

    async def detect_batch(events: list[EventT[Any]]) -> None:
        """Count a batch of classified records: per partition, the records not yet counted
        are decoded (a bad one goes to the DLQ alone) and observed in one ``observe_many``
        call, which gives the same alerts as one by one. Never raises: if the detector
        fails, the records it was given go to the DLQ with the reason."""
        by_partition: dict[int, list[EventT[Any]]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event)
        for partition, group in by_partition.items():
            await detect_partition(partition, group)

    async def detect_partition(partition: int, group: list[EventT[Any]]) -> None:
        try:
            engine = await engine_for(partition, group[0].message.offset)
        except Exception as exc:
            log.exception("detect: partition %d could not be restored", partition)
            for event in group:
                await to_dlq("detect", _failure(exc), event)
            return
        posts: list[tuple[EventT[Any], ClassifiedPost]] = []

        async def admit(event: EventT[Any]) -> None:
            if event.message.offset <= engine.offset:  # redelivered after a restart
                metrics.duplicates.labels("detect").inc()
                return
            cp = decode(ClassifiedPost, event.value)
            metrics.posts_in.labels("detect", metrics.source(cp.post.source)).inc()
            metrics.signals.labels("term").inc(len(cp.terms))
            for _, kind, *_ in tracked_keys(cp):
                metrics.signals.labels(kind).inc()
            posts.append((event, cp))

        for event in group:
            await guarded("detect", event, admit)
        await observe(engine, posts, group[-1])

    async def observe(
        engine: BurstEngine, posts: list[tuple[EventT[Any], ClassifiedPost]], last: EventT[Any]
    ) -> None:
        """Run the posts of one partition through its engine, send the alerts, checkpoint."""
        partition = last.message.partition
        repeats, too_late = engine.repeats, engine.too_late
        alerts: list[Alert] = []
        try:
            alerts = engine.observe_many(cp for _, cp in posts)
        except Exception as exc:
            log.exception("detect failed on %d records of partition %d", len(posts), partition)
            for event, _ in posts:
                await to_dlq("detect", _failure(exc), event)
        finally:
            engine.offset = max(engine.offset, last.message.offset)
        if engine.repeats > repeats:  # re-emitted by ingest after a crash: counted once
            metrics.duplicates.labels("detect").inc(engine.repeats - repeats)
        if engine.too_late > too_late:  # too far behind the detector's clock: not counted
            metrics.too_late.labels(str(partition)).inc(engine.too_late - too_late)
        await send_alerts(alerts)
        if time.monotonic() - saved_at[partition] >= settings.detector.checkpoint_seconds:
            # the alerts raised so far must be on the broker before a checkpoint says their
            # records are done: otherwise a crash could keep the checkpoint and lose them
            await app.producer.flush()
            _enter_event(last)  # the checkpoint goes to this partition's changelog
            size = checkpoints.save(partition, engine)
            metrics.detector_checkpoint_bytes.labels(str(partition)).set(size)
            metrics.detector_keys.set(sum(e.named_keys for e in engines.values()))
            saved_at[partition] = time.monotonic()
        for _, cp in posts[-1:]:
            post = cp.post
            metrics.stage_done("detect", post.created_at.timestamp(), _since(post.ingested_at))

    async def deliver_one(event: EventT[Any]) -> None:
        """Hand an alert version to the sinks' lanes; the record is acked when every lane is
        done with it (delivered, or parked on alerts.dlq.v1), so a crash before that
        delivers it again, to the sinks that have not recorded it."""
        alert = decode(Alert, event.value)
        raw = json.loads(event.value)  # all fields, also those this version does not know

        def record(key: str) -> None:
            _enter_event(event)  # the table write goes to this record's changelog partition
            delivered[key] = alert.version

        async def park(failure: DeliveryFailure) -> None:
            dead = failed_delivery(alert, raw, failure)
            await alerts_dlq_t.send(key=alert.id.encode(), value=dead.to_bytes())
            metrics.dlq.labels("deliver").inc()

        async def finished() -> None:
            held.discard(event.message)
            if event.ack():  # the last reference: the offset may now be committed
                msg = event.message
                app.sensors.on_message_out(msg.tp, msg.offset, msg)
            metrics.stage_done("deliver", alert.raised_at.timestamp(), None)

        if sinks.hand_off(Handoff(alert, raw, delivered.get, record, park, finished)):
            event.message.incref()  # not acked by the loop: finished() acks it
            held.add(event.message)
        else:
            metrics.duplicates.labels("deliver").inc()

    held: weakref.WeakSet[Any] = weakref.WeakSet()  # records the sink lanes still hold
    wait_empty = app._consumer_wait_empty

    async def let_go_then_wait_empty(consumer: Any, logger: Any) -> None:
        """A stop or a rebalance waits for every record in hand to be acked: first stop the
        sink lanes and let go of the records they hold, unacked. Not committed, they are read
        again (after the restart, or the rebalance's seek to the committed offsets) and go to
        the sinks that did not record them."""
        await sinks.close()
        consumer._unacked_messages.difference_update(held)
        held.clear()
        await wait_empty(consumer, logger)

    app._consumer_wait_empty = let_go_then_wait_empty  # type: ignore[method-assign]

    @app.agent(raw_t, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        if settings.classify_batch_size <= 1:  # one record at a time, classified inline
            async for event in stream.events():
                await guarded("ingest", event, ingest_one)
            return
        batches = _batches(stream, settings.classify_batch_size, settings.classify_batch_wait_ms)
        async for events in batches:
            await ingest_batch(events)

    @app.agent(classified_t, name="detect")
    async def detect(stream: faust.StreamT[bytes]) -> None:
        if settings.detector.batch_size <= 1:
            async for event in stream.events():
                await detect_batch([event])
            return
        async for events in _batches(
            stream, settings.detector.batch_size, settings.detector.batch_wait_ms
        ):
            await detect_batch(events)

    @app.agent(alerts_t, name="deliver")
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await guarded("deliver", event, deliver_one)

    return Stages(ingest=ingest, detect=detect, deliver=deliver)
