"""The live alert page (``seismo alerts serve``): alerts as they open, update and resolve.

A small aiohttp server with its own Kafka consumer on ``alerts.v1`` (no consumer group: it
reads every partition, so it shows every alert whichever worker raised it). On start it
reads back the last ``live_backlog`` records of each partition, so a restart or a newly
opened page shows recent alerts at once, then follows the topic. Browsers get the board
over Server-Sent Events: a ``snapshot`` event, then one ``alert`` event per new version.

Routes: ``/`` the page, ``/events`` the SSE stream, ``/api/alerts`` the board as JSON (both
take ``dossier=`` (repeatable; ``-`` = no dossier) and ``severity=`` (minimum) filters),
``/healthz``, and ``/metrics`` (Prometheus text of this process: ``seismo_live_clients``).
All but ``/healthz`` and ``/metrics`` need the token: ``?token=``, ``Authorization: Bearer``,
or the cookie the page sets after a token in its URL was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from seismo.config import Settings
from seismo.contracts import ALERTS, Alert, decode
from seismo.errors import ContractError, SeismoError
from seismo.kafka import bootstrap_of, end_offsets
from seismo.metrics import Metrics
from seismo.ports import binding
from seismo.verify import bearer_of
from streams.payloads import SEVERITY_ORDER, reason_of

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("static") / "live.html"
COOKIE = "seismo_live"
PUBLIC = frozenset({"/healthz", "/metrics"})  # no token: probes and Prometheus scrapes
MAX_EVIDENCE = 3
NO_DOSSIER = "-"  # the dossier filter's value for alerts outside every dossier


@dataclass(frozen=True)
class Filter:
    dossiers: frozenset[str] = frozenset()
    min_severity: str | None = None

    @classmethod
    def from_query(cls, query: Any) -> Filter:
        dossiers = frozenset(d for v in query.getall("dossier", []) for d in v.split(",") if d)
        sev = query.get("severity") or None
        if sev is not None and sev not in SEVERITY_ORDER:
            raise web.HTTPBadRequest(text=f"severity must be one of {', '.join(SEVERITY_ORDER)}")
        return cls(dossiers, sev)

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.dossiers and (entry.get("dossier") or NO_DOSSIER) not in self.dossiers:
            return False
        if self.min_severity is None:
            return True
        rank = SEVERITY_ORDER.index
        sev = entry.get("severity")
        return sev in SEVERITY_ORDER and rank(sev) >= rank(self.min_severity)


def entry_of(alert: Alert, raw: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one alert version: the record, fewer evidence posts, a summary."""
    out = {k: v for k, v in raw.items() if k != "evidence"}
    out["evidence"] = [e for e in raw.get("evidence", []) if isinstance(e, dict)][:MAX_EVIDENCE]
    out["why"] = reason_of(alert, raw)
    return out


@dataclass
class AlertBoard:
    """The newest version of the most recent alerts, and who is listening. No I/O."""

    capacity: int = 200
    alerts: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    listeners: dict[asyncio.Queue[dict[str, Any]], Filter] = field(default_factory=dict)
    caught_up: bool = False  # the recent alerts of every partition have been read back

    def add(self, alert: Alert, raw: dict[str, Any]) -> dict[str, Any] | None:
        """Record one alert version; returns its entry if it is news (not an old version)."""
        have = self.alerts.get(alert.id)
        if have is not None and have["version"] >= alert.version:
            return None
        entry = entry_of(alert, raw)
        self.alerts.pop(alert.id, None)
        self.alerts[alert.id] = entry  # most recently changed last
        while len(self.alerts) > self.capacity:
            self.alerts.popitem(last=False)
        for queue, flt in list(self.listeners.items()):
            if flt.matches(entry):
                try:
                    queue.put_nowait(entry)
                except asyncio.QueueFull:  # a stuck browser: it reconnects and resyncs
                    self.listeners.pop(queue, None)
        return entry

    def snapshot(self, flt: Filter) -> list[dict[str, Any]]:
        """Matching alerts, most recently changed first."""
        return [e for e in reversed(self.alerts.values()) if flt.matches(e)]

    def dossiers(self) -> list[str]:
        return sorted({e["dossier"] for e in self.alerts.values() if e.get("dossier")})

    @contextlib.contextmanager
    def listen(self, flt: Filter, maxsize: int = 1000) -> Any:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self.listeners[queue] = flt
        try:
            yield queue
        finally:
            self.listeners.pop(queue, None)


