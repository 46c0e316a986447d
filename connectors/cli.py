"""``seismo connect SOURCE``: run one live connector until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import signal
from typing import Any

from prometheus_client import CollectorRegistry

from connectors.base import (
    Backoff,
    ConnectorRunner,
    CursorStore,
    FatalSourceError,
    KafkaPostSink,
    RunStats,
    Source,
)
from seismo.cliutil import progress, settings_from
from seismo.config import Settings
from seismo.errors import SeismoError
from seismo.kafka import quiet_kafka
from seismo.metrics import Metrics, serve_metrics

log = logging.getLogger(__name__)

# name -> "module:factory"; a factory takes Settings and returns a Source. Imported lazily
# so one platform's client library is loaded only by its own connector.
SOURCES: dict[str, str] = {
    "bluesky": "connectors.bluesky:build",
    "hackernews": "connectors.hackernews:build",
    "reddit": "connectors.reddit:build",
    "rss": "connectors.rss:build",
    "x": "connectors.x:build",
    "x-push": "connectors.xpush:build",
}


# client libraries' own loggers in a connector process: httpx says INFO per request (the
# atproto SDK fetches a zstd dictionary on every Jetstream connect); prawcore warns about
# each retry in a 370-character line before the error we log ourselves anyway
LIBRARY_LOG_LEVELS = {"httpx": logging.WARNING, "prawcore": logging.ERROR}


def quiet_libraries() -> None:
    """Set the library log levels a connector process runs with (see above)."""
    for name, level in LIBRARY_LOG_LEVELS.items():
        logging.getLogger(name).setLevel(level)
    quiet_kafka()


def build_source(name: str, settings: Settings) -> Source:
    target = SOURCES.get(name)
    if target is None:
        known = ", ".join(sorted(SOURCES)) or "none"
        raise SeismoError(f"unknown connector {name!r} (known: {known})")
    module, _, factory = target.partition(":")
    source: Source = getattr(importlib.import_module(module), factory)(settings)
    return source


async def run_connector(
    source: Source,
    settings: Settings,
    metrics: Metrics,
    stop: asyncio.Event,
    *,
    report_every: float = 10.0,
) -> RunStats:
    runner = ConnectorRunner(
        source,
        KafkaPostSink(settings),
        CursorStore.for_source(settings, source.name),
        metrics,
        backoff=Backoff(cap=settings.connectors.backoff_cap_seconds),
        checkpoint_seconds=settings.connectors.checkpoint_seconds,
        flush_timeout=settings.connectors.flush_timeout_seconds,
        stop_timeout=settings.connectors.stop_seconds,
    )

    async def report() -> None:
        while True:
            await asyncio.sleep(report_every)
            s = runner.stats
            progress(
                f"{source.name}: {s.produced} produced, {s.skipped} skipped, "
                f"{s.duplicates} repeats, {s.reconnects} reconnects, {s.gaps} gaps"
            )

    reporter = asyncio.create_task(report())
    try:
        return await runner.run(stop)
    finally:
        reporter.cancel()


def cmd_connect(args: argparse.Namespace) -> int:
    settings = settings_from(args, metrics_port=args.metrics_port)
    quiet_libraries()
    source = build_source(args.source, settings)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    if settings.metrics_port:
        serve_metrics(registry, settings.web_host, settings.metrics_port)
        progress(
            f"{source.name}: metrics on http://{settings.web_host}:{settings.metrics_port}/metrics"
        )

    async def main() -> RunStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        progress(f"{source.name}: connecting (Ctrl-C to stop)")
        return await run_connector(source, settings, metrics, stop)

    try:
        stats = asyncio.run(main())
    except FatalSourceError as exc:
        raise SeismoError(f"{args.source}: {exc}") from exc
    out: dict[str, Any] = {"source": source.name, **vars(stats)}
    print(json.dumps(out))
    return 0


def register(sub: Any) -> None:
    c = sub.add_parser(
        "connect",
        help="stream posts from a live platform into Kafka",
        description="Run one connector: it streams a platform's posts into posts.raw.v1, "
        "normalized, resuming from its saved cursor after a restart. Credentials and "
        "endpoints come from settings (see README, Connectors).",
    )
    c.add_argument("source", help="which connector: " + ", ".join(sorted(SOURCES)))
    c.add_argument("--metrics-port", type=int, help="serve /metrics on this port")
    c.set_defaults(func=cmd_connect)
