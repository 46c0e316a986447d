"""``seismo connect SOURCE``: run one live connector until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import signal
import time
from collections.abc import Callable
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
# aiokafka logs an ERROR per connection attempt (tens a second with the broker down): the
# first of each kind is kept, repeats within a minute are counted into the next one shown
KAFKA_LOGGERS = ("aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.producer.sender")


class FirstOfRepeats(logging.Filter):
    """Pass a message (by logger and format string) at most once per ``window`` seconds;
    the next one shown says how many were held back."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window, self.clock = window, clock
        self._shown: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._shown.get(key)
        if last is not None and now - last < self.window:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._shown[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.window:.0f}s)"
        return True


def quiet_libraries() -> None:
    """Set the library log levels a connector process runs with (see above)."""
    for name, level in LIBRARY_LOG_LEVELS.items():
        logging.getLogger(name).setLevel(level)
    repeats = FirstOfRepeats()
    for name in KAFKA_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, FirstOfRepeats) for f in logger.filters):
            logger.addFilter(repeats)


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
        backoff=Backoff(cap=settings.connector_backoff_cap_seconds),
        checkpoint_seconds=settings.connector_checkpoint_seconds,
        flush_timeout=settings.connector_flush_timeout_seconds,
        stop_timeout=settings.connector_stop_seconds,
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
