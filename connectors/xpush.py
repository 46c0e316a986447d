"""``x-push``: an HTTP endpoint that accepts X-style posts for sources we don't pull ourselves.

``POST /posts`` with ``Authorization: Bearer <x_push_token>``; the body is one X v2 post
object, a v2 envelope ``{"data": {...} | [...], "includes": {"users": [...]}}``, a JSON
array of either, or NDJSON (one of those per line). Bodies over ``x_push_max_bytes`` get 413.

Each post is validated on its own: bad ones are dead-lettered and listed in the answer, good
ones produced (as source ``x``, so a post also seen on the filtered stream is one post).
The answer comes only after Kafka acknowledged them (a :class:`Flush` through the runner):
2xx means stored. On 503 (not stored, or we are overloaded) the client retries; posts it
sends twice are dropped by post key, here and downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import SecretStr, ValidationError

from connectors.base import Cursor, Emit, FatalSourceError, Flush, Item, Skip, describe
from connectors.x import POST_ERRORS, to_post, users_of
from seismo.config import Settings
from seismo.contracts import json_problem
from seismo.errors import describe as describe_invalid
from seismo.ports import port_error
from seismo.verify import bearer_of

log = logging.getLogger(__name__)

PATH = "/posts"


@dataclass
class Batch:
    items: list[Item]
    ack: asyncio.Future[None]


@dataclass
class _Conn:
    """One connection's server and the batches it queued."""

    queue: asyncio.Queue[Batch]
    runner: web.AppRunner
    waiting: set[asyncio.Future[None]] = field(default_factory=set)
    closed: bool = False


@dataclass
class Verdict:
    line: int
    id: str | None = None
    error: str | None = None


def parse_body(body: bytes, now: datetime) -> tuple[list[Item], list[Verdict]]:
    """Items to produce and a verdict per post (NDJSON: per line) of a push body.

    Never raises on what a client sent: a line that is not JSON (or past the parser's limits:
    nesting, integer digits), an envelope of the wrong shape or an object that is not a post
    gets its verdict and a Skip (dead letter), and the other lines of the body go on.
    """
    try:
        docs: list[tuple[int, Any, bytes]] = [(1, json.loads(body), body)]
    except (ValueError, RecursionError):  # not one JSON document: NDJSON, or bad
        lines = body.splitlines()
        docs = [(n, None, line) for n, line in enumerate(lines, 1) if line.strip()]
    items: list[Item] = []
    verdicts: list[Verdict] = []

    def reject(line_no: int, obj_id: str | None, reason: str, raw: bytes) -> None:
        items.append(Skip(f"push line {line_no}: {reason}", raw[:2000]))
        verdicts.append(Verdict(line_no, obj_id, reason))

    for line_no, doc, raw in docs:
        if doc is None:
            try:
                doc = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                reject(line_no, None, json_problem(exc)[1], raw)
                continue
        try:
            posts = _posts_in(doc)
        except (*POST_ERRORS, ValidationError) as exc:  # e.g. includes of the wrong type
            problem = "arrays nested too deep" if isinstance(exc, RecursionError) else _short(exc)
            reject(line_no, None, f"not an X post envelope: {problem}", raw)
            continue
        for obj, users in posts:
            try:
                post = to_post(obj, users, now)
            except (*POST_ERRORS, ValidationError) as exc:
                reason = f"not an X post: {type(exc).__name__}: {_short(exc)}"
                reject(line_no, _id_of(obj), reason, _excerpt(obj, raw))
                continue
            items.append(Emit(post))
            verdicts.append(Verdict(line_no, post.id))
    return items, verdicts


def _posts_in(doc: Any) -> list[tuple[Any, dict[str, str]]]:
    """(post object, author names) pairs in a bare post, an envelope or an array."""
    if isinstance(doc, list):
        return [p for d in doc for p in _posts_in(d)]
    if isinstance(doc, dict) and "data" in doc:
        users = users_of(doc)
        data = doc["data"]
        return [(d, users) for d in (data if isinstance(data, list) else [data])]
    return [(doc, {})]


def _id_of(obj: Any) -> str | None:
    pid = obj.get("id") if isinstance(obj, dict) else None
    return str(pid)[:256] if isinstance(pid, str | int) else None


def _excerpt(obj: Any, raw: bytes) -> bytes:
    """A rejected post object as JSON for its dead letter (its body line if it can't be)."""
    try:
        return json.dumps(obj).encode()
    except (ValueError, RecursionError):
        return raw


