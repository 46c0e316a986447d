"""News feeds (RSS / Atom): polled with conditional GET, parsed with feedparser.

Each feed is fetched every ``rss_poll_seconds`` with ``If-None-Match`` / ``If-Modified-Since``
from the stored ETag / Last-Modified (304 = nothing new). The cursor holds, per feed, the
validators and the ids of entries already produced (bounded), so a restart neither repeats
nor misses entries. The validators of a feed enter the cursor only after all of its entries
were emitted: a crash in the middle refetches the feed instead of getting a 304.

One failing feed does not hold up the others: it is retried at its next poll (later if it
said ``Retry-After``); only when every feed fails does the connector back off and reconnect
(at the earliest when the first feed is due again). A feed answering 401/403/404/410 is
dropped until the connector restarts; with none left the connector stops.
"""

from __future__ import annotations

import asyncio
import calendar
import copy
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import feedparser
from pydantic import ValidationError

from connectors.base import (
    Checkpoint,
    Cursor,
    Emit,
    FatalSourceError,
    Item,
    RetryableError,
    Skip,
)
from connectors.webutil import check_status, strip_html
from seismo.config import Settings
from seismo.contracts import Post

log = logging.getLogger(__name__)

MAX_SEEN = 500  # entry ids remembered per feed (a feed rarely carries more than 100)
MAX_TEXT = 40_000


def entry_id(entry: Any, feed_url: str) -> str:
    """The entry's id/guid; a hash of its link (or title) when it has none.

    A guid that is not a URI (``"1234"``) is only unique within its feed: it is prefixed
    with the feed's host and path so two feeds' ``"1234"`` stay two posts.
    """
    raw = entry.get("id") or entry.get("guid")
    if raw and ":" not in raw:
        parts = urlsplit(feed_url)
        raw = f"{parts.netloc}{parts.path}#{raw}"
    if raw and len(raw) <= 256:
        return str(raw)
    basis = raw or entry.get("link") or (entry.get("title", "") + entry.get("summary", ""))
    return "sha256:" + hashlib.sha256(str(basis).encode()).hexdigest()


def _event_time(entry: Any, now: datetime) -> datetime:
    for key in ("published_parsed", "updated_parsed"):
        t = entry.get(key)
        if t:
            return datetime.fromtimestamp(calendar.timegm(t), UTC)
    return now


def to_post(entry: Any, feed_url: str, lang: str | None, now: datetime) -> Post:
    """Map one feedparser entry to a Post (raises ValueError/ValidationError if unusable)."""
    title = strip_html(entry.get("title", ""))
    summary = strip_html(entry.get("summary", ""))
    text = "\n\n".join(p for p in (title, summary) if p)[:MAX_TEXT]
    if not text:
        raise ValueError("entry has neither title nor summary")
    return Post(
        id=entry_id(entry, feed_url),
        source="rss",
        text=text,
        created_at=_event_time(entry, now),
        author=(entry.get("author") or None) and str(entry["author"])[:256],
        url=entry.get("link") or None,
        lang=lang[:16].lower() if lang else None,
        metadata={"feed": feed_url},
        ingested_at=now,
    )


