"""The worker's agents: each reads a batch of records, calls its stage, sends the outputs.

posts.raw.v1        --ingest--> posts.classified.v1 (one partition; + progress markers)
                                [no state: a copy of a post goes on, detect counts it once]
posts.classified.v1 --detect--> alerts.v1 (keyed by alert id, one record per version)
                                [merge of the raw partitions; table: detector checkpoints]
alerts.v1           --deliver-> one lane per sink: webhooks, chat, JSONL file
                                [table: alert versions delivered per sink]
any failure         ----------> dlq.v1 with the reason, counted; the stream goes on

The rules of each hop are in ``streams/stages.py`` (plain objects, tested without a
broker). What stays here is Faust's: the topics and tables, reading in batches
(:func:`_batches`), the current event a table write needs (:func:`_enter_event`), the
producer flush before a checkpoint (:meth:`_Send.flush`), and when a delivered record is
acked (:func:`_deliver_agent`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
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
    FailedDelivery,
    dead_letter,
)
from seismo.kafka import GroupOffsets, bootstrap_of, read_range
from seismo.metrics import Metrics
from streams.delivery import AlertSinks
from streams.detector import DetectorParams
from streams.stages import (
    Classified,
    DeliverStage,
    DetectStage,
    IngestStage,
    Record,
    Rejected,
)

log = logging.getLogger(__name__)


@dataclass
class Stages:
    """Handles to the agents, for tests and the CLI."""

    ingest: Any
    detect: Any  # None with one raw partition: ingest counts the posts too
    deliver: Any


async def _batches(
    stream: faust.StreamT[bytes], size: int, wait_ms: float
) -> AsyncIterator[list[EventT[Any]]]:
    """The stream's events in batches: one closes when it holds ``size`` events or
    ``wait_ms`` after it opened, whichever is first (``size`` 1: each event alone, as
    ``stream.events()`` gives them). Faust acks a batch's events when the next one is asked
    for, i.e. after the caller is done with them."""
    if size <= 1:
        async for event in stream.events():
            yield [event]
        return
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


def _record(event: EventT[Any]) -> Record:
    msg = event.message
    return Record(msg.partition, msg.offset, event.value, msg.key, msg.topic, event)


def _enter(record: Record) -> None:
    """The stages' ``enter``: a table write goes to ``record``'s changelog partition."""
    _enter_event(record.event)


class _Send:
    """The worker's send side: the stages' outputs to Faust topics (a stages.DetectSend)."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        parts = settings.topic_partitions
        self.app = app
        self.classified_t = app.topic(
            settings.topic(POSTS_CLASSIFIED), partitions=settings.partitions(POSTS_CLASSIFIED)
        )
        self.alerts_t = app.topic(settings.topic(ALERTS), partitions=parts)
        self.dlq_t = app.topic(settings.topic(DLQ), partitions=parts)
        self.alerts_dlq_t = app.topic(settings.topic(ALERTS_DLQ), partitions=parts)

    async def classified(self, out: Classified, stage: IngestStage, publish: bool = True) -> None:
        """Send ingest's outputs; a post that cannot be sent goes to the DLQ alone. Without
        ``publish`` (a one-hop worker's posts, counted in place) only the rejected go."""
        await self.rejected(out.rejected)
        if not publish:
            for _, cp in out.posts:
                stage.sent(cp)
            return
        for record, cp in out.posts:
            _enter(record)  # its record's event current, as stream.events() would have it
            post = cp.post
            ts = post.created_at.timestamp()
            try:
                await self.classified_t.send(
                    key=post.key.encode(), value=cp.to_bytes(), timestamp=ts
                )
            except Exception as exc:
                await self.rejected([stage.failed(record, exc)])
            else:
                stage.sent(cp)

    async def alerts(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
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
            await self.alerts_t.send(
                key=alert.id.encode(), value=alert.to_bytes(), timestamp=alert.raised_at.timestamp()
            )

    async def rejected(self, rejected: Sequence[Rejected]) -> None:
        for r in rejected:
            rec = r.record
            v = rec.value
            value = v.model_dump_json() if v is not None and not isinstance(v, bytes) else v
            dl = dead_letter(
                r.stage,
                r.reason,
                rec.topic,
                value,
                key=rec.key,
                partition=rec.partition,
                offset=rec.offset,
            )
            await self.dlq_t.send(key=rec.key, value=dl.to_bytes())

    async def park(self, failed: FailedDelivery) -> None:
        await self.alerts_dlq_t.send(key=failed.alert_id.encode(), value=failed.to_bytes())

    async def flush(self) -> None:
        """Faust's producer buffers what is sent: return once it is all on the broker (the
        detect stage flushes before a checkpoint says the alerts of its records are out)."""
        await self.app.producer.flush()


def register(
    app: faust.App,
    settings: Settings,
    metrics: Metrics,
    classifier: Classifier,
    params: DetectorParams,
    sinks: AlertSinks,
) -> Stages:
    """Build the three stages on Faust tables and run each in its agent."""
    send = _Send(app, settings)
    checkpoints, delivered = _tables(app, settings)
    ingest = IngestStage(classifier, metrics)
    raw_t = app.topic(settings.topic(POSTS_RAW), partitions=settings.partitions(POSTS_RAW))
    one_hop = settings.raw_partitions == 1  # ingest counts its posts too: see _ingest_agent
    read = partial(read_range, bootstrap_of(settings))
    detect = DetectStage(
        params,
        checkpoints,
        metrics,
        catch_up=(
            partial(_classified_again, read, raw_t.get_topic_name(), ingest)
            if one_hop
            else partial(read, send.classified_t.get_topic_name())
        ),
        checkpoint_seconds=settings.detector.checkpoint_seconds,
        catch_up_batch=settings.detector.batch_size,
        sources=settings.raw_partitions,
        max_buffered=settings.detector.merge_max_buffered,
        enter=_enter,
    )
    deliver = DeliverStage(sinks, delivered, metrics, park=send.park, enter=_enter)
    size, wait = settings.classify_batch_size, settings.classify_batch_wait_ms
    if one_hop:
        return Stages(
            ingest=_ingest_agent(
                app, raw_t, ingest, send, size, wait, detect, settings.publish_classified
            ),
            detect=None,
            deliver=_deliver_agent(app, deliver, send, sinks),
        )
    _progress_timer(app, raw_t, detect, send, settings)  # the merge waits on idle partitions
    return Stages(
        ingest=_ingest_agent(app, raw_t, ingest, send, size, wait),
        detect=_detect_agent(
            app, detect, send, settings.detector.batch_size, settings.detector.batch_wait_ms
        ),
        deliver=_deliver_agent(app, deliver, send, sinks),
    )


async def _classified_again(
    read: Callable[[str, int, int, int], Awaitable[list[tuple[int, bytes | None]]]],
    raw_topic: str,
    stage: IngestStage,
    partition: int,
    start: int,
    end: int,
) -> list[tuple[int, bytes | None]]:
    """The one-hop worker's catch-up reader: the raw records of ``partition`` in
    ``[start, end)`` classified again, by raw offset, and not counted again
    (:meth:`IngestStage.again`)."""
    raw = [
        Record(partition, o, v or b"", topic=raw_topic)
        for o, v in await read(raw_topic, partition, start, end)
    ]
    out = await asyncio.to_thread(stage.again, raw)
    return [(record.offset, cp.to_bytes()) for record, cp in out]


def _tables(app: faust.App, settings: Settings) -> tuple[Any, Any]:
    """The stages' Faust tables: JSON values under str keys; a write goes to the changelog
    partition of the current event (see :func:`_enter`)."""
    # detector checkpoints, co-partitioned with posts.classified.v1 (streams/checkpoint.py)
    checkpoints = app.Table(
        "detector-checkpoints", partitions=settings.partitions(POSTS_CLASSIFIED)
    )
    # alert id @ sink -> the version delivered there (co-partitioned with alerts.v1)
    delivered = app.Table("delivered", partitions=settings.topic_partitions)
    return checkpoints, delivered


def _ingest_agent(
    app: faust.App,
    topic: Any,
    stage: IngestStage,
    send: _Send,
    size: int,
    wait_ms: float,
    detect: DetectStage | None = None,
    publish: bool = True,
) -> Any:
    """The ingest agent; with ``detect`` (one raw partition: nothing to merge) it also
    counts the batch's posts itself, by raw offset, so a post crosses one Faust hop, not
    two, and writes ``posts.classified.v1`` only if it is to ``publish`` them."""

    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for events in _batches(stream, size, wait_ms):
            batch = [_record(e) for e in events]
            admitted = stage.admit(batch)
            if size > 1 and admitted.posts:  # one model call, off the event loop
                out = await asyncio.to_thread(stage.classify, admitted)
            else:  # one record at a time, classified inline
                out = stage.classify(admitted)
            await send.classified(out, stage, publish)
            if detect is not None:
                await detect.handle(_counted(batch, out), send)

    return app.agent(topic, name="ingest")(ingest)


def _counted(batch: Sequence[Record], out: Classified) -> list[Record]:
    """The raw batch as the detect stage takes it: each record with its classified post, or
    None where ingest rejected it (the DLQ has it; the detector only moves past it)."""
    posts = {id(record): cp for record, cp in out.posts}
    return [Record(r.partition, r.offset, posts.get(id(r)), r.key, r.topic, r.event) for r in batch]


def _detect_agent(
    app: faust.App, stage: DetectStage, send: _Send, size: int, wait_ms: float
) -> Any:
    """The detect agent. A record whose post still waits in the merge is not acked (its
    offset not committed) until the merge releases it: the group's lag on
    ``posts.classified.v1`` then says whether posts are still to be counted."""
    held: deque[EventT[Any]] = deque()  # oldest first

    async def let_go(consumer: Any) -> None:
        """Read again after the rebalance or restart, the records are skipped (at or below
        the engine's offset) while their posts wait in the merge or its checkpoint."""
        consumer._unacked_messages.difference_update(e.message for e in held)
        held.clear()

    _let_go_on_stop(app, let_go)

    async def detect(stream: faust.StreamT[bytes]) -> None:
        async for events in _batches(stream, size, wait_ms):
            await stage.handle([_record(e) for e in events], send)
            for event in events:  # the batch's loop acks them once; a hold takes a second
                event.message.incref()
                held.append(event)
            waiting = {p: stage.waiting_from(p) for p in {e.message.partition for e in held}}
            while held:
                first = waiting[held[0].message.partition]
                if first is not None and held[0].message.offset >= first:
                    break
                _ack(app, held.popleft())

    return app.agent(send.classified_t, name="detect")(detect)


def _ack(app: faust.App, event: EventT[Any]) -> None:
    """Ack a record an agent held past its batch (taken with ``message.incref()``)."""
    if event.ack():  # the last reference: the offset may now be committed
        msg = event.message
        app.sensors.on_message_out(msg.tp, msg.offset, msg)


def _progress_timer(
    app: faust.App, raw_t: Any, stage: DetectStage, send: _Send, settings: Settings
) -> None:
    """Every ``progress_interval_seconds``, while posts wait in this worker's merge: a
    progress marker for each raw partition it waits on that is classified to its end
    (``DetectStage.progress``)."""
    raw = raw_t.get_topic_name()
    classified = send.classified_t.get_topic_name()
    reader = GroupOffsets(bootstrap_of(settings), settings.group_id)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types want a sync receiver
    async def _close_reader(app: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        await reader.close()

    async def send_progress() -> None:
        held = [tp.partition for tp in app.consumer.assignment() if tp.topic == classified]
        if not any(stage.waiting_from(p) is not None for p in held):
            return
        offsets = await reader.read([raw])
        by_partition = {tp.partition: ends for tp, ends in offsets.items()}
        for partition in held:
            for mark in stage.progress(partition, by_partition, settings.merge_slack_seconds):
                key = f"progress:{mark.raw_partition}".encode()
                await send.classified_t.send(key=key, value=mark.to_bytes(), partition=partition)

    async def progress() -> None:
        try:
            await send_progress()
        except Exception as exc:  # not started, stopping, or the broker away: next time
            log.warning("detect: no progress markers this time: %s", exc)
            await reader.close()  # and new clients then

    app.timer(settings.progress_interval_seconds, name="detect-progress")(progress)


def _deliver_agent(app: faust.App, stage: DeliverStage, send: _Send, sinks: AlertSinks) -> Any:
    """The deliver agent. A record handed to the sink lanes is acked when every lane is
    done with it (delivered, or parked on alerts.dlq.v1), not by the loop, so a crash
    before that delivers it again, to the sinks that have not recorded it."""
    held: weakref.WeakSet[Any] = weakref.WeakSet()  # records the sink lanes still hold

    async def let_go(consumer: Any) -> None:
        """Stop the sink lanes, then let go of their records: they go again to the sinks
        that did not record them."""
        await sinks.close()
        consumer._unacked_messages.difference_update(held)
        held.clear()

    _let_go_on_stop(app, let_go)

    async def finished(record: Record) -> None:
        held.discard(record.event.message)
        _ack(app, record.event)

    async def deliver(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            out = stage.handle([_record(event)], finished)
            for record in out.held:  # not acked by the loop: finished() acks it
                record.event.message.incref()
                held.add(record.event.message)
            await send.rejected(out.rejected)

    return app.agent(send.alerts_t, name="deliver")(deliver)


def _let_go_on_stop(app: faust.App, let_go: Callable[[Any], Awaitable[None]]) -> None:
    """A stop or a rebalance waits for every record in hand to be acked: first
    ``let_go(consumer)`` lets go of the records an agent holds, unacked. Not committed,
    they are read again after the restart, or the rebalance's seek to the committed offsets.
    (Each agent that holds records wraps the wait once.)"""
    wait_empty = app._consumer_wait_empty

    async def let_go_then_wait_empty(consumer: Any, logger: Any) -> None:
        await let_go(consumer)
        await wait_empty(consumer, logger)

    app._consumer_wait_empty = let_go_then_wait_empty  # type: ignore[method-assign]
