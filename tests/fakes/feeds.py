"""A feed server on loopback: RSS 2.0 / Atom documents with ETag and Last-Modified.

Tests add entries, queue failures (status codes, garbage bodies) and read what clients sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from aiohttp import web

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@dataclass
class Entry:
    guid: str | None
    title: str
    summary: str
    published: datetime
    link: str
    author: str = "Reporter"


@dataclass
class Feed:
    kind: str = "rss"  # or "atom"
    entries: list[Entry] = field(default_factory=list)
    failures: list[int | bytes] = field(default_factory=list)  # next answers: status or body
    retry_after: str | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    not_modified: int = 0

    def add(self, n: int, start: int = 0, *, guid: bool = True) -> None:
        for i in range(start, start + n):
            self.entries.append(
                Entry(
                    guid=f"urn:item:{i}" if guid else None,
                    title=f"Headline {i} &amp; more",
                    summary=f"<p>Body <b>{i}</b> of the story.</p>",
                    published=T0 + timedelta(minutes=i),
                    link=f"https://news.example/{i}",
                )
            )

    def render(self) -> bytes:
        items = []
        for e in reversed(self.entries):  # newest first, like real feeds
            if self.kind == "atom":
                items.append(
                    "<entry>"
                    + (f"<id>{escape(e.guid)}</id>" if e.guid else "")
                    + f"<title>{e.title}</title><link href='{e.link}'/>"
                    f"<updated>{e.published.isoformat()}</updated>"
                    f"<author><name>{e.author}</name></author>"
                    f"<summary type='html'>{escape(e.summary)}</summary></entry>"
                )
            else:
                items.append(
                    "<item>"
                    + (f"<guid>{escape(e.guid)}</guid>" if e.guid else "")
                    + f"<title>{e.title}</title><link>{e.link}</link>"
                    f"<pubDate>{format_datetime(e.published)}</pubDate>"
                    f"<author>{e.author}</author>"
                    f"<description>{escape(e.summary)}</description></item>"
                )
        if self.kind == "atom":
            doc = (
                "<?xml version='1.0' encoding='utf-8'?>"
                "<feed xmlns='http://www.w3.org/2005/Atom' xml:lang='en'>"
                "<title>Fake</title><id>urn:fake</id>" + "".join(items) + "</feed>"
            )
        else:
            doc = (
                "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
                "<title>Fake</title><link>https://news.example/</link>"
                "<language>en-us</language>" + "".join(items) + "</channel></rss>"
            )
        return doc.encode()

    @property
    def last_modified(self) -> datetime:
        return max((e.published for e in self.entries), default=T0)


class FeedServer:
    def __init__(self) -> None:
        self.feeds: dict[str, Feed] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""

    def url(self, name: str) -> str:
        return f"{self.base}/feeds/{name}"

    async def start(self) -> FeedServer:
        app = web.Application()
        app.router.add_get("/feeds/{name}", self._get)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _get(self, request: web.Request) -> web.StreamResponse:
        feed = self.feeds.get(request.match_info["name"])
        if feed is None:
            raise web.HTTPNotFound()
        feed.requests.append(dict(request.headers))
        if feed.failures:
            failure = feed.failures.pop(0)
            if isinstance(failure, bytes):
                return web.Response(body=failure, content_type="application/rss+xml")
            headers = {"Retry-After": feed.retry_after} if feed.retry_after else {}
            return web.Response(status=failure, text="failure", headers=headers)
        body = feed.render()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        modified = format_datetime(feed.last_modified, usegmt=True)
        if request.headers.get("If-None-Match") == etag:
            feed.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        ctype = "application/atom+xml" if feed.kind == "atom" else "application/rss+xml"
        return web.Response(
            body=body, headers={"ETag": etag, "Last-Modified": modified, "Content-Type": ctype}
        )
