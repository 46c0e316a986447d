"""Runner plumbing shared by the connector tests: an in-memory sink, a scripted source, a
runner with fast backoffs, running it until a condition holds, reading what reached Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from connectors.base import (
    Backoff,
    Checkpoint,
    ConnectorRunner,
    Cursor,
    CursorStore,
    Emit,
    Item,
    RunStats,
    Source,
)
from connectors.cli import run_connector
from seismo.config import Settings
from seismo.contracts import POSTS_RAW, Post, decode
from seismo.kafka import bootstrap_of
from seismo.metrics import Metrics
from tests.helpers import finishes, read_records, wait_until_async
from tests.timeouts import CONNECTOR_PROGRESS, RECORD_ARRIVES

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def post(i: int) -> Post:
    return Post(id=str(i), source="fake", text=f"post {i}", created_at=T0 + timedelta(seconds=i))


class MemorySink:
    """The runner's sink in memory: ``acked`` once flushed; ``fail_flushes`` lose a batch."""

    def __init__(self, fail_flushes: int = 0) -> None:
        self.buffer: list[Post] = []
        self.acked: list[Post] = []
        self.dead_letters: list[tuple[str, str]] = []
        self.fail_flushes = fail_flushes
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def send(self, p: Post) -> None:
        self.buffer.append(p)

    async def dead(self, source: str, reason: str, raw: bytes | str | None) -> None:
        self.dead_letters.append((source, reason))

    async def flush(self) -> None:
        if self.fail_flushes:
            self.fail_flushes -= 1
            self.buffer.clear()  # the unacknowledged sends are lost
            raise OSError("broker unreachable")
        self.acked += self.buffer
        self.buffer.clear()

    async def stop(self) -> None:
        self.stopped = True


class SlowSink(MemorySink):
    """A sink that takes its time per post (a slow Kafka): upstream must wait, not drop."""

    def __init__(self, delay: float = 0.01) -> None:
        super().__init__()
        self.delay = delay

    async def send(self, p: Post) -> None:
        await asyncio.sleep(self.delay)
        await super().send(p)


Script = Callable[[Cursor | None], AsyncIterator[Item]]


class FakeSource:
    """Each connection runs the next script; records the cursor each connection began at.
    With no scripts left a connection stays silent for ever."""

    name = "fake"

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.started_at: list[Cursor | None] = []

    def stream(self, cursor: Cursor | None) -> AsyncIterator[Item]:
        self.started_at.append(cursor)
        if not self.scripts:
            return forever()
        return self.scripts.pop(0)(cursor)

    def position(self, cursor: Cursor) -> float | None:
        return float(cursor["n"])


async def forever() -> AsyncIterator[Item]:
    await asyncio.Event().wait()
    yield Checkpoint({"n": -1})  # pragma: no cover


def emits(start: int, stop: int, then: Exception | None = None) -> Script:
    async def gen(cursor: Cursor | None) -> AsyncIterator[Item]:
        for i in range(start, stop):
            yield Emit(post(i), {"n": i})
        if then is not None:
            raise then

    return gen


def make_runner(
    source: Source,
    sink: MemorySink,
    store: CursorStore,
    *,
    base: float = 0.001,
    cap: float = 0.01,
    seed: int = 1,
) -> tuple[ConnectorRunner, Metrics]:
    """A runner with millisecond backoffs that saves its cursor after every item."""
    metrics = Metrics(CollectorRegistry())
    runner = ConnectorRunner(
        source,
        sink,
        store,
        metrics,
        backoff=Backoff(base=base, cap=cap, rng=random.Random(seed)),
        checkpoint_seconds=0.0,
    )
    return runner, metrics


def fast_runner(
    source: Source, sink: MemorySink, store: CursorStore
) -> tuple[ConnectorRunner, Metrics]:
    """:func:`make_runner` with backoffs of 10-50 ms."""
    return make_runner(source, sink, store, base=0.01, cap=0.05, seed=3)


def describe(check: Callable[..., Any]) -> str:
    """The source line of a condition, to say in a failure what was waited for."""
    try:
        return "`" + inspect.getsource(check).strip().splitlines()[0] + "`"
    except (OSError, TypeError):
        return repr(check)


async def run_until(
    runner: ConnectorRunner, done: Callable[[], bool], timeout: float = CONNECTOR_PROGRESS
) -> None:
    """Run ``runner`` until ``done()``, then stop it and wait for it to end. Fails naming the
    condition when it does not hold within ``timeout``; raises the runner's own error when
    the runner ends first."""
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_until_async(
            lambda: done() or task.done(),
            lambda: f"{describe(done)} (runner: {runner.stats})",
            timeout,
        )
    finally:
        stop.set()
        await finishes(task, "the connector runner")
    assert done(), f"the runner ended before {describe(done)} ({runner.stats})"


def value(metrics: Metrics, name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def outcomes(metrics: Metrics, source: str, *names: str) -> list[float]:
    return [
        value(metrics, "seismo_connector_events_total", source=source, outcome=n) for n in names
    ]


async def read_posts(
    settings: Settings, n: int, timeout: float = RECORD_ARRIVES
) -> list[tuple[bytes, Post]]:
    """(key, post) of the first ``n`` records of posts.raw.v1; fails if they do not come."""
    records = await read_records(bootstrap_of(settings), settings.topic(POSTS_RAW), n, timeout)
    return [(r.key, decode(Post, r.value)) for r in records]


@contextlib.asynccontextmanager
async def connector_running(source: Source, settings: Settings) -> AsyncIterator[None]:
    """``run_connector`` (the Kafka sink, the settings' cursor store) while the block runs."""
    stop = asyncio.Event()
    task: asyncio.Task[RunStats] = asyncio.create_task(
        run_connector(source, settings, Metrics(CollectorRegistry()), stop)
    )
    try:
        yield
    finally:
        stop.set()
        await finishes(task, "the connector")


async def connect_to_kafka(
    source: Source, settings: Settings, n: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Run the connector like ``seismo connect`` until ``n`` records are on posts.raw.v1."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_connector(source, settings, Metrics(CollectorRegistry()), stop))
    try:
        return await read_records(
            bootstrap_of(settings), settings.topic(POSTS_RAW), n, alive=lambda: not task.done()
        )
    finally:
        stop.set()
        await finishes(task, "the connector")
