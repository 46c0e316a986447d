"""What every live connector shares: the run loop, backoff, cursors, the Kafka sink.

A connector is a :class:`Source`: an async generator of :data:`Item` from one platform,
starting at a cursor (``None`` = start from now). :class:`ConnectorRunner` drives it:

- ``Emit(post, cursor)``: the post goes to ``posts.raw.v1`` (key ``source:id``, record
  timestamp = event time); posts already sent recently (same key) are dropped as repeats.
- ``Skip(reason, raw, cursor)``: a malformed frame or item: counted, dead-lettered with the
  reason, and the stream goes on.
- ``Checkpoint(cursor, outcome)``: progress without a post (a heartbeat, a deleted item);
  an ``outcome`` (one of a few fixed words: ``deleted``, ``dead``, ``missing``, ``ignored``)
  counts the upstream item under that outcome in the events metric.
- ``Gap(detail)``: the upstream could not resume exactly where we stopped (cursor too old):
  reported and counted, never silent.
- ``Flush(ack)``: for sources that must answer someone (a push endpoint): the runner flushes
  the sink at once and resolves ``ack`` when everything yielded before it is acknowledged by
  Kafka (or sets the flush error on it).

A cursor is saved to disk only after every post before it has been acknowledged by Kafka,
so a restart resumes without loss; posts re-read after the cursor are recognised by key
(here, and again by the ingest stage), so nothing is doubled.

Errors are sorted: :class:`FatalSourceError` (bad credentials, bad config) stops the
connector with a clear message; anything else reconnects with capped exponential backoff
and equal jitter, starting over only after a healthy connection (up ``healthy_seconds`` or
``healthy_posts`` new posts): a stream that sends a post and closes is not hammered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from seismo.config import ConnectorSettings, Settings
from seismo.contracts import DLQ, POSTS_RAW, Post, dead_letter
from seismo.errors import SeismoError
from seismo.kafka import ensure_topics, make_producer
from seismo.metrics import Metrics
from seismo.retry import equal_jitter
from seismo.retry import retry_after as parse_retry_after

log = logging.getLogger(__name__)

# the runner's defaults are the ``connectors`` settings' defaults
_DEFAULTS = ConnectorSettings()

Cursor = dict[str, Any]


class SourceError(SeismoError):
    """Base of connector errors."""


class RetryableError(SourceError):
    """A transient upstream failure (drop, 5xx, 429, stall): reconnect after a backoff.

    ``retry_after`` (seconds), when the upstream said how long to wait, overrides the
    backoff if it is longer.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalSourceError(SourceError):
    """A failure retrying can't fix (bad credentials, forbidden, bad config): stop."""


def error_for_status(status: int, what: str, retry_after: str | None = None) -> SourceError:
    """Sort an HTTP error status: 400/401/403/404 stop the connector, anything else retries.

    ``retry_after`` is the raw ``Retry-After`` header (seconds or an HTTP date).
    """
    if status in (400, 401, 403, 404):
        return FatalSourceError(f"{what}: HTTP {status}")
    return RetryableError(f"{what}: HTTP {status}", retry_after=parse_retry_after(retry_after))


def describe(exc: BaseException) -> str:
    """``str(exc)``, or the exception's class name when that is empty (a bare TimeoutError)."""
    return str(exc) or type(exc).__name__


# --- items a source yields ----------------------------------------------------------------


@dataclass(frozen=True)
class Emit:
    """A post for ``posts.raw.v1``; ``cursor`` is where the source stands after it."""

    post: Post
    cursor: Cursor | None = None


@dataclass(frozen=True)
class Skip:
    """A frame or item that is no post: counted and dead-lettered with ``reason``."""

    reason: str
    raw: bytes | str | None = None
    cursor: Cursor | None = None


@dataclass(frozen=True)
class Checkpoint:
    """Progress without a post; ``outcome`` counts the upstream item (``deleted``, ...)."""

    cursor: Cursor | None
    outcome: str | None = None


@dataclass(frozen=True)
class Gap:
    """The upstream could not resume exactly at the cursor: reported and counted."""

    detail: str
    cursor: Cursor | None = None


@dataclass(frozen=True)
class Flush:
    """Flush now; ``ack`` resolves once every earlier item is acknowledged by the sink."""

    ack: asyncio.Future[None]


Item = Emit | Skip | Checkpoint | Gap | Flush

# what a pure ``to_post`` mapping raises for an item it can't map (pydantic's ValidationError
# is a ValueError; an absurd timestamp overflows): the item is skipped, never retried
MAPPING_ERRORS = (ValueError, TypeError, OverflowError)


