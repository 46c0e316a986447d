"""``python -m bench sink-isolation``: a healthy webhook's delivery delay, alone and beside
a webhook that refuses connections and one that accepts and never answers.

The worker's path from an alert record to the sinks (``AlertSinks.hand_off``: one lane per
sink) is driven at a steady rate with the shipped retry settings (5 tries, 0.5 s backoff
capped at 30 s, 5 s timeout); the delay of a version is from its hand-off to its arrival at
the healthy receiver. ``--serial N`` also measures the path before sink lanes (every sink of
one version awaited together, version after version) on the first N versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from seismo.contracts import Alert
from seismo.metrics import Metrics
from seismo.verify import verify_signature
from seismo.watchlist import load_watchlist
from streams.delivery import AlertSinks, DeliveryFailure, Handoff, RetryPolicy, WebhookSink

WORDS = "ai chip model china huawei ascend nvidia export control deepseek glm zhipu".split()


def bench_alerts(n: int, versions: int = 1, words: list[str] = WORDS) -> list[Alert]:
    """``n`` alerts with 12 evidence posts each, ``versions`` versions of each in turn."""
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    evidence = [
        {"post_id": f"x:{i}", "source": "x", "created_at": t0.isoformat(), "text": " ".join(words)}
        for i in range(12)
    ]
    return [
        Alert.model_validate(
            {
                "id": f"a{i}",
                "version": v,
                "status": "open" if v == 1 else "update",
                "kind": "claim",
                "key": "claim:c",
                "label": "c",
                "terms": words[:5],
                "dossier": "china-ai-rising",
                "claim": "glm5-trained-on-ascend",
                "window_start": t0,
                "window_seconds": 3600,
                "raised_at": t0,
                "first_seen": t0,
                "observed": 12,
                "expected": 0.5,
                "score": 9.0,
                "evidence": evidence,
                "detected_at": t0,
            }
        )
        for i in range(n)
        for v in range(1, versions + 1)
    ]


class Receiver:
    """A loopback webhook that verifies the signature and notes when each key arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.url = ""

    async def __aenter__(self) -> Receiver:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            verify_signature(body, request.headers.get("Seismo-Signature"), ["bench"])
            self.arrived.setdefault(request.headers["Idempotency-Key"], time.perf_counter())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def _handoff(alert: Alert, table: dict[str, int], parked: list[DeliveryFailure]) -> Handoff:
    def record(key: str) -> None:
        table[key] = alert.version

    async def park(failure: DeliveryFailure) -> None:
        parked.append(failure)

    async def finished() -> None:
        pass

    raw = alert.model_dump(mode="json", exclude_none=True)
    return Handoff(alert, raw, table.get, record, park, finished)


def _summary(scenario: str, delays: list[float], **extra: Any) -> dict[str, Any]:
    ms = sorted(1000 * d for d in delays)
    return {
        "bench": "sink-isolation",
        "scenario": scenario,
        "versions": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
        "max_ms": round(ms[-1], 2),
        **extra,
    }


async def _run(alerts: list[Alert], rate: float, faulty: bool, serial: bool) -> dict[str, Any]:
    policy = RetryPolicy()  # the shipped settings
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)  # accepts, never answers
    with refused, hanging:
        async with Receiver() as rx:
            urls = [rx.url]
            if faulty:
                urls = [
                    f"http://127.0.0.1:{refused.getsockname()[1]}/hook",
                    f"http://127.0.0.1:{hanging.getsockname()[1]}/hook",
                    rx.url,
                ]
            hooks = [
                WebhookSink(u, policy, secrets=["bench"], watchlist=load_watchlist()) for u in urls
            ]
            sinks = AlertSinks(Metrics(CollectorRegistry()), webhooks=hooks)
            table: dict[str, int] = {}
            parked: list[DeliveryFailure] = []
            sent_at: dict[str, float] = {}
            t0 = time.perf_counter()
            for i, alert in enumerate(alerts):
                key = f"{alert.id}.v{alert.version}"
                due = t0 + i / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent_at[key] = time.perf_counter()
                if serial:  # before sink lanes: the agent awaited every sink of a version
                    parked += await sinks.deliver(alert)
                else:
                    sinks.hand_off(_handoff(alert, table, parked))
            deadline = time.perf_counter() + 120.0
            while len(rx.arrived) < len(alerts):
                if time.perf_counter() > deadline:
                    missing = sorted(set(sent_at) - set(rx.arrived))
                    raise SystemExit(f"{len(missing)} versions never arrived: {missing[:5]}")
                await asyncio.sleep(0.01)
            wall = time.perf_counter() - t0
            await sinks.close()
    delays = [rx.arrived[k] - sent_at[k] for k in sent_at]
    # the serial path's delay counts from when the version was due, not when its turn came
    if serial:
        delays = [rx.arrived[k] - (t0 + i / rate) for i, k in enumerate(sent_at)]
    name = ("serial" if serial else "lanes") + (": refusing + hanging + healthy" if faulty else "")
    return _summary(name, delays, parked_so_far=len(parked), seconds=round(wall, 1))


def bench_sink_isolation(args: argparse.Namespace) -> None:
    alerts = bench_alerts(args.alerts // args.versions, args.versions)
    for _ in range(args.repeat):  # interleaved: the machine's load drifts between runs
        for faulty in (False, True):
            out = asyncio.run(_run(alerts, args.rate, faulty, serial=False))
            print(json.dumps({**out, "healthy_only": not faulty}), flush=True)
    if args.serial:
        out = asyncio.run(_run(alerts[: args.serial], args.rate, True, serial=True))
        print(json.dumps(out), flush=True)


def register(sub: Any) -> None:
    s = sub.add_parser(
        "sink-isolation", help="a healthy webhook's delay beside a refusing and a hanging one"
    )
    s.add_argument("--alerts", type=int, default=600, help="alert versions handed off")
    s.add_argument("--versions", type=int, default=3, help="versions per alert")
    s.add_argument("--rate", type=float, default=10.0, help="versions per second")
    s.add_argument("--repeat", type=int, default=3)
    s.add_argument("--serial", type=int, default=0, help="also the pre-lane path on N versions")
    s.set_defaults(func=bench_sink_isolation)
