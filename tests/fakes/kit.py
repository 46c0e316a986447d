"""Runner plumbing shared by the connector scenario tests."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry

from connectors.base import Backoff, ConnectorRunner, CursorStore, Source
from seismo.contracts import Post
from seismo.metrics import Metrics
from tests.test_connector_base import MemorySink


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
    """A runner with millisecond backoffs that saves its cursor after every item."""
    metrics = Metrics(CollectorRegistry())
    runner = ConnectorRunner(
        source,
        sink,
        store,
        metrics,
        backoff=Backoff(base=0.01, cap=0.05, rng=random.Random(3)),
        checkpoint_seconds=0.0,
    )
    return runner, metrics