class Source(Protocol):
    """One platform's stream. ``name`` is the post ``source`` and the metrics label."""

    name: str

    def stream(self, cursor: Cursor | None) -> AsyncIterator[Item]:
        """Connect and yield items from ``cursor`` on; return or raise when disconnected."""
        ...

    def position(self, cursor: Cursor) -> float | None:
        """A number for the cursor gauge (time_us, seq, item id), or None."""
        ...


# --- backoff ------------------------------------------------------------------------------


@dataclass
class Backoff:
    """The reconnect backoff: :func:`seismo.retry.equal_jitter` of the reconnects in a row;
    an upstream's ``Retry-After`` wins when longer (up to ten times the cap)."""

    base: float = 0.5
    cap: float = _DEFAULTS.backoff_cap_seconds
    rng: random.Random | None = None
    attempt: int = 0

    def next_delay(self, at_least: float | None = None) -> float:
        delay = equal_jitter(self.attempt, self.base, self.cap, self.rng)
        self.attempt += 1
        if at_least is not None:
            delay = max(delay, min(at_least, self.cap * 10))
        return delay

    def reset(self) -> None:
        self.attempt = 0


# --- cursors ------------------------------------------------------------------------------


class CursorStore:
    """A connector's cursor as a small JSON file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_source(cls, settings: Settings, name: str) -> CursorStore:
        return cls(
            settings.data_dir / "connectors" / f"{settings.namespace or 'default'}.{name}.json"
        )

    def load(self) -> Cursor | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise SourceError(f"cursor file {self.path} is unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise SourceError(f"cursor file {self.path} does not hold an object")
        return data

    def save(self, cursor: Cursor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(cursor, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)


# --- sinks --------------------------------------------------------------------------------


class PostSink(Protocol):
    async def start(self) -> None: ...
    async def send(self, post: Post) -> None: ...
    async def dead(self, source: str, reason: str, raw: bytes | str | None) -> None: ...
    async def flush(self) -> None: ...
    async def stop(self) -> None: ...


class KafkaPostSink:
    """Posts to ``posts.raw.v1``, dead letters to ``dlq.v1``; idempotent producer, acks=all.

    ``stop`` waits at most ``stop_timeout`` seconds for Kafka to take what is still
    buffered; past that the producer is abandoned (those records were never acknowledged,
    so the runner did not save a cursor past them: a restart reads them again).
    """

    def __init__(self, settings: Settings, *, stop_timeout: float | None = None) -> None:
        self.settings = settings
        self.stop_timeout = (
            settings.connectors.stop_seconds if stop_timeout is None else stop_timeout
        )
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[Any]] = []
        self._stalled = False  # the last flush never completed: Kafka is not answering

    async def start(self) -> None:
        await ensure_topics(self.settings)
        self._producer = make_producer(self.settings, "connector")
        await self._producer.start()

    def _require(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise SourceError("sink used before start()")
        return self._producer

    async def send(self, post: Post) -> None:
        fut = await self._require().send(
            self.settings.topic(POSTS_RAW),
            post.to_bytes(),
            key=post.key.encode(),
            timestamp_ms=int(post.created_at.timestamp() * 1000),
        )
        self._pending.append(fut)

    async def dead(self, source: str, reason: str, raw: bytes | str | None) -> None:
        dl = dead_letter(f"connect:{source}", reason, source, raw)
        fut = await self._require().send(self.settings.topic(DLQ), dl.to_bytes())
        self._pending.append(fut)

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged; raises if any send failed.

        Unbounded (Kafka being down means waiting): the runner puts the time limit on it.
        """
        pending, self._pending = self._pending, []
        for fut in pending:  # if we are cancelled, a failure later is not "never retrieved"
            fut.add_done_callback(_retrieve)
        self._stalled = True
        await self._require().flush()
        self._stalled = False
        for fut in pending:
            fut.result()  # re-raises a failed send

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        self._pending = []
        if producer is None:
            return
        closing = asyncio.ensure_future(producer.stop())  # flushes what is buffered first
        # when the runner's last flush just timed out, waiting the whole bound again is moot
        limit = min(0.5, self.stop_timeout) if self._stalled else self.stop_timeout
        done, _ = await asyncio.wait({closing}, timeout=limit)
        if done:
            closing.result()
            return
        log.warning(
            "Kafka did not take the last records; stopping without them (never "
            "acknowledged: not counted as produced, and no cursor was saved past them)"
        )
        # aiokafka's stop() waits for the buffer to drain or for its sender task to end:
        # ending the sender lets it go on to close the connections
        sender = getattr(getattr(producer, "_sender", None), "sender_task", None)
        if sender is not None:
            sender.cancel()
        done, _ = await asyncio.wait({closing}, timeout=2.0)
        if not done:
            closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


