"""Connector throughput: the real client against its loopback fake server, no Kafka.

    python -m bench connect [--source jetstream|jetstream-zstd|firehose|hackernews] [--posts N]

The fake server runs in the same process (frames encoded once beforehand), so the figure is
a lower bound of what one connector process decodes and normalizes per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from connectors.base import ConnectorRunner, CursorStore, Source
from connectors.bluesky import build as build_bluesky
from connectors.hackernews import HackerNewsSource
from seismo.config import load_settings
from seismo.contracts import Post
from seismo.metrics import Metrics
from tests.fakes.bluesky import FakeFirehose, FakeJetstream, post_events
from tests.fakes.hackernews import FakeHackerNews, hn_items

SOURCES = ("jetstream", "jetstream-zstd", "firehose", "hackernews")


class CountingSink:
    def __init__(self) -> None:
        self.n = 0

    async def start(self) -> None: ...

    async def send(self, post: Post) -> None:
        self.n += 1

    async def dead(self, source: str, reason: str, raw: bytes | str | None) -> None: ...

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


async def _measure(source: Source, store: CursorStore, n: int) -> float:
    sink = CountingSink()
    runner = ConnectorRunner(source, sink, store, Metrics(CollectorRegistry()))
    stop = asyncio.Event()
    t = time.perf_counter()
    task = asyncio.create_task(runner.run(stop))
    while sink.n < n and not task.done():
        await asyncio.sleep(0.01)
    dt = time.perf_counter() - t
    stop.set()
    await task
    return dt


async def _run(kind: str, n: int, tmp: Path) -> dict[str, Any]:
    store = CursorStore(tmp / "cursor.json")
    server: Any
    if kind == "hackernews":
        server = FakeHackerNews(hn_items(1, n))
        store.save({"id": 0})
        async with server:
            settings = load_settings(hn_api_url=server.url, data_dir=tmp)
            dt = await _measure(HackerNewsSource(settings), store, n)
    else:
        events = post_events(1, n)
        server = (
            FakeFirehose(events)
            if kind == "firehose"
            else FakeJetstream(events, compress=kind == "jetstream-zstd")
        )
        for ev in events:
            server.encoded(ev)
        cursor = {"seq": 0} if kind == "firehose" else {"time_us": events[0].time_us, "seq": 0}
        store.save(cursor)
        async with server:
            settings = load_settings(
                bluesky_mode="firehose" if kind == "firehose" else "jetstream",
                bluesky_jetstream_url=server.base_uri,
                bluesky_firehose_url=server.base_uri,
                data_dir=tmp,
            )
            dt = await _measure(build_bluesky(settings), store, n)
    return {
        "bench": "connect",
        "source": kind,
        "posts": n,
        "seconds": round(dt, 2),
        "posts_per_s": round(n / dt),
    }


def bench_connect(args: argparse.Namespace) -> None:
    for kind in [args.source] if args.source else SOURCES:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(asyncio.run(_run(kind, args.posts, Path(tmp)))), flush=True)


def register(sub: Any) -> None:
    c = sub.add_parser("connect", help="connector decode throughput against loopback fakes")
    c.add_argument("--source", choices=SOURCES, help="one source (default: all)")
    c.add_argument("--posts", type=int, default=20_000)
    c.set_defaults(func=bench_connect)
