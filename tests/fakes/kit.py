"""Runner plumbing shared by the connector scenario tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from connectors.base import ConnectorRunner, CursorStore, RunStats, Source
from connectors.cli import run_connector
from seismo.config import Settings
from seismo.contracts import POSTS_RAW, Post, decode
from seismo.kafka import bootstrap_of
from seismo.metrics import Metrics
from tests.test_connector_base import MemorySink, make_runner


class SlowSink(MemorySink):
    """A sink that takes its time per post (a slow Kafka): upstream must wait, not drop."""

    def __init__(self, delay: float = 0.01) -> None:
        super().__init__()
        self.delay = delay

    async def send(self, p: Post) -> None:
        await asyncio.sleep(self.delay)
        await super().send(p)


def fast_runner(
    source: Source, sink: MemorySink, store: CursorStore
) -> tuple[ConnectorRunner, Metrics]:
    """:func:`make_runner` with backoffs of 10-50 ms."""
    return make_runner(source, sink, store, base=0.01, cap=0.05, seed=3)


async def read_posts(settings: Settings, n: int, timeout: float = 30) -> list[tuple[bytes, Post]]:
    """(key, post) of the first ``n`` records of posts.raw.v1 (fewer if ``timeout`` passes)."""
    consumer = AIOKafkaConsumer(
        settings.topic(POSTS_RAW),
        bootstrap_servers=bootstrap_of(settings),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got: list[tuple[bytes, Post]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                got += [(r.key, decode(Post, r.value)) for r in records]
    finally:
        await consumer.stop()
    return got


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
        await asyncio.wait_for(task, 20)


async def run_then_stop(
    runner: ConnectorRunner, done: Callable[[], bool], timeout: float = 15
) -> float:
    """Run until ``done()`` (or ``timeout``), then stop; returns how long stopping took."""
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.005)
    t = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 10)
    return time.monotonic() - t