# --- the run loop -------------------------------------------------------------------------


class RecentKeys:
    """A bounded set of recently sent post keys (LRU)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        """True if ``key`` was seen before; remembers it either way."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return False


@dataclass
class RunStats:
    received: int = 0
    produced: int = 0
    skipped: int = 0
    duplicates: int = 0
    gaps: int = 0
    reconnects: int = 0


class ConnectorRunner:
    """Drives one source until ``stop`` is set or a fatal error; see the module docstring."""

    def __init__(
        self,
        source: Source,
        sink: PostSink,
        cursors: CursorStore,
        metrics: Metrics,
        *,
        backoff: Backoff | None = None,
        checkpoint_seconds: float = _DEFAULTS.checkpoint_seconds,
        recent_keys: int = 100_000,
        healthy_seconds: float = 30.0,
        healthy_posts: int = 100,
        flush_timeout: float = _DEFAULTS.flush_timeout_seconds,
        stop_timeout: float = _DEFAULTS.stop_seconds,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.sink = sink
        self.cursors = cursors
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.checkpoint_seconds = checkpoint_seconds
        # the backoff starts over only after a connection that was healthy: up this long,
        # or this many new posts (a stream that sends one post and closes is not healthy)
        self.healthy_seconds, self.healthy_posts = healthy_seconds, healthy_posts
        self.flush_timeout = flush_timeout  # an unacknowledged flush is an error after this
        self.stop_timeout = stop_timeout  # on stop, the last flush gets this long
        self.recent = RecentKeys(recent_keys)
        self.clock = clock
        self.now = now
        self.stats = RunStats()
        self.saved: Cursor | None = None  # durable: everything before it is in Kafka
        self.pending: Cursor | None = None  # newest cursor handed to the sink
        self._last_checkpoint = 0.0
        self._unacked = 0  # posts sent since the last successful flush
        self._fresh = 0  # new posts on the current connection

    async def run(self, stop: asyncio.Event) -> RunStats:
        name = self.source.name
        self.saved = self.pending = self.cursors.load()
        if self.saved is not None:
            log.info("%s: resuming from cursor %s", name, self.saved)
            self._gauge_cursor(self.saved)
        await self._until_stopped(self.sink.start(), stop)  # Kafka may not answer at all
        if stop.is_set():
            await self._stop_sink()
            return self.stats
        self.metrics.connector_up.labels(name).set(1)
        # exported at 0 from the start, so rate() and the alert rules see the first event
        for series in (
            self.metrics.connector_reconnects,
            self.metrics.connector_errors,
            self.metrics.connector_gaps,
        ):
            series.labels(name)
        for outcome in ("received", "produced", "duplicate", "skipped"):
            self.metrics.connector_events.labels(name, outcome)
        try:
            while not stop.is_set():
                connected_at, self._fresh = self.clock(), 0
                try:
                    await self._until_stopped(self._consume(), stop)
                    if stop.is_set():
                        break
                    raise RetryableError("upstream closed the stream")
                except FatalSourceError:
                    raise
                except Exception as exc:
                    await self._until_stopped(self._checkpoint(force=True, quiet=True), stop)
                    healthy = self.clock() - connected_at >= self.healthy_seconds
                    if healthy or self._fresh >= self.healthy_posts:
                        self.backoff.reset()
                    retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
                    delay = self.backoff.next_delay(retry_after)
                    self.stats.reconnects += 1
                    self.metrics.connector_reconnects.labels(name).inc()
                    self.metrics.connector_errors.labels(name).inc()
                    if isinstance(exc, SourceError):
                        log.warning("%s: %s; reconnecting in %.1fs", name, exc, delay)
                    else:
                        log.warning(
                            "%s: %s: %s; reconnecting in %.1fs",
                            name,
                            type(exc).__name__,
                            describe(exc),
                            delay,
                        )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
        finally:
            self.metrics.connector_up.labels(name).set(0)
            await self._checkpoint(force=True, quiet=True, limit=self.stop_timeout)
            await self._stop_sink()
        return self.stats

    async def _stop_sink(self) -> None:
        """Stop the sink, giving up after ``stop_timeout`` (plus a little for the sink's own
        bound): a stop request must end the process even when Kafka is gone."""
        try:
            async with asyncio.timeout(2 * self.stop_timeout + 1.0):
                await self.sink.stop()
        except TimeoutError:
            log.warning("%s: the sink did not stop in time; abandoned", self.source.name)

    @staticmethod
    async def _until_stopped(work: Any, stop: asyncio.Event) -> None:
        """Run ``work`` until it ends or ``stop`` is set (then cancel it)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.done() and not task.cancelled():
            task.result()

    async def _consume(self) -> None:
        name = self.source.name
        async for item in self.source.stream(self.pending):
            if isinstance(item, Emit):
                self.stats.received += 1
                self.metrics.connector_events.labels(name, "received").inc()
                if self.recent.seen(item.post.key):
                    self.stats.duplicates += 1
                    self.metrics.connector_events.labels(name, "duplicate").inc()
                else:
                    await self.sink.send(item.post)
                    self._unacked += 1  # counted as produced once Kafka acknowledges it
                    self._fresh += 1
                    lag = (self.now() - item.post.created_at).total_seconds()
                    self.metrics.connector_lag.labels(name).set(max(0.0, lag))
            elif isinstance(item, Skip):
                self.stats.received += 1
                self.stats.skipped += 1
                self.metrics.connector_events.labels(name, "received").inc()
                self.metrics.connector_events.labels(name, "skipped").inc()
                log.warning("%s: skipped an item: %s", name, item.reason)
                await self.sink.dead(name, item.reason, item.raw)
            elif isinstance(item, Checkpoint) and item.outcome:
                self.stats.received += 1
                self.metrics.connector_events.labels(name, "received").inc()
                self.metrics.connector_events.labels(name, item.outcome).inc()
            elif isinstance(item, Gap):
                self.stats.gaps += 1
                self.metrics.connector_gaps.labels(name).inc()
                log.warning("%s: GAP in the stream: %s", name, item.detail)
            elif isinstance(item, Flush):
                await self._checkpoint(ack=item.ack)
                continue
            cursor = item.cursor
            if cursor is not None:
                self.pending = cursor
            await self._checkpoint()

    async def _checkpoint(
        self,
        *,
        force: bool = False,
        quiet: bool = False,
        ack: asyncio.Future[None] | None = None,
        limit: float | None = None,
    ) -> None:
        """Flush the sink, then save the newest cursor (every ``checkpoint_seconds``).

        With ``ack``: flush now even without a new cursor, and resolve ``ack`` after it.
        A flush not acknowledged within ``limit`` (default ``flush_timeout``) seconds fails
        like a flush that raised: the cursor stays where it was.
        """
        t = self.clock()
        if ack is None and not force and t - self._last_checkpoint < self.checkpoint_seconds:
            return
        self._last_checkpoint = t
        if ack is None and (self.pending is None or self.pending == self.saved):
            return
        try:
            await self._flush(self.flush_timeout if limit is None else limit)
        except Exception as exc:
            if ack is not None and not ack.done():
                ack.set_exception(exc)
            # some posts were not acknowledged: forget the cursor and the keys sent since the
            # last save, so the next connection starts from the durable cursor and resends
            self.pending = self.saved
            self.recent = RecentKeys(self.recent.size)
            self._unacked = 0  # never acknowledged: not produced (they are sent again)
            if quiet:  # else the caller logs it (once)
                log.warning(
                    "%s: sink flush failed (%s); will resume from the saved cursor",
                    self.source.name,
                    describe(exc),
                )
                return
            raise
        if self._unacked:
            self.stats.produced += self._unacked
            self.metrics.connector(self.source.name, "produced", self._unacked)
            self._unacked = 0
        if ack is not None and not ack.done():
            ack.set_result(None)
        if self.pending is None or self.pending == self.saved:
            return
        self.cursors.save(self.pending)
        self.saved = self.pending
        self._gauge_cursor(self.pending)

    async def _flush(self, limit: float) -> None:
        try:
            async with asyncio.timeout(limit) as within:
                await self.sink.flush()
        except TimeoutError:
            if not within.expired():
                raise
            raise RetryableError(
                f"Kafka did not acknowledge the posts within {limit:.0f}s (is it down?)"
            ) from None

    def _gauge_cursor(self, cursor: Cursor) -> None:
        pos = self.source.position(cursor)
        if pos is not None:
            self.metrics.connector_cursor.labels(self.source.name).set(pos)