def _short(exc: Exception) -> str:
    text = describe_invalid(exc) if isinstance(exc, ValidationError) else str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


class XPushSource:
    """Serves the push endpoint while the runner consumes; see the module docstring."""

    name = "x-push"

    def __init__(
        self,
        host: str,
        port: int,
        token: SecretStr | None,
        max_bytes: int,
        *,
        ack_timeout: float = 30.0,
        queue_size: int = 64,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if token is None or not token.get_secret_value():
            raise FatalSourceError("x_push_token is not set: the push endpoint needs a token")
        self.host, self.port = host, port
        self._token = token
        self.max_bytes = max_bytes
        self.ack_timeout = ack_timeout
        self.queue_size = queue_size
        self.now = now
        self.bound_port: int | None = None  # the port actually listened on (port 0 = any)
        self._conn: _Conn | None = None  # the server of the current connection

    def position(self, cursor: Cursor) -> float | None:
        return None

    async def stream(self, cursor: Cursor | None) -> AsyncIterator[Item]:
        if self._conn is not None:  # the previous connection's generator was not closed yet
            await self._close(self._conn)
        app = web.Application(client_max_size=self.max_bytes)
        app.router.add_post(PATH, self._handle)
        app.router.add_get("/healthz", self._health)
        conn = _Conn(asyncio.Queue(self.queue_size), web.AppRunner(app, access_log=None))
        await conn.runner.setup()
        try:
            site = web.TCPSite(conn.runner, self.host, self.port, reuse_address=True)
            await site.start()
        except OSError as exc:
            await self._close(conn)
            raise FatalSourceError(str(port_error(self.host, self.port, exc))) from exc
        self._conn = conn
        self.bound_port = conn.runner.addresses[0][1]
        log.info("x-push: listening on http://%s:%s%s", self.host, self.bound_port, PATH)
        try:
            while True:
                batch = await conn.queue.get()
                for item in batch.items:
                    yield item
                yield Flush(batch.ack)
        finally:
            await self._close(conn)

    async def _close(self, conn: _Conn) -> None:
        """Stop taking pushes on ``conn``; pushes waiting on it are answered 503."""
        if self._conn is conn:
            self._conn = None
        if conn.closed:
            return
        conn.closed = True
        for fut in conn.waiting:
            if not fut.done():
                fut.set_exception(ConnectionError("connector stopped before the posts were stored"))
        await conn.runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def _authorized(self, request: web.Request) -> bool:
        given = bearer_of(request.headers.get("Authorization", ""))
        want = self._token.get_secret_value()
        return bool(given) and hmac.compare_digest(given.encode(), want.encode())

    async def _handle(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        if request.content_length is not None and request.content_length > self.max_bytes:
            return _error(413, f"body over {self.max_bytes} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body over {self.max_bytes} bytes")
        items, verdicts = parse_body(body, self.now())
        if not verdicts:
            return _error(400, "no posts in the body")
        conn = self._conn
        if conn is None or conn.closed:
            return _error(503, "not ready", {"Retry-After": "1"})
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            conn.queue.put_nowait(Batch(items, ack))
        except asyncio.QueueFull:
            return _error(503, "overloaded: try again shortly", {"Retry-After": "1"})
        conn.waiting.add(ack)
        try:
            async with asyncio.timeout(self.ack_timeout):
                await asyncio.shield(ack)
        except Exception as exc:
            reason = (
                f"Kafka did not acknowledge it within {self.ack_timeout:g}s"
                if isinstance(exc, TimeoutError) and not ack.done()
                else describe(exc)
            )
            log.warning("x-push: a batch of %d posts was not stored: %s", len(items), reason)
            return _error(503, "posts not stored; retry", {"Retry-After": "1"})
        finally:
            conn.waiting.discard(ack)
            if not ack.done():
                ack.cancel()
            with contextlib.suppress(BaseException):
                ack.exception()  # mark as retrieved
        rejected = [
            {"line": v.line, "id": v.id, "error": v.error} for v in verdicts if v.error is not None
        ]
        accepted = [v.id for v in verdicts if v.error is None]
        status = 200 if accepted else 400
        return web.json_response(
            {"accepted": len(accepted), "ids": accepted, "rejected": rejected}, status=status
        )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def build(settings: Settings) -> XPushSource:
    return XPushSource(
        settings.x_push_host,
        settings.x_push_port,
        settings.x_push_token,
        settings.x_push_max_bytes,
    )
