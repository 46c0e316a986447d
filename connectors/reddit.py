"""Reddit: submissions and comments of the configured subreddits, via praw.

praw is synchronous, so its two stream generators (``subreddit("a+b").stream.submissions``
and ``.comments``, ``pause_after=-1`` so each poll returns control) run interleaved in a
daemon worker thread that hands items to the event loop through an asyncio queue; the loop,
and shutdown, never wait on a request (a stopping thread is abandoned at its next step).
prawcore signs in with the script-app credentials, reads the ``X-Ratelimit-*`` headers and
sleeps to stay under the limit; a 429 becomes a RetryableError with its Retry-After.

Resume without loss or repeats: the cursor holds, per stream, the newest ``created_utc``
produced and the ids seen at that second. Streams run with ``skip_existing=False``: a resume
re-reads the newest page and drops what is at or before the cursor; a fresh start takes what
already exists as its starting mark and produces only what comes after (praw's
``skip_existing=True`` would skip the same items but hide where we started). If the whole
first page is newer than the cursor, more was posted while we were away than one page holds:
a Gap is reported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import praw
import prawcore
from pydantic import SecretStr, ValidationError

from connectors.base import (
    Checkpoint,
    Cursor,
    Emit,
    FatalSourceError,
    Gap,
    Item,
    RetryableError,
    Skip,
)
from seismo.config import Settings
from seismo.contracts import Post
from seismo.retry import retry_after

log = logging.getLogger(__name__)

WWW = "https://www.reddit.com"
PAGE = 100  # items in the first page praw's stream reads
BAD_IDS = 100  # ids of items without a usable created_utc the cursor remembers, per stream
KINDS = ("submissions", "comments")
LISTINGS = {"submissions": "new", "comments": "comments"}  # the listing each stream reads


# --- mapping ------------------------------------------------------------------------------


def to_post(kind: str, data: dict[str, Any], now: datetime) -> Post:
    """Map a submission or comment's fields (``vars(thing)``) to a Post.

    Raises KeyError/TypeError/ValueError/ValidationError when the item is unusable.
    """
    author = data.get("author")
    author_name = str(author) if author is not None and str(author) != "[deleted]" else None
    created = datetime.fromtimestamp(float(data["created_utc"]), UTC)
    meta: dict[str, Any] = {"subreddit": str(data.get("subreddit", "")), "kind": kind[:-1]}
    if kind == "submissions":
        title, body = data["title"], data.get("selftext") or ""
        text = f"{title}\n\n{body}" if body else title
        if not data.get("is_self", True) and data.get("url"):
            meta["link"] = str(data["url"])
        reply_to = None
        fullname = f"t3_{data['id']}"
    else:
        text = data["body"]
        reply_to = str(data["parent_id"])
        meta["submission"] = str(data.get("link_id", ""))
        fullname = f"t1_{data['id']}"
    if not isinstance(text, str):
        raise TypeError(f"text is {type(text).__name__}, not a string")
    permalink = data.get("permalink")
    return Post(
        id=fullname,
        source="reddit",
        text=text[:40_000],
        created_at=created,
        author=author_name,
        url=f"{WWW}{permalink}" if permalink else None,
        reply_to=reply_to,
        metadata=meta,
        ingested_at=now,
    )


def fatal_or_retry(exc: Exception) -> Exception:
    """Sort a praw/prawcore error: bad credentials or config stop, the rest is retried."""
    if isinstance(exc, prawcore.OAuthException):
        return FatalSourceError(
            f"Reddit sign-in refused: {exc.error} (check reddit_username / reddit_password)"
        )
    if isinstance(exc, prawcore.TooManyRequests):
        # Retry-After if given, else when the rate-limit window resets (X-Ratelimit-Reset:
        # seconds from now; Reddit often sends only that)
        headers = exc.response.headers
        after = retry_after(headers.get("retry-after"))
        if after is None:
            after = retry_after(headers.get("x-ratelimit-reset"))
        return RetryableError("Reddit: HTTP 429 Too Many Requests", retry_after=after)
    if isinstance(exc, prawcore.BadJSON):
        url = exc.response.url.split("?")[0]
        return RetryableError(
            f"Reddit: {url} answered with no JSON (HTTP {exc.response.status_code})"
        )
    if isinstance(exc, prawcore.ResponseException):
        status = exc.response.status_code
        if status in (401, 403):
            return FatalSourceError(
                f"Reddit: HTTP {status} on {exc.response.url.split('?')[0]} (check reddit_client_id"
                " / reddit_client_secret and that the app may read these subreddits)"
            )
        if status == 404 or isinstance(exc, prawcore.Redirect):
            return FatalSourceError(f"Reddit: subreddit not found ({exc})")
        return RetryableError(f"Reddit: {type(exc).__name__} (HTTP {status})")
    if isinstance(exc, prawcore.PrawcoreException | praw.exceptions.PRAWException):
        return RetryableError(f"Reddit: {type(exc).__name__}: {exc}")
    return exc


# --- the source ---------------------------------------------------------------------------


class RedditSource:
    name = "reddit"

    def __init__(
        self,
        *,
        client_id: str | None,
        client_secret: SecretStr | None,
        username: str | None,
        password: SecretStr | None,
        user_agent: str,
        subreddits: list[str],
        oauth_url: str = "https://oauth.reddit.com",
        www_url: str = WWW,
        poll_seconds: float = 5.0,
        timeout: float = 30.0,
        queue_size: int = 500,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        missing = [
            n
            for n, v in (
                ("reddit_client_id", client_id),
                ("reddit_client_secret", client_secret),
                ("reddit_username", username),
                ("reddit_password", password),
            )
            if not v
        ]
        if missing:
            raise FatalSourceError(f"Reddit needs script-app credentials: set {', '.join(missing)}")
        if not subreddits:
            raise FatalSourceError("no subreddits configured (settings.reddit_subreddits)")
        assert client_secret is not None and password is not None
        self._client_id, self._secret, self._password = client_id, client_secret, password
        self.username, self.user_agent = username, user_agent
        self.subreddits = subreddits
        self.oauth_url, self.www_url = oauth_url, www_url
        self.poll_seconds, self.timeout = poll_seconds, timeout
        self.queue_size = queue_size  # items the worker thread may run ahead of the consumer
        self.now = now
        self._reddit: praw.Reddit | None = None  # one client: its token and rate-limit state

    def position(self, cursor: Cursor) -> float | None:
        marks = [cursor[k]["utc"] for k in KINDS if isinstance(cursor.get(k), dict)]
        return max(marks) if marks else None

    def _client(self) -> praw.Reddit:
        """The one praw client of this source: a reconnect keeps its access token and what
        prawcore knows of the rate limit (a new client would sign in again, from zero)."""
        if self._reddit is None:
            self._reddit = self._new_client()
        return self._reddit

    def _new_client(self) -> praw.Reddit:
        return praw.Reddit(
            client_id=self._client_id,
            client_secret=self._secret.get_secret_value(),
            username=self.username,
            password=self._password.get_secret_value(),
            user_agent=self.user_agent,
            oauth_url=self.oauth_url,
            reddit_url=self.www_url,
            check_for_updates=False,
            check_for_async=False,
            requestor_kwargs={"timeout": self.timeout},
        )

    async def stream(self, cursor: Cursor | None) -> AsyncIterator[Item]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Item | Exception] = asyncio.Queue(maxsize=self.queue_size)
        stop = threading.Event()

        def put(msg: Item | Exception) -> bool:
            """Hand ``msg`` to the loop, waiting while the queue is full; False = stopping."""
            coro = queue.put(msg)
            try:
                fut = asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError:  # the loop is closed
                coro.close()
                return False
            while not stop.is_set():
                try:
                    fut.result(timeout=0.5)
                    return True
                except concurrent.futures.TimeoutError:
                    continue
            fut.cancel()
            return False

        def pump() -> None:
            try:
                for item in self._items(cursor, stop):
                    if not put(item):
                        return
            except Exception as exc:
                put(fatal_or_retry(exc))

        thread = threading.Thread(target=pump, name="reddit-stream", daemon=True)
        thread.start()
        try:
            while True:
                msg = await queue.get()
                if isinstance(msg, Exception):
                    raise msg
                yield msg
        finally:
            stop.set()

    def _items(self, cursor: Cursor | None, stop: threading.Event) -> Iterator[Item]:
        """The worker thread's loop: poll both streams in turn until ``stop``."""
        state: Cursor = copy.deepcopy(cursor) if cursor else {}
        subreddit = self._client().subreddit("+".join(self.subreddits))
        # skip_existing=False: we skip what existed at a fresh start ourselves, keeping the
        # newest existing item as the mark, so a reconnect knows where we began
        streams = {
            "submissions": subreddit.stream.submissions(skip_existing=False, pause_after=-1),
            "comments": subreddit.stream.comments(skip_existing=False, pause_after=-1),
        }
        first = dict.fromkeys(KINDS, True)
        while not stop.is_set():
            for kind, gen in streams.items():
                page: list[Any] = []
                try:
                    for thing in gen:
                        if thing is None or stop.is_set():
                            break
                        page.append(thing)
                except json.JSONDecodeError as exc:  # an HTML error page, a cut-off answer
                    # prawcore turns a listing's into BadJSON: this one is most likely the
                    # sign-in's, which runs lazily on the first request
                    path = f"/r/{subreddit.display_name}/{LISTINGS[kind]}"
                    raise RetryableError(
                        f"Reddit: an answer was not JSON ({exc}) while reading {path} "
                        "(its sign-in at /api/v1/access_token, or the listing)"
                    ) from exc
                yield from self._page(kind, page, state, first[kind])
                first[kind] = False
            stop.wait(self.poll_seconds)

    def _page(self, kind: str, page: list[Any], state: Cursor, first: bool) -> Iterator[Item]:
        """Items of one poll (oldest first), minus what the cursor says we produced."""
        if first and kind not in state:  # fresh start: what exists now is not new
            newest = [vars(t) for t in page if _utc(vars(t)) is not None]
            utc = max((_utc(d) or 0.0 for d in newest), default=0.0)
            ids = [str(t.fullname) for t in page if _utc(vars(t)) == utc]
            state[kind] = {"utc": utc, "ids": ids}
            yield Checkpoint(copy.deepcopy(state))
            return
        mark = state[kind]
        older = 0
        now = self.now()
        for thing in page:
            data = vars(thing)
            fullname = str(thing.fullname)
            when = _utc(data)
            if when is None:  # unplaceable in time: remembered by id, so never again
                if fullname in mark.get("bad", []):
                    continue
                mark["bad"] = [*mark.get("bad", []), fullname][-BAD_IDS:]
                reason = f"{kind[:-1]} {fullname} has no usable created_utc"
                yield Skip(reason, repr(data), copy.deepcopy(state))
                continue
            utc = when
            if utc < mark["utc"] or (utc == mark["utc"] and fullname in mark["ids"]):
                older += 1
                continue
            ids = [*mark["ids"], fullname] if utc == mark["utc"] else [fullname]
            bad = {"bad": mark["bad"]} if mark.get("bad") else {}
            state[kind] = mark = {"utc": utc, "ids": ids, **bad}
            try:
                post = to_post(kind, data, now)
            except (KeyError, TypeError, ValueError, ValidationError) as exc:
                reason = f"{kind[:-1]} {fullname}: {type(exc).__name__}: {exc}"
                yield Skip(reason, repr(data), copy.deepcopy(state))
                continue
            yield Emit(post, copy.deepcopy(state))
        if first and older == 0 and len(page) >= PAGE:
            yield Gap(
                f"more than {PAGE} {kind} since the cursor: the oldest of them may be missing",
                copy.deepcopy(state),
            )


def _utc(data: dict[str, Any]) -> float | None:
    try:
        return float(data["created_utc"])
    except (KeyError, TypeError, ValueError):
        return None


def build(settings: Settings) -> RedditSource:
    return RedditSource(
        client_id=settings.reddit_client_id,
        client_secret=settings.reddit_client_secret,
        username=settings.reddit_username,
        password=settings.reddit_password,
        user_agent=settings.reddit_user_agent,
        subreddits=list(settings.reddit_subreddits),
        oauth_url=settings.reddit_oauth_url,
        www_url=settings.reddit_www_url,
        poll_seconds=settings.reddit_poll_seconds,
    )
