"""Hacker News connector: the official Firebase API (``settings.hn_api_url``), no credentials.

Every poll (``hn_poll_seconds``) reads ``/maxitem.json`` and ``/updates.json``, then fetches
every item id after the last one handled up to the newest, ``hn_concurrency`` requests at a
time, in chunks handled in id order. Stories (title + text) and comments (HTML turned into
plain text) become posts; deleted and dead items, jobs and polls are checkpointed and
counted (``seismo_connector_events_total{outcome=deleted|dead|ignored}``).
``updates.json`` only raises the upper bound: changes to items already produced are
not sent again (a post on ``posts.raw.v1`` is what was said when it was said).

The cursor is ``{"id": N}``: every id up to N is handled. An item the API still returns as
``null`` (it is not yet replicated) holds the cursor back and is asked for again on the next
polls; after :data:`MISSING_POLLS` polls it is given up and counted as missing. Later items
are produced meanwhile; after a restart they are read again and dropped as repeats by key.
A first start without a cursor begins at the current maxitem (no history backfill).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import aiohttp

from connectors.base import (
    MAPPING_ERRORS,
    Checkpoint,
    Cursor,
    Emit,
    Item,
    RetryableError,
    Skip,
    error_for_status,
)
from seismo.config import Settings
from seismo.contracts import Post

log = logging.getLogger(__name__)

ITEM_URL = "https://news.ycombinator.com/item?id={}"
MISSING_POLLS = 3
MAX_TEXT = 40_000
USER_AGENT = "seismo/0.1 (social-signal monitor)"


# --- pure mapping -------------------------------------------------------------------------


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p":
            self.parts.append("\n\n")
        elif tag == "br":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """HN's comment HTML as plain text: tags dropped, entities decoded, <p> as blank lines."""
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts).strip()


def post_from_item(item: Mapping[str, Any], *, now: datetime) -> Post | None:
    """A story or comment as a Post; None for other types or no text. ValueError if malformed."""
    item_id, created = item.get("id"), item.get("time")
    if not isinstance(item_id, int) or not isinstance(created, int):
        raise ValueError("item has no integer id or time")
    kind = item.get("type")
    body = item.get("text")
    text = html_to_text(body) if isinstance(body, str) else ""
    page = ITEM_URL.format(item_id)
    metadata: dict[str, Any] = {"type": kind}
    reply_to = None
    if kind == "story":
        title = item.get("title")
        text = "\n\n".join(x for x in (title if isinstance(title, str) else "", text) if x)
        url = item.get("url") if isinstance(item.get("url"), str) else page
        metadata.update(hn_url=page, score=item.get("score"), comments=item.get("descendants"))
    elif kind == "comment":
        url = page
        parent = item.get("parent")
        reply_to = str(parent) if isinstance(parent, int) else None
    else:
        return None
    if not text.strip():
        return None
    author = item.get("by")
    return Post(
        id=str(item_id),
        source="hackernews",
        text=text[:MAX_TEXT],
        created_at=datetime.fromtimestamp(created, UTC),
        author=author if isinstance(author, str) else None,
        url=url,
        lang=None,
        reply_to=reply_to,
        metadata={k: v for k, v in metadata.items() if v is not None},
        ingested_at=now,
    )


class Progress:
    """Which ids are handled; ``done`` = every id up to it is."""

    def __init__(self, done: int) -> None:
        self.done = done
        self.highest = done
        self._held: set[int] = set()
        self.missing: dict[int, int] = {}  # id -> polls it has been null

    def handled(self, item_id: int) -> Cursor | None:
        """Mark ``item_id`` handled; the new cursor if ``done`` moved, else None."""
        self.missing.pop(item_id, None)
        self.highest = max(self.highest, item_id)
        if item_id <= self.done:
            return None
        self._held.add(item_id)
        moved = False
        while self.done + 1 in self._held:
            self._held.remove(self.done + 1)
            self.done += 1
            moved = True
        return {"id": self.done} if moved else None

    def absent(self, item_id: int) -> bool:
        """Note that ``item_id`` came back null; True once it is time to give up on it."""
        self.highest = max(self.highest, item_id)
        polls = self.missing.get(item_id, 0) + 1
        self.missing[item_id] = polls
        return polls >= MISSING_POLLS

    def to_fetch(self, top: int) -> Iterator[int]:
        """Ids to ask for now: the retried nulls, then everything new up to ``top`` (lazily:
        a long catch-up is never a list in memory)."""
        return itertools.chain(sorted(self.missing), range(self.highest + 1, top + 1))


@dataclass(frozen=True)
class _Bad:
    reason: str
    raw: bytes


# --- the source ---------------------------------------------------------------------------


