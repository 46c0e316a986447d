"""A Reddit server on loopback: the OAuth token endpoint and subreddit listings.

``POST /api/v1/access_token`` checks HTTP basic auth (client id/secret) and the password
grant; ``GET /r/{subs}/new`` and ``/r/{subs}/comments`` answer Listing JSON (newest first,
``before``/``limit`` like Reddit) with ``X-Ratelimit-*`` headers, for the bearer token only.
Tests add items, queue failures per listing and read the requests made.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CLIENT_ID, SECRET, USER, PASSWORD = "cid", "csecret", "bot", "hunter2"
ACCESS_TOKEN = "reddit-access-token"
T0 = 1_795_000_000.0  # epoch seconds


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"message": "error"}'


@dataclass
class Listing:
    items: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    failures: list[Failure] = field(default_factory=list)
    requests: list[tuple[float, dict[str, str]]] = field(default_factory=list)


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def submission(i: int, **extra: Any) -> dict[str, Any]:
    sid = _b36(100_000 + i)
    return {
        "id": sid,
        "name": f"t3_{sid}",
        "title": f"DeepSeek story {i}",
        "selftext": f"Details {i}",
        "is_self": True,
        "author": "poster",
        "subreddit": "LocalLLaMA",
        "created_utc": T0 + i,
        "permalink": f"/r/LocalLLaMA/comments/{sid}/story_{i}/",
        "url": f"https://www.reddit.com/r/LocalLLaMA/comments/{sid}/story_{i}/",
        **extra,
    }


def comment(i: int, **extra: Any) -> dict[str, Any]:
    cid = _b36(500_000 + i)
    return {
        "id": cid,
        "name": f"t1_{cid}",
        "body": f"comment {i} about ascend",
        "author": "replier",
        "subreddit": "LocalLLaMA",
        "created_utc": T0 + i,
        "parent_id": "t3_" + _b36(100_000),
        "link_id": "t3_" + _b36(100_000),
        "permalink": f"/r/LocalLLaMA/comments/{_b36(100_000)}/story_0/{cid}/",
        **extra,
    }


class RedditServer:
    def __init__(self, ratelimit_remaining: float = 600.0, reset: int = 300) -> None:
        self.listings = {"new": Listing(), "comments": Listing()}
        self.token_requests: list[dict[str, str]] = []
        self.token_bodies: list[str] = []  # raw 200 answers the token endpoint gives first
        self.ratelimit_remaining = ratelimit_remaining
        self.reset = reset
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> RedditServer:
        app = web.Application()
        app.router.add_post("/api/v1/access_token", self._token)
        for name in self.listings:
            for path in (f"/r/{{subs}}/{name}", f"/r/{{subs}}/{name}/"):
                app.router.add_get(path, self._listing_handler(name))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"message": "Unauthorized", "error": 401}, status=401)
        if self.token_bodies:
            return web.Response(text=self.token_bodies.pop(0), content_type="text/html")
        if form.get("grant_type") != "password" or (form.get("username"), form.get("password")) != (
            USER,
            PASSWORD,
        ):
            return web.json_response({"error": "invalid_grant"})  # Reddit answers 200 here
        return web.json_response(
            {
                "access_token": ACCESS_TOKEN,
                "token_type": "bearer",
                "expires_in": 86400,
                "scope": "*",
            }
        )

    def _listing_handler(self, name: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            listing = self.listings[name]
            listing.requests.append((time.monotonic(), dict(request.query)))
            if request.headers.get("Authorization") != f"bearer {ACCESS_TOKEN}":
                return web.json_response({"message": "Unauthorized", "error": 401}, status=401)
            if listing.failures:
                f = listing.failures.pop(0)
                if f.status == 0:  # drop the connection without an answer
                    assert request.transport is not None
                    request.transport.close()
                    return web.Response()
                return web.Response(
                    status=f.status, text=f.body, headers=f.headers, content_type="application/json"
                )
            self.ratelimit_remaining = max(0.0, self.ratelimit_remaining - 1)
            headers = {
                "X-Ratelimit-Remaining": str(self.ratelimit_remaining),
                "X-Ratelimit-Used": "1",
                "X-Ratelimit-Reset": str(self.reset),
            }
            return web.json_response(self._page(name, request.query), headers=headers)

        return handle

    def _page(self, name: str, query: Any) -> dict[str, Any]:
        items = self.listings[name].items
        limit = int(query.get("limit", 25))
        before = query.get("before")
        kind = "t3" if name == "new" else "t1"
        if before:
            pos = next((i for i, it in enumerate(items) if it["name"] == before), None)
            chosen = [] if pos is None else items[pos + 1 : pos + 1 + limit]
        else:
            chosen = items[-limit:]
        children = [{"kind": kind, "data": it} for it in reversed(chosen)]
        return {"kind": "Listing", "data": {"children": children, "after": None, "before": None}}
