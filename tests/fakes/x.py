"""An X API v2 filtered-stream server on loopback: rules endpoints and a chunked stream.

Each stream connection plays the next :class:`Conn` script: an HTTP status (with headers),
then lines (NDJSON posts, garbage), then an ending: ``close`` (end the response), ``drop``
(abort the connection mid-line), ``beat`` (keep-alive ``\\r\\n`` every ``beat_seconds``,
plus lines put on ``live``, until the test ends) or ``stall`` (hold it open, send nothing).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TOKEN = "x-test-token"


def x_post(i: int, **extra: Any) -> dict[str, Any]:
    """A v2 stream message for post number ``i`` (ids rise with i)."""
    data = {
        "id": str(1_800_000_000_000_000_000 + i),
        "text": f"deepseek news number {i}",
        "created_at": (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", ".000Z"),
        "author_id": "42",
        "lang": "en",
        "conversation_id": str(1_800_000_000_000_000_000 + i),
        **extra,
    }
    return {
        "data": data,
        "includes": {"users": [{"id": "42", "username": "newsdesk", "name": "News"}]},
        "matching_rules": [{"id": "1", "tag": "seismo:dossier:china-ai"}],
    }


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


def ndjson(*objs: object) -> bytes:
    """Newline-delimited JSON: the body of a push to the x-push endpoint."""
    return b"\n".join(json.dumps(o).encode() for o in objs) + b"\n"


@dataclass
class Conn:
    lines: list[bytes] = field(default_factory=list)
    end: str = "beat"  # close | drop | beat | stall
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class XServer:
    def __init__(self, token: str = TOKEN, beat_seconds: float = 0.05) -> None:
        self.token = token
        self.beat_seconds = beat_seconds
        self.rules: list[dict[str, str]] = []
        self.rules_faults: list[int] = []  # statuses GET rules answers before the real one
        self.rule_posts: list[dict[str, Any]] = []
        self.conns: list[Conn] = []
        self.connects: list[dict[str, str]] = []  # query params of each stream request
        self.live: asyncio.Queue[bytes] = asyncio.Queue()  # lines pushed to the open stream
        self._next_rule_id = 1000
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.base = ""

    async def start(self) -> XServer:
        app = web.Application()
        app.router.add_get("/2/tweets/search/stream/rules", self._get_rules)
        app.router.add_post("/2/tweets/search/stream/rules", self._post_rules)
        app.router.add_get("/2/tweets/search/stream", self._stream)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}/2"
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(
                {"title": "Unauthorized", "type": "about:blank", "status": 401}, status=401
            )
        return None

    async def _get_rules(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied:
            return denied
        if self.rules_faults:
            status = self.rules_faults.pop(0)
            return web.json_response({"title": "error", "status": status}, status=status)
        return web.json_response({"data": self.rules, "meta": {"result_count": len(self.rules)}})

    async def _post_rules(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied:
            return denied
        body = await request.json()
        self.rule_posts.append(body)
        if "delete" in body:
            ids = set(body["delete"]["ids"])
            self.rules = [r for r in self.rules if r["id"] not in ids]
            return web.json_response({"meta": {"summary": {"deleted": len(ids)}}})
        added = []
        for rule in body.get("add", []):
            self._next_rule_id += 1
            added.append({"id": str(self._next_rule_id), **rule})
        self.rules += added
        return web.json_response({"data": added, "meta": {"summary": {"created": len(added)}}})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        denied = self._denied(request)
        if denied:
            return denied
        self.connects.append(dict(request.query))
        conn = self.conns.pop(0) if self.conns else Conn()
        if conn.status != 200:
            return web.json_response(
                {"title": "error", "status": conn.status}, status=conn.status, headers=conn.headers
            )
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for raw in conn.lines:
            await resp.write(raw)
        if conn.end == "close":
            return resp
        if conn.end == "drop":  # abort mid-line, without the terminating chunk
            await asyncio.sleep(0.2)  # let the client read the whole lines first
            await resp.write(b'{"data": {"id": "18')
            assert request.transport is not None
            request.transport.close()
            return resp
        while not self._closing.is_set():
            if conn.end == "stall":
                await self._closing.wait()
                break
            try:
                raw = await asyncio.wait_for(self.live.get(), self.beat_seconds)
            except TimeoutError:
                raw = b"\r\n"
            try:
                await resp.write(raw)
            except (ConnectionError, RuntimeError):
                break
        return resp