class HackerNewsSource:
    """See the module docstring."""

    name = "hackernews"

    def __init__(
        self,
        settings: Settings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.base = settings.hn_api_url.rstrip("/")
        self.poll = settings.hn_poll_seconds
        self.concurrency = settings.hn_concurrency
        self.chunk = max(100, 4 * settings.hn_concurrency)
        self.timeout = aiohttp.ClientTimeout(total=settings.hn_timeout_seconds)
        self.now = now

    def position(self, cursor: Cursor) -> float | None:
        n = cursor.get("id")
        return float(n) if isinstance(n, int) else None

    async def stream(self, cursor: Cursor | None) -> AsyncIterator[Item]:
        headers = {"User-Agent": USER_AGENT}
        async with aiohttp.ClientSession(timeout=self.timeout, headers=headers) as http:
            start = cursor.get("id") if cursor else None
            if not isinstance(start, int):
                start = await self._maxitem(http)
                yield Checkpoint({"id": start})
            progress = Progress(start)
            while True:
                top, updated = await asyncio.gather(self._maxitem(http), self._updates(http))
                # an update newer than maxitem is a race between the two reads; believe it
                # only that far
                top = max([top, *(i for i in updated if i <= top + self.chunk)])
                ids = progress.to_fetch(top)
                while chunk := list(itertools.islice(ids, self.chunk)):
                    for item_id, raw in zip(chunk, await self._items(http, chunk), strict=True):
                        item = self._item(item_id, raw, progress)
                        if item is not None:
                            yield item
                await asyncio.sleep(self.poll)

    def _item(self, item_id: int, raw: Any, progress: Progress) -> Item | None:
        if raw is None:
            if not progress.absent(item_id):
                return None  # ask again next poll
            log.warning("hackernews: item %d still null after %d polls", item_id, MISSING_POLLS)
            return Checkpoint(progress.handled(item_id), "missing")
        cursor = progress.handled(item_id)
        if isinstance(raw, _Bad):
            return Skip(raw.reason, raw.raw, cursor)
        if not isinstance(raw, dict):
            return Skip(f"item {item_id} is not an object", json.dumps(raw), cursor)
        if raw.get("deleted") or raw.get("dead"):
            return Checkpoint(cursor, "deleted" if raw.get("deleted") else "dead")
        try:
            post = post_from_item(raw, now=self.now())
        except MAPPING_ERRORS as exc:
            return Skip(f"bad item {item_id}: {exc}", json.dumps(raw), cursor)
        if post is None:
            return Checkpoint(cursor, "ignored")
        return Emit(post, cursor)

    async def _get(self, http: aiohttp.ClientSession, path: str) -> bytes:
        """The raw body (decoding is the caller's: one bad item must not stop the stream)."""
        url = f"{self.base}{path}"
        try:
            async with http.get(url) as resp:
                if resp.status != 200:
                    raise error_for_status(
                        resp.status, f"GET {path}", resp.headers.get("Retry-After")
                    )
                return await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"GET {path}: {type(exc).__name__}: {exc}") from exc

    async def _maxitem(self, http: aiohttp.ClientSession) -> int:
        body = await self._get(http, "/maxitem.json")
        try:
            top = json.loads(body)
        except ValueError:  # not JSON, or not UTF-8
            top = None
        if not isinstance(top, int):
            raise RetryableError(f"maxitem is not a number: {body[:80]!r}")
        return top

    async def _updates(self, http: aiohttp.ClientSession) -> list[int]:
        body = await self._get(http, "/updates.json")
        try:
            items = json.loads(body).get("items")
        except (ValueError, AttributeError):  # not JSON (or not UTF-8), not an object
            items = None
        if not isinstance(items, list):
            log.warning("hackernews: updates.json without an items list: %r", body[:80])
            return []
        return [i for i in items if isinstance(i, int)]

    async def _items(self, http: aiohttp.ClientSession, ids: list[int]) -> list[Any]:
        """The items (decoded JSON, None, or _Bad) of ``ids``, at most ``concurrency`` at once."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(item_id: int) -> Any:
            async with gate:
                body = await self._get(http, f"/item/{item_id}.json")
            try:
                return json.loads(body)
            except UnicodeDecodeError as exc:
                return _Bad(f"item {item_id} (GET /item/{item_id}.json) is not UTF-8: {exc}", body)
            except json.JSONDecodeError:
                return _Bad(f"item {item_id} (GET /item/{item_id}.json) is not JSON", body)

        tasks = [asyncio.ensure_future(one(i)) for i in ids]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # one failed (or we are stopped): don't leave the rest running
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def build(settings: Settings) -> HackerNewsSource:
    return HackerNewsSource(settings)
