"""``python -m bench xpush``: posts/s through the x-push endpoint into the embedded Kafka.

Each HTTP batch is answered only after Kafka acknowledged it, so this measures the whole
stored-and-answered path: HTTP + parsing + validation + idempotent producer round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from connectors.cli import run_connector
from connectors.xpush import PATH, XPushSource
from seismo.config import load_settings
from seismo.metrics import Metrics

TOKEN = "bench-token"


def x_line(i: int) -> bytes:
    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    data = {
        "id": str(1_900_000_000_000_000_000 + i),
        "text": f"deepseek ascend training news {i} " + "filler words " * 10,
        "created_at": (t0 + timedelta(seconds=i)).isoformat(),
        "author_id": str(i % 500),
        "lang": "en",
    }
    return json.dumps({"data": data}).encode()


async def _run(args: argparse.Namespace, bootstrap: str, data_dir: Path) -> dict[str, Any]:
    settings = load_settings(kafka_bootstrap=bootstrap, namespace="bench", data_dir=data_dir)
    source = XPushSource("127.0.0.1", 0, SecretStr(TOKEN), 50_000_000)
    stop = asyncio.Event()
    runner = asyncio.create_task(
        run_connector(source, settings, Metrics(CollectorRegistry()), stop)
    )
    while not source.bound_port:
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{source.bound_port}{PATH}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    batches = [
        b"\n".join(x_line(i) for i in range(start, min(start + args.batch, args.posts)))
        for start in range(0, args.posts, args.batch)
    ]
    latencies: list[float] = []
    sem = asyncio.Semaphore(args.clients)

    async def push(http: aiohttp.ClientSession, body: bytes) -> None:
        async with sem:
            t = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(push(http, b) for b in batches))
    dt = time.perf_counter() - t0
    stop.set()
    stats = await runner
    latencies.sort()
    return {
        "bench": "xpush",
        "posts": args.posts,
        "batch": args.batch,
        "clients": args.clients,
        "seconds": round(dt, 2),
        "posts_per_s": round(args.posts / dt, 1),
        "batch_latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "batch_latency_max_ms": round(1000 * latencies[-1], 1),
        "produced": stats.produced,
    }


def bench_xpush(args: argparse.Namespace) -> None:
    from seismo.broker import EmbeddedKafka

    with tempfile.TemporaryDirectory() as tmp, EmbeddedKafka(Path(tmp) / "kafka", port=0) as k:
        print(json.dumps(asyncio.run(_run(args, k.bootstrap, Path(tmp) / "seismo"))))


def register(sub: Any) -> None:
    x = sub.add_parser("xpush", help="NDJSON batches through x-push into the embedded Kafka")
    x.add_argument("--posts", type=int, default=20_000)
    x.add_argument("--batch", type=int, default=200, help="posts per HTTP request")
    x.add_argument("--clients", type=int, default=4, help="concurrent pushing clients")
    x.set_defaults(func=bench_xpush)