def ingest_record(board: AlertBoard, value: bytes | None) -> dict[str, Any] | None:
    """One alerts.v1 record onto the board; unreadable records are logged and skipped."""
    try:
        alert = decode(Alert, value or b"")
    except ContractError as exc:
        log.warning("live page skips an unreadable alert: %s", exc.reason)
        return None
    return board.add(alert, json.loads(value or b""))


async def follow_alerts(settings: Settings, board: AlertBoard) -> None:
    """Read back the recent alerts of every partition, then follow the topic forever."""
    topic = settings.topic(ALERTS)
    tps: list[TopicPartition] = []
    for _ in range(50):  # a just-created topic can take a moment to show its partitions
        tps = sorted(await end_offsets(bootstrap_of(settings), [topic]))
        if tps:
            break
        await asyncio.sleep(0.2)
    if not tps:
        raise SeismoError(f"topic {topic} does not exist")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_of(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - settings.live_backlog))
        backlog = {tp for tp in tps if ends[tp] > begins[tp]}
        log.info("live page follows %s (%d partitions)", topic, len(tps))
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    ingest_record(board, rec.value)
            if not board.caught_up:
                for tp in list(backlog):
                    if await consumer.position(tp) >= ends[tp]:
                        backlog.discard(tp)
                board.caught_up = not backlog
    finally:
        await consumer.stop()


def _authorized(request: web.Request, token: str) -> bool:
    offered = [
        request.query.get("token", ""),
        bearer_of(request.headers.get("Authorization", "")),
        request.cookies.get(COOKIE, ""),
    ]
    return any(o and hmac.compare_digest(o.encode(), token.encode()) for o in offered)


def make_app(
    board: AlertBoard,
    token: str,
    dossiers: list[str] | None = None,
    metrics: Metrics | None = None,
    keepalive_seconds: float = 15.0,
) -> web.Application:
    """The web app over ``board``; ``dossiers`` (from the watchlist) seed the filter list.
    An idle event stream gets a comment every ``keepalive_seconds`` (it also finds out
    that a browser went away)."""
    known = sorted(set(dossiers or []))
    metrics = metrics or Metrics(CollectorRegistry(), process="live")

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in PUBLIC and not _authorized(request, token):
            raise web.HTTPUnauthorized(text="seismo live alerts: a valid token is required\n")
        return await handler(request)

    async def page(request: web.Request) -> web.StreamResponse:
        resp = web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})
        if request.query.get("token"):
            resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return resp

    def payload(flt: Filter) -> dict[str, Any]:
        return {
            "alerts": board.snapshot(flt),
            "dossiers": sorted(set(known) | set(board.dossiers())),
        }

    async def api_alerts(request: web.Request) -> web.Response:
        return web.json_response(payload(Filter.from_query(request.query)))

    async def events(request: web.Request) -> web.StreamResponse:
        flt = Filter.from_query(request.query)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        metrics.live_clients.inc()
        try:
            with board.listen(flt) as queue:
                await resp.write(_sse("snapshot", payload(flt)))
                while True:
                    try:
                        entry = await asyncio.wait_for(queue.get(), timeout=keepalive_seconds)
                    except TimeoutError:
                        await resp.write(b": keep-alive\n\n")
                        continue
                    await resp.write(_sse("alert", entry))
        except ConnectionResetError:  # a closed tab: normal, the stream just ends
            log.debug("live page: client %s went away", request.remote)
        finally:  # the browser went away (a write failed or the handler is cancelled)
            metrics.live_clients.dec()
        return resp

    async def prometheus(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "alerts": len(board.alerts), "caught_up": board.caught_up}
        )

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", page)
    app.router.add_get("/events", events)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    return app


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def run_live(
    settings: Settings,
    token: str,
    dossiers: list[str],
    stop: asyncio.Event,
    on_listening: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve the page until ``stop`` is set (or the Kafka follower fails)."""
    board = AlertBoard(capacity=settings.live_backlog)
    follower = asyncio.create_task(follow_alerts(settings, board))
    runner = web.AppRunner(make_app(board, token, dossiers), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.live_host, settings.live_port, shutdown_timeout=1.0)
    try:
        with binding(settings.live_host, settings.live_port):
            await site.start()
        on_listening(f"http://{settings.live_host}:{settings.live_port}/")
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({follower, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if follower.done():
            follower.result()  # raises what stopped it
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower  # its error, if any, is already on its way up
        await runner.cleanup()
