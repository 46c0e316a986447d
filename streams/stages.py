"""The worker's three stages as plain objects: the rules of each hop, without Kafka or Faust.

The path of a post, hop by hop::

    connector / seismo replay
        -> posts.raw.v1          (key: post key)
    IngestStage.handle           decode, classify (stateless)
        -> posts.classified.v1   (key: post key; one partition, whatever the raw count)
    DetectStage.handle           restore + catch up, merge, count, alert, checkpoint
        -> alerts.v1             (key: alert id; one record per alert version)
    DeliverStage.handle          hand the version to each sink's lane that lacks it
        -> webhooks, chat, JSONL file; a failed delivery -> alerts.dlq.v1
    any record a stage cannot handle -> dlq.v1 with the reason (a :class:`Rejected`)

Each stage gets its state injected: a ``MutableMapping`` for each Faust table (a changelogged
table in the worker, a dict offline and in tests), the classifier, the sinks, the metrics, a
clock and the reader of a partition's past records. It takes a batch of :class:`Record`
(in consumption order) and returns what to send: classified posts, alert versions, records
rejected with their reasons. One step sends itself, through an injected
:class:`DetectSend`: :meth:`DetectStage.handle`, whose rule is an order (a checkpoint only
after its alerts were sent and flushed); its pure part, :meth:`DetectStage.count`, returns
what to send. The worker's agents (``streams/agents.py``) read, call the stage and send;
:class:`~streams.pipeline.OfflinePipeline` runs the same stage objects in one process.

The rules:

* **Ingest** (:class:`IngestStage`). Decode and classify; no state. A post sent twice (a
  replay re-run, a connector resending, a retry after a restart) is classified and sent
  twice: the detect stage counts it once. The posts are classified in one call; if that
  call fails they are classified one by one and only those that fail again are rejected.
* **Detect** (:class:`DetectStage`). One :class:`~streams.detector.BurstEngine` per
  classified partition (there is one), after a :class:`~streams.merge.Merge` of the raw
  partitions that drops the copies ingest classified again (by raw offset) and releases the
  posts in one order whatever the number of raw partitions; a record whose post waits there
  is not acked yet (:meth:`DetectStage.waiting_from`), and while posts wait on a silent raw
  partition the worker writes progress markers (:meth:`DetectStage.progress`). Before a
  partition's first batch (and when its checkpoint is newer than the engine in memory, after
  the partition moved away and back) the engine and its merge are restored from
  ``detector-checkpoints``; the records between the checkpoint's offset and the batch are
  read again through the injected reader and counted, and the alert versions they raise are
  sent again (same id and version: every consumer drops repeats). Records at or below the
  engine's offset were counted already and are skipped. A post whose key was counted
  already (a copy at another offset: a replay re-run, a connector resending, ingest
  re-emitting after a crash) is skipped by the engine's memory of recent post keys
  (``BurstEngine.repeats``, saved in the checkpoint), or, when it is more than
  ``max_lateness_seconds`` behind the engine's event time, not counted as too late
  (``BurstEngine.too_late``). Both skips count in the metrics
  (``seismo_duplicates_skipped_total{stage="detect"}``, ``seismo_detector_too_late_total``).
  A checkpoint is written at most every
  ``checkpoint_seconds``, and only after the alerts of the records it covers were handed to
  the send side and flushed: a crash then can keep the checkpoint but never lose its alerts.
* **Deliver** (:class:`DeliverStage`). An alert version goes to the lane of every sink it is
  for (``AlertSinks.sinks_for``) that has not recorded it in ``delivered`` (``alert id @
  sink -> version``); a version every sink recorded is a duplicate. A lane records the
  version once delivered or parked on ``alerts.dlq.v1``; when every lane is done the stage
  calls ``finished`` (the worker acks the record then).
* **Failures.** A record a stage cannot decode or handle becomes a :class:`Rejected` with
  the reason (a ``ContractError``'s reason, else ``Type: message``), counted in
  ``seismo_dlq_total``; the rest of the batch goes on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from models.classifier import Classifier
from seismo.contracts import (
    PROGRESS_PREFIX,
    Alert,
    ClassifiedPost,
    Contract,
    FailedDelivery,
    Post,
    Progress,
    decode,
)
from seismo.errors import ContractError
from seismo.metrics import Metrics
from streams.checkpoint import Checkpoints
from streams.delivery import AlertSinks, DeliveryFailure, Handoff, failed_delivery
from streams.detector import BurstEngine
from streams.merge import Entry, Merge, micros
from streams.params import DetectorParams

log = logging.getLogger(__name__)

C = TypeVar("C", bound=Contract)


@dataclass(frozen=True, eq=False)
class Record:
    """One consumed record as a stage sees it."""

    partition: int
    offset: int
    value: bytes | Contract | None
    """The record's bytes; in one process (offline, tests) the decoded contract itself;
    None for a raw record ingest rejected, given to a one-hop worker's detect stage, which
    only moves past it."""
    key: bytes | None = None
    topic: str = ""
    event: Any = field(default=None, repr=False)
    """The worker's Faust event (made current before a table write: see ``enter``)."""


