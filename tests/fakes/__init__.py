"""Loopback fakes of upstream platforms, speaking their real protocols, and their helpers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from connectors.base import Source
from connectors.cli import run_connector
from seismo.config import Settings
from seismo.contracts import POSTS_RAW, Post
from seismo.metrics import Metrics
from tests.test_connector_base import MemorySink, value


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Start ``app`` on 127.0.0.1, a free port; returns (runner to clean up, port)."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def connect_to_kafka(source: Source, settings: Settings, n: int) -> list[Any]:
    """Run the connector like ``seismo connect`` until ``n`` records are on posts.raw.v1."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_connector(source, settings, Metrics(CollectorRegistry()), stop))
    consumer = AIOKafkaConsumer(
        settings.topic(POSTS_RAW),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline and not task.done():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += records
    finally:
        await consumer.stop()
        stop.set()
        await asyncio.wait_for(task, 10)
    return got


class SlowSink(MemorySink):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def send(self, p: Post) -> None:
        await asyncio.sleep(self.delay)
        await super().send(p)


def outcomes(metrics: Metrics, source: str, *names: str) -> list[float]:
    return [
        value(metrics, "seismo_connector_events_total", source=source, outcome=n) for n in names
    ]