class RssSource:
    name = "rss"

    def __init__(
        self,
        feeds: list[str],
        poll_seconds: float,
        *,
        timeout: float = 30.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not feeds:
            raise FatalSourceError("no feeds configured (settings.rss_feeds)")
        self.feeds = feeds
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.now = now
        self._due: dict[str, float] = {}  # feed -> monotonic time of its next fetch
        self._gone: set[str] = set()  # feeds that answered 401/403/404/410

    def position(self, cursor: Cursor) -> float | None:
        """Epoch seconds of the most recent completed poll of any feed."""
        polled = [f["polled"] for f in cursor.get("feeds", {}).values() if f.get("polled")]
        return max(polled) if polled else None

    async def stream(self, cursor: Cursor | None) -> AsyncIterator[Item]:
        state: Cursor = copy.deepcopy(cursor) if cursor else {"feeds": {}}
        state.setdefault("feeds", {})
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                failures: list[tuple[RetryableError, float]] = []
                for url in self.feeds:
                    if url in self._gone or self._due.get(url, 0.0) > time.monotonic():
                        continue
                    try:
                        async for item in self._poll(http, url, state):
                            yield item
                    except RetryableError as exc:
                        wait = max(exc.retry_after or 0.0, self.poll_seconds)
                        self._due[url] = time.monotonic() + wait
                        failures.append((exc, wait))
                    except FatalSourceError as exc:
                        log.error("rss: %s; dropping this feed until restart", exc)
                        self._gone.add(url)
                live = [u for u in self.feeds if u not in self._gone]
                if not live:
                    raise FatalSourceError("no configured feed is reachable (see errors above)")
                if failures and len(failures) == len(live):
                    # one line (the runner's), and its "reconnecting in" is when the first
                    # feed is due again: a reconnect polls only feeds that are due
                    detail = "; ".join(str(error) for error, _ in failures)
                    raise RetryableError(
                        f"every feed failed ({detail})", retry_after=self._sleep_needed()
                    )
                for error, wait in failures:
                    log.warning("rss: %s; next try in %.0fs", error, wait)
                await asyncio.sleep(self._sleep_needed())

    def _sleep_needed(self) -> float:
        """Until the next feed is due (at most one poll interval)."""
        now = time.monotonic()
        due = [self._due.get(u, 0.0) for u in self.feeds if u not in self._gone]
        return max(0.0, min([*due, now + self.poll_seconds]) - now)

    async def _poll(
        self, http: aiohttp.ClientSession, url: str, state: Cursor
    ) -> AsyncIterator[Item]:
        feed_state: dict[str, Any] = state["feeds"].setdefault(url, {})
        self._due[url] = time.monotonic() + self.poll_seconds
        headers = {"User-Agent": "seismo/0.1 (+feed poller)"}
        if feed_state.get("etag"):
            headers["If-None-Match"] = feed_state["etag"]
        if feed_state.get("modified"):
            headers["If-Modified-Since"] = feed_state["modified"]
        try:
            async with http.get(url, headers=headers) as resp:
                if resp.status == 304:
                    return
                if resp.status in (404, 410):
                    raise FatalSourceError(f"{url}: HTTP {resp.status}")
                check_status(resp.status, resp.headers, url)
                body = await resp.read()
                etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
                ctype = resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"{url}: {type(exc).__name__}: {exc}") from exc
        parsed = await asyncio.to_thread(
            feedparser.parse,
            body,
            response_headers={"content-location": url, "content-type": ctype},
        )
        if parsed.bozo and not parsed.entries:
            yield Skip(f"{url}: not a feed ({parsed.get('bozo_exception')})", body[:2000])
            return
        seen: list[str] = feed_state.setdefault("seen", [])
        known = set(seen)
        lang = parsed.feed.get("language")
        now = self.now()
        # feeds list newest first; produce oldest first so event time mostly rises
        for entry in sorted(parsed.entries, key=lambda e: _event_time(e, now)):
            eid = entry_id(entry, url)
            if eid in known:
                continue
            known.add(eid)
            seen.append(eid)
            del seen[:-MAX_SEEN]
            try:
                post = to_post(entry, url, lang, now)
            except (ValueError, ValidationError) as exc:
                yield Skip(
                    f"{url}: bad entry {eid}: {exc}", repr(dict(entry))[:2000], copy.deepcopy(state)
                )
                continue
            yield Emit(post, copy.deepcopy(state))
        feed_state["etag"], feed_state["modified"] = etag, modified
        feed_state["polled"] = now.timestamp()
        yield Checkpoint(copy.deepcopy(state))


def build(settings: Settings) -> RssSource:
    return RssSource(list(settings.rss_feeds), settings.rss_poll_seconds)