@dataclass(frozen=True)
class Rejected:
    """A record a stage could not handle: it goes to ``dlq.v1`` with ``reason``."""

    stage: str
    reason: str
    record: Record


def _nothing(record: Record) -> None:
    """The default ``enter``: offline, a table write needs no source record."""


Enter = Callable[[Record], None]
"""Called with a record before the stage writes a table on its behalf (the worker makes the
record's event current there, so the write goes to that record's changelog partition)."""


def _value(model: type[C], record: Record) -> C:
    if isinstance(record.value, model):
        return record.value
    if isinstance(record.value, bytes):
        return decode(model, record.value)
    raise ContractError(f"expected {model.__name__}, got {type(record.value).__name__}")


def _since(ingested_at: datetime | None) -> float | None:
    """Wall seconds since ``ingested_at`` (the ingest latency a stage reports), or None."""
    if ingested_at is None:
        return None
    return max(0.0, time.time() - ingested_at.timestamp())


class _Stage:
    """What every stage shares: its name and the way it rejects a record."""

    name = ""

    def __init__(self, metrics: Metrics, enter: Enter) -> None:
        self.metrics = metrics
        self.enter = enter

    def reject(self, record: Record, reason: str) -> Rejected:
        """``record`` goes to the DLQ with ``reason`` (counted and logged here)."""
        self.metrics.dlq.labels(self.name).inc()
        log.warning(
            "%s: record %s[%s]@%s to DLQ: %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        return Rejected(self.name, reason, record)

    def failed(self, record: Record, exc: BaseException) -> Rejected:
        """``record`` goes to the DLQ because handling it raised ``exc``."""
        if not isinstance(exc, ContractError):
            log.error(
                "%s failed on %s[%s]@%s",
                self.name,
                record.topic,
                record.partition,
                record.offset,
                exc_info=exc,
            )
        return self.reject(record, _reason(exc))


def _first_copies(engine: BurstEngine, posts: Sequence[ClassifiedPost]) -> list[ClassifiedPost]:
    """The posts whose key the engine has not seen (its memory of recent post keys) and
    that come first in the batch: the ones the trend series count."""
    seen = engine.seen
    keys: set[str] = set()
    out = []
    for cp in posts:
        key = cp.post.key
        if key not in seen and key not in keys:
            keys.add(key)
            out.append(cp)
    return out


def _reason(exc: BaseException) -> str:
    """The DLQ reason for a record whose handling raised ``exc``."""
    return exc.reason if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"


# --- ingest ---------------------------------------------------------------------------


@dataclass
class Admitted:
    """The posts of a batch decoded, and the records rejected."""

    posts: list[tuple[Record, Post]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class Classified:
    """What ingest sends: classified posts to ``posts.classified.v1``, rejected to the DLQ."""

    posts: list[tuple[Record, ClassifiedPost]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class IngestStage(_Stage):
    """``posts.raw.v1`` records -> classified posts: decode, classify. Stateless: copies of
    a post are classified and sent as they come (the detect stage counts a post once).

    :meth:`admit` decodes (the worker runs it on its event loop); :meth:`classify` only
    calls the classifier and counts (the worker runs it in a thread); :meth:`handle` is both.
    """

    name = "ingest"

    def __init__(
        self,
        classifier: Classifier,
        metrics: Metrics,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(metrics, _nothing)  # no table to write
        self.classifier = classifier
        self.wall = wall

    def handle(self, batch: Sequence[Record]) -> Classified:
        return self.classify(self.admit(batch))

    def admit(self, batch: Sequence[Record], counted: bool = True) -> Admitted:
        """Decode each record (one that does not decode is rejected); a post without
        ``ingested_at`` (a producer other than seismo's connectors) is stamped now.
        Not ``counted``: records read before, neither counted nor rejected again."""
        out = Admitted()
        posts_in = self.metrics.posts_in
        for record in batch:
            try:
                post = _value(Post, record)
            except Exception as exc:
                if counted:
                    out.rejected.append(self.failed(record, exc))
                continue
            if post.ingested_at is None:
                post = post.model_copy(update={"ingested_at": self.wall()})
            if counted:
                posts_in.labels("ingest", self.metrics.source(post.source)).inc()
            out.posts.append((record, post))
        return out

    def classify(self, admitted: Admitted, counted: bool = True) -> Classified:
        """Classify the admitted posts in one call; if it fails, one by one (not
        ``counted``: a post that fails is left out, not rejected again)."""
        out = Classified(rejected=list(admitted.rejected))
        if not admitted.posts:
            return out
        records = [record for record, _ in admitted.posts]
        posts = [post for _, post in admitted.posts]
        try:
            out.posts = [
                (record, _placed(cp, record))
                for record, cp in zip(records, self._classify(posts), strict=True)
            ]
            return out
        except Exception as exc:
            if len(posts) == 1:
                if counted:
                    out.rejected.append(self.failed(records[0], exc))
                return out
            log.exception("ingest: batch of %d failed to classify; one by one", len(posts))
        for record, post in admitted.posts:
            try:
                out.posts.append((record, _placed(self._classify([post])[0], record)))
            except Exception as exc:
                if counted:
                    out.rejected.append(self.failed(record, exc))
        return out

    def again(self, batch: Sequence[Record]) -> list[tuple[Record, ClassifiedPost]]:
        """Records read before (a catch-up after a restart), classified again and not
        counted again: they were counted when first read, and a record that is not a post,
        or that failed to classify, went to the DLQ then and is left out now."""
        return self.classify(self.admit(batch, counted=False), counted=False).posts

    def _classify(self, posts: list[Post]) -> list[ClassifiedPost]:
        """One classifier call, timed and counted (the classify_* series)."""
        name = self.classifier.name
        t0 = time.perf_counter()
        out = self.classifier.classify_batch(posts)
        self.metrics.classify_latency.labels(name).observe(time.perf_counter() - t0)
        self.metrics.classify_batch.labels(name).observe(len(posts))
        return out

    def sent(self, cp: ClassifiedPost) -> None:
        """Count a classified post the send side has sent."""
        post = cp.post
        self.metrics.posts_out.labels("ingest", self.metrics.source(post.source)).inc()
        self.metrics.stage_done("ingest", post.created_at.timestamp(), _since(post.ingested_at))


def _placed(cp: ClassifiedPost, record: Record) -> ClassifiedPost:
    """``cp`` with where its raw record is (the detector's merge orders and dedupes by it)."""
    return cp.model_copy(update={"raw_partition": record.partition, "raw_offset": record.offset})


# --- detect ---------------------------------------------------------------------------


CatchUp = Callable[[int, int, int], Awaitable[list[tuple[int, bytes | None]]]]
"""``(partition, start, end)`` -> the (offset, value) of the records of that classified
partition in ``[start, end)``, oldest first (the worker: a raw aiokafka read)."""


class DetectSend(Protocol):
    """The send side of :class:`DetectStage` (the worker: Faust topics; tests: lists)."""

    async def alerts(self, alerts: Sequence[Alert]) -> None: ...

    async def rejected(self, rejected: Sequence[Rejected]) -> None: ...

    async def flush(self) -> None:
        """Return once everything sent so far is on the broker."""


@dataclass
class Detected:
    """What one partition's batch gave: alert versions, and the records rejected."""

    alerts: list[Alert] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _by_partition(batch: Iterable[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    for record in batch:
        out.setdefault(record.partition, []).append(record)
    return out


class DetectStage(_Stage):
    """``posts.classified.v1`` records -> alert versions, one burst engine per partition.

    The records of a partition go through its merge of the ``sources`` raw partitions
    (``streams/merge.py``) before the engine: the merge drops the copies ingest classified
    again, and releases the posts in one order whatever the number of raw partitions.

    :meth:`handle` is the worker's whole step (restore and catch up, :meth:`count`, send,
    checkpoint, in that order); :meth:`count` alone is the pure part, which the offline
    pipeline calls (nothing to restore there).
    """

    name = "detect"

    def __init__(
        self,
        params: DetectorParams,
        checkpoints: MutableMapping[str, Any],
        metrics: Metrics,
        *,
        catch_up: CatchUp,
        checkpoint_seconds: float,
        catch_up_batch: int,
        sources: int = 1,
        max_buffered: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        enter: Enter = _nothing,
    ) -> None:
        super().__init__(metrics, enter)
        self.wall = wall  # the progress markers' clock
        self.params = params
        self.checkpoints = Checkpoints(checkpoints)
        self.catch_up = catch_up
        self.checkpoint_seconds = checkpoint_seconds
        self.catch_up_batch = max(catch_up_batch, 1)
        self.sources = sources
        self.max_buffered = max_buffered
        self.clock = clock
        self.now = now  # the engines' wall clock (None: BurstEngine's own)
        self.engines: dict[int, BurstEngine] = {}
        self.merges: dict[int, Merge[ClassifiedPost]] = {}
        self.saved_at: dict[int, float] = {}

    async def handle(self, batch: Sequence[Record], send: DetectSend) -> None:
        """Per partition: restore and catch up, count, send, then checkpoint when due."""
        for partition, records in _by_partition(batch).items():
            try:
                await self.restore(partition, records[0].offset, send)
            except Exception as exc:
                log.exception("detect: partition %d could not be restored", partition)
                await send.rejected([self.reject(r, _reason(exc)) for r in records])
                continue
            out = self.count(partition, records)
            await send.rejected(out.rejected)
            await send.alerts(out.alerts)
            if self.clock() - self.saved_at[partition] >= self.checkpoint_seconds:
                # the alerts raised so far must be on the broker before a checkpoint says
                # their records are done: otherwise a crash could keep it and lose them
                await send.flush()
                self.enter(records[-1])
                self.save(partition)

    async def restore(self, partition: int, offset: int, send: DetectSend) -> BurstEngine:
        """The partition's engine, restored from its checkpoint and caught up to ``offset``:
        the records after the checkpoint were counted before a restart but are not in it,
        so they are read again and counted, and their alert versions sent again."""
        engine = self.engines.get(partition)
        # none yet, or one left from before the partition moved to another worker and back
        if engine is None or self.checkpoints.offset(partition) > engine.offset:
            engine = self._load(partition)
        if engine.offset + 1 < offset:
            gap = await self.catch_up(partition, engine.offset + 1, offset)
            log.info("detect: replaying %d records of partition %d", len(gap), partition)
            for i in range(0, len(gap), self.catch_up_batch):
                part = gap[i : i + self.catch_up_batch]
                chunk = [Record(partition, o, v or b"") for o, v in part]
                # a record rejected now went to the DLQ when it was first read
                await send.alerts(self._count(partition, engine, chunk).alerts)
            engine.offset = offset - 1
        return engine

    def waiting_from(self, partition: int) -> int | None:
        """The lowest offset of ``partition`` whose post waits in the merge (None: none
        waits). The worker acks a record only below it, so a drained pipeline shows no lag
        while posts still wait."""
        merge = self.merges.get(partition)
        return merge.first_offset() if merge is not None else None

    def progress(
        self, partition: int, raw: Mapping[int, tuple[int, int]], slack: float
    ) -> list[Progress]:
        """Progress markers for the raw partitions the merge of ``partition`` waits on
        (``Merge.blocking``) that are classified to their end:
        ``raw`` gives each one's (end offset, offset the group committed). Every post before
        the end is then in ``posts.classified.v1``, ahead of the marker; a post still to come
        was stamped at most ``slack`` seconds before now."""
        merge = self.merges.get(partition)
        if merge is None:
            return []
        not_before = self.wall() - timedelta(seconds=slack)
        out = []
        for source in merge.blocking():
            end, committed = raw.get(source, (0, 0))
            if committed >= end:
                out.append(Progress(raw_partition=source, raw_offset=end, not_before=not_before))
        return out

    def engine(self, partition: int) -> BurstEngine:
        """The partition's engine: the one in memory, else restored from its checkpoint, else
        a new one (not caught up: see :meth:`restore`)."""
        return self.engines.get(partition) or self._load(partition)

    def _load(self, partition: int) -> BurstEngine:
        saved = self.checkpoints.load(partition, self.params)
        merge = Merge[ClassifiedPost](self.sources, self.max_buffered)
        if saved is None:
            engine = BurstEngine(self.params, self.now) if self.now else BurstEngine(self.params)
        else:
            engine, merge_bytes = saved
            if merge_bytes:
                merge = Merge.loads(merge_bytes, self.sources, self.max_buffered, _classified)
            if self.now:
                engine.set_clock(self.now)
        for alert in engine.book.current():
            self.metrics.alert_restored(alert)
        self.engines[partition] = engine
        self.merges[partition] = merge
        self.saved_at[partition] = self.clock()
        return engine

    def count(self, partition: int, records: Sequence[Record]) -> Detected:
        """Count the records of one partition not counted yet: through the merge, then the
        posts it releases in one ``observe_many`` call (the same alerts as one by one). If
        the engine fails, the posts it was given are rejected with the reason."""
        engine = self.engine(partition)
        fresh = [r for r in records if r.offset > engine.offset]
        if len(fresh) < len(records):  # redelivered after a restart
            self.metrics.duplicates.labels("detect").inc(len(records) - len(fresh))
        return self._count(partition, engine, fresh)

    def _count(self, partition: int, engine: BurstEngine, records: Sequence[Record]) -> Detected:
        merge = self.merges[partition]
        out = Detected()
        if not records:
            return out
        copies, late, forced = merge.copies, merge.late, merge.forced
        for record in records:
            try:
                self._take(merge, record)
            except Exception as exc:
                out.rejected.append(self.failed(record, exc))
        entries = merge.pop()
        posts = [e.item for e in entries]
        repeats, too_late = engine.repeats, engine.too_late
        first = _first_copies(engine, posts)
        try:
            out.alerts = self._raised(engine.observe_many(posts))
        except Exception as exc:
            log.exception("detect failed on %d posts of partition %d", len(posts), partition)
            reason = _reason(exc)
            out.rejected += [self.reject(_entry_record(partition, e), reason) for e in entries]
        finally:
            engine.offset = max(engine.offset, records[-1].offset)
        m = self.metrics
        # a copy of a post counted already (by raw offset, or by key): counted once
        m.duplicates.labels("detect").inc(merge.copies - copies + engine.repeats - repeats)
        if engine.too_late > too_late:  # too far behind the detector's clock: not counted
            m.too_late.labels(str(partition)).inc(engine.too_late - too_late)
        m.detector_watched.labels(str(partition)).set(engine.watched_seconds)
        m.merge_late.inc(merge.late - late)
        m.merge_forced.inc(merge.forced - forced)
        m.merge_buffered.set(merge.buffered)
        for cp in first:  # the trend series count a post once, however often it was sent
            m.classified(cp)
        for cp in posts[-1:]:
            post = cp.post
            m.stage_done("detect", post.created_at.timestamp(), _since(post.ingested_at))
        return out

    def _take(self, merge: Merge[ClassifiedPost], record: Record) -> None:
        """Give ``record`` to the merge: a progress marker, or a classified post (None: a
        raw record ingest rejected, nothing to give)."""
        value = record.value
        if value is None:
            return
        if isinstance(value, Progress) or (
            isinstance(value, bytes) and value.startswith(PROGRESS_PREFIX)
        ):
            mark = _value(Progress, record)
            merge.progress(mark.raw_partition, mark.raw_offset, micros(mark.not_before))
            return
        cp = self._admit(record)
        post = cp.post
        stamp = micros(post.ingested_at or post.created_at)
        source = cp.raw_partition or 0
        merge.push(Entry(stamp, post.key, source, cp.raw_offset, record.offset, cp))

    def _admit(self, record: Record) -> ClassifiedPost:
        cp = _value(ClassifiedPost, record)
        signals = self.metrics.signals
        self.metrics.posts_in.labels("detect", self.metrics.source(cp.post.source)).inc()
        signals.labels("term").inc(len(cp.terms))
        # the keys detector.tracked_keys gives (one per dossier, a claim and a stance key per
        # claim hit), counted without building them: the detector builds them once
        if cp.dossiers:
            signals.labels("dossier").inc(len(cp.dossiers))
        if cp.claims:
            signals.labels("claim").inc(len(cp.claims))
            signals.labels("stance").inc(len(cp.claims))
        return cp

    def _raised(self, alerts: list[Alert]) -> list[Alert]:
        for alert in alerts:
            self.metrics.alert(alert)
        return alerts

    def save(self, partition: int) -> None:
        """Checkpoint the partition's engine (covering up to its offset) and its merge."""
        merge = self.merges[partition].dumps(ClassifiedPost.to_bytes)
        size = self.checkpoints.save(partition, self.engines[partition], merge)
        self.metrics.detector_checkpoint_bytes.labels(str(partition)).set(size)
        self.metrics.detector_keys.set(sum(e.named_keys for e in self.engines.values()))
        self.saved_at[partition] = self.clock()


def _classified(value: bytes) -> ClassifiedPost:
    return decode(ClassifiedPost, value)


def _entry_record(partition: int, entry: Entry[ClassifiedPost]) -> Record:
    """The classified record a post waiting in the merge came from (to reject it)."""
    return Record(partition, entry.offset, entry.item, entry.key.encode())


# --- deliver --------------------------------------------------------------------------


Park = Callable[[FailedDelivery], Awaitable[None]]
"""Send a failed delivery to ``alerts.dlq.v1``."""


@dataclass
class Handed:
    """The records handed to the sink lanes (held until ``finished``), and those rejected."""

    held: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class DeliverStage(_Stage):
    """``alerts.v1`` records -> the sink lanes, each alert version once per sink."""

    name = "deliver"

    def __init__(
        self,
        sinks: AlertSinks,
        delivered: MutableMapping[str, Any],
        metrics: Metrics,
        *,
        park: Park,
        enter: Enter = _nothing,
    ) -> None:
        super().__init__(metrics, enter)
        self.sinks = sinks
        self.delivered = delivered
        self.park = park

    def handle(
        self, batch: Sequence[Record], finished: Callable[[Record], Awaitable[None]]
    ) -> Handed:
        """Hand each alert version to the lanes of the sinks that have not recorded it;
        ``finished(record)`` runs when every lane is done with it (delivered, or parked)."""
        out = Handed()
        for record in batch:
            try:
                if self._hand_off(record, finished):
                    out.held.append(record)
                else:
                    self.metrics.duplicates.labels("deliver").inc()
            except Exception as exc:
                out.rejected.append(self.failed(record, exc))
        return out

    def _hand_off(self, record: Record, finished: Callable[[Record], Awaitable[None]]) -> int:
        alert = _value(Alert, record)
        raw: dict[str, Any] = (  # all fields, also those this version does not know
            json.loads(record.value)
            if isinstance(record.value, bytes)
            else alert.model_dump(mode="json", exclude_none=True)
        )

        def record_delivered(key: str) -> None:
            self.enter(record)  # the table write goes to this record's changelog partition
            self.delivered[key] = alert.version

        async def park(failure: DeliveryFailure) -> None:
            await self.park(failed_delivery(alert, raw, failure))
            self.metrics.dlq.labels("deliver").inc()

        async def done() -> None:
            await finished(record)
            self.metrics.stage_done("deliver", alert.raised_at.timestamp(), None)

        return self.sinks.hand_off(
            Handoff(alert, raw, self.delivered.get, record_delivered, park, done)
        )
