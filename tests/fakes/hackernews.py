"""A loopback Hacker News API: ``/v0/maxitem.json``, ``/v0/updates.json``, ``/v0/item/N.json``.

Items live in :attr:`FakeHackerNews.items` (a dict, ``None`` for a JSON null, or a ``str``
or ``bytes`` sent as the raw body). Faults are scripted per path: a list of responses to give
before the real one, each an HTTP status (429 comes with ``Retry-After``) or ``"drop"`` (the TCP
connection is aborted mid-request). ``null_polls[id]`` makes an item answer ``null`` for its
first N requests, like an item that is not yet replicated. Every request is logged, and the
greatest number of item requests in flight at once is recorded.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.fakes import serve

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def hn_items(start: int, n: int) -> dict[int, Any]:
    """Odd ids are stories, even ids comments replying to the story before them."""
    out: dict[int, Any] = {}
    for i in range(start, start + n):
        if i % 2:
            out[i] = {
                "id": i,
                "type": "story",
                "by": f"user{i % 3}",
                "time": T0 + i,
                "title": f"Story {i}",
                "url": f"https://example.com/{i}",
                "score": i,
                "descendants": 1,
            }
        else:
            out[i] = {
                "id": i,
                "type": "comment",
                "by": f"user{i % 3}",
                "time": T0 + i,
                "parent": i - 1,
                "text": f"Comment {i}: it&#x27;s <i>fine</i><p>a &gt; b",
            }
    return out


class FakeHackerNews:
    def __init__(self, items: dict[int, Any] | None = None, *, delay: float = 0.0) -> None:
        self.items: dict[int, Any] = dict(items or {})
        self.faults: dict[str, list[int | str]] = {}
        self.null_polls: dict[int, int] = {}
        self.updates: list[int] = []
        self.delay = delay
        self.requests: list[str] = []
        self._open: dict[int, web.Request] = {}  # item requests being answered, by id()
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v0"

    @property
    def item_requests(self) -> list[int]:
        return [int(p.rsplit("/", 1)[1].split(".")[0]) for p in self.requests if "/item/" in p]

    async def __aenter__(self) -> FakeHackerNews:
        app = web.Application()
        app.router.add_get("/v0/maxitem.json", self._maxitem)
        app.router.add_get("/v0/updates.json", self._updates)
        app.router.add_get("/v0/item/{id}.json", self._item)
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _fault(self, request: web.Request) -> web.Response | None:
        self.requests.append(request.path)
        script = self.faults.get(request.path)
        if not script:
            return None
        fault = script.pop(0)
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        headers = {"Retry-After": "0.05"} if fault == 429 else {}
        return web.Response(status=int(fault), text="scripted", headers=headers)

    async def _maxitem(self, request: web.Request) -> web.Response:
        return self._fault(request) or web.json_response(max(self.items, default=0))

    async def _updates(self, request: web.Request) -> web.Response:
        return self._fault(request) or web.json_response({"items": self.updates, "profiles": []})

    async def _item(self, request: web.Request) -> web.Response:
        # concurrency as the client holds it: a request whose connection the client already
        # dropped (a reconnect cancels its fetches; aiohttp lets the handler run on) no
        # longer counts
        self._open = {
            k: r
            for k, r in self._open.items()
            if r.transport is not None and not r.transport.is_closing()
        }
        self._open[id(request)] = request
        self.max_in_flight = max(self.max_in_flight, len(self._open))
        try:
            await asyncio.sleep(self.delay)
            faulty = self._fault(request)
            if faulty is not None:
                return faulty
            item_id = int(request.match_info["id"])
            if self.null_polls.get(item_id, 0) > 0:
                self.null_polls[item_id] -= 1
                return web.json_response(None)
            item = self.items.get(item_id)
            if isinstance(item, str):
                return web.Response(text=item, content_type="application/json")
            if isinstance(item, bytes):  # sent as is, e.g. not UTF-8
                return web.Response(body=item, content_type="application/json")
            return web.Response(text=json.dumps(item), content_type="application/json")
        finally:
            self._open.pop(id(request), None)
