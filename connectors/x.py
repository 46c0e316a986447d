"""X (API v2) filtered stream: rules synced from the watchlist, one long chunked response.

On connect the source syncs its rules (``GET/POST /tweets/search/stream/rules``): a rule per
watchlist dossier and claim (its keywords OR-ed, split to fit the rule length limit), tagged
``seismo:...``; rules we own that the watchlist no longer asks for are deleted, rules of
other owners are left alone. Then it reads ``GET /tweets/search/stream``: newline-delimited
JSON posts with ``\\r\\n`` keep-alives about every 20 s. No byte for ``x_stall_seconds``
(30 s, the API's guidance) means a stalled connection: reconnect.

X offers no replay for this tier, so the cursor only records the newest post id (metrics,
logs); every reconnect reports a Gap with how long we were away.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import SecretStr, ValidationError

from connectors.base import Cursor, Emit, FatalSourceError, Gap, Item, RetryableError, Skip
from connectors.webutil import check_status
from seismo.config import Settings
from seismo.contracts import Post, json_problem
from seismo.watchlist import Watchlist, load_watchlist

log = logging.getLogger(__name__)

RULE_TAG = "seismo:"
RULE_MAX_CHARS = 512  # X's rule length limit for the lowest tier that has filtered stream
STREAM_PARAMS = {
    "tweet.fields": "created_at,author_id,lang,referenced_tweets,conversation_id",
    "expansions": "author_id",
    "user.fields": "username",
}


# --- mapping ------------------------------------------------------------------------------

# what to_post raises for an object that is not a usable post (RecursionError: a field
# nested ~1,000 deep turned into a string)
POST_ERRORS = (KeyError, TypeError, ValueError, RecursionError)


def to_post(data: dict[str, Any], users: dict[str, str], now: datetime) -> Post:
    """Map an X v2 post object (``data``) to a Post; ``users`` maps author id -> username.

    Raises KeyError/TypeError/ValueError (ValidationError is one) when the object is not a
    usable post.
    """
    pid = data["id"]
    if not isinstance(pid, str | int) or not str(pid).isdigit():
        raise ValueError("post id is not numeric")
    pid = str(pid)
    referenced = data.get("referenced_tweets") or []
    if not isinstance(referenced, list) or not all(
        isinstance(r, dict) and isinstance(r.get("id"), str | int) for r in referenced
    ):
        raise TypeError("referenced_tweets must be a list of objects with an id")
    refs = {str(r.get("type")): str(r.get("id")) for r in referenced}
    created = data.get("created_at")
    author_id = data.get("author_id")
    lang = data.get("lang")
    metadata: dict[str, Any] = {}
    if data.get("conversation_id"):
        metadata["conversation_id"] = str(data["conversation_id"])
    if "retweeted" in refs:
        metadata["retweet_of"] = refs["retweeted"]
    if author_id:
        metadata["author_id"] = str(author_id)
    return Post(
        id=pid,
        source="x",
        text=data["text"],
        created_at=datetime.fromisoformat(created) if created else now,
        author=users.get(str(author_id)) or (str(author_id) if author_id else None),
        url=f"https://x.com/i/web/status/{pid}",
        lang=None if lang in (None, "und", "zxx") else lang,
        reply_to=refs.get("replied_to"),
        quote_of=refs.get("quoted"),
        metadata=metadata,
        ingested_at=now,
    )


def users_of(envelope: dict[str, Any]) -> dict[str, str]:
    """author id -> username from ``includes.users``; TypeError if they are not objects."""
    includes = envelope.get("includes") or {}
    if not isinstance(includes, dict):
        raise TypeError("includes must be an object")
    users = includes.get("users") or []
    if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
        raise TypeError("includes.users must be a list of objects")
    return {str(u["id"]): str(u["username"]) for u in users if "id" in u and "username" in u}


# --- rules --------------------------------------------------------------------------------


def _term(keyword: str) -> str:
    k = keyword.replace('"', "").strip()
    return f'"{k}"' if any(not c.isalnum() for c in k) else k


def wanted_rules(watchlist: Watchlist, max_chars: int = RULE_MAX_CHARS) -> dict[str, str]:
    """tag -> rule value: one OR-rule per dossier and claim, split when too long."""
    groups = [(f"dossier:{d.id}", d.keywords) for d in watchlist.dossiers]
    groups += [(f"claim:{c.id}", c.keywords) for c in watchlist.claims]
    rules: dict[str, str] = {}
    for name, keywords in groups:
        chunks: list[list[str]] = [[]]
        for term in dict.fromkeys(_term(k) for k in keywords if k.strip()):
            if chunks[-1] and len(" OR ".join([*chunks[-1], term])) + 2 > max_chars:
                chunks.append([])
            chunks[-1].append(term)
        for i, chunk in enumerate(c for c in chunks if c):
            tag = f"{RULE_TAG}{name}" + (f":{i}" if i else "")
            rules[tag] = f"({' OR '.join(chunk)})" if len(chunk) > 1 else chunk[0]
    return rules


def rule_changes(
    current: list[dict[str, Any]], wanted: dict[str, str]
) -> tuple[list[str], list[dict[str, str]]]:
    """(ids of our rules to delete, rules to add); others' rules are never touched."""
    ours = [r for r in current if str(r.get("tag", "")).startswith(RULE_TAG)]
    have = {(r["tag"], r["value"]) for r in ours}
    delete = [str(r["id"]) for r in ours if wanted.get(r["tag"]) != r["value"]]
    add = [{"value": v, "tag": t} for t, v in wanted.items() if (t, v) not in have]
    return delete, add


# --- the source ---------------------------------------------------------------------------


class XStreamSource:
    name = "x"

    def __init__(
        self,
        api_url: str,
        token: SecretStr | None,
        watchlist: Watchlist,
        *,
        stall_seconds: float = 30.0,
        connect_timeout: float = 10.0,
        http_error_wait: float = 5.0,
        throttle_wait: float = 60.0,
        max_http_wait: float = 320.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if token is None or not token.get_secret_value():
            raise FatalSourceError("x_bearer_token is not set")
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.rules = wanted_rules(watchlist)
        self.stall_seconds = stall_seconds
        self.connect_timeout = connect_timeout
        self.http_error_wait, self.throttle_wait = http_error_wait, throttle_wait
        self.max_http_wait = max_http_wait
        self._http_errors = 0  # HTTP errors in a row (rules or stream), for X's backoff
        self.now = now
        self._rules_synced = False
        self._connected = False  # connected at least once
        self._disconnected_at: datetime | None = None

    def position(self, cursor: Cursor) -> float | None:
        newest = cursor.get("newest_id")
        return float(newest) if newest else None

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "User-Agent": "seismo/0.1",
        }

    async def sync_rules(self, http: aiohttp.ClientSession) -> tuple[int, int]:
        """Make our tagged rules match the watchlist; returns (deleted, added)."""
        url = f"{self.api_url}/tweets/search/stream/rules"
        async with http.get(url, headers=self._headers()) as resp:
            self._check_http(resp.status, resp.headers, "X rules")
            current = (await _json(resp, "X rules")).get("data") or []
        delete, add = rule_changes(current, self.rules)
        bodies: list[dict[str, Any]] = [{"delete": {"ids": delete}}] if delete else []
        bodies += [{"add": add}] if add else []
        for body in bodies:
            async with http.post(url, json=body, headers=self._headers()) as resp:
                if resp.status == 400:  # a rule X refuses: retrying can't help
                    detail = (await resp.text())[:500]
                    raise FatalSourceError(f"X refused our stream rules: {detail}")
                self._check_http(resp.status, resp.headers, "X rules update")
                answer = await _json(resp, "X rules update")
            errors = answer.get("errors") or []
            if errors:
                log.warning("x: rule update reported errors: %s", errors)
        log.info("x: rules synced (%d deleted, %d added)", len(delete), len(add))
        return len(delete), len(add)

    async def stream(self, cursor: Cursor | None) -> AsyncIterator[Item]:
        state: Cursor = dict(cursor or {})
        timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                try:
                    if not self._rules_synced:
                        await self.sync_rules(http)
                        self._rules_synced = True
                    async with http.get(
                        f"{self.api_url}/tweets/search/stream",
                        params=STREAM_PARAMS,
                        headers=self._headers(),
                    ) as resp:
                        self._check_http(resp.status, resp.headers, "X filtered stream")
                        self._http_errors = 0
                        gap = self._gap_since(state)
                        self._connected, self._disconnected_at = True, None
                        if gap is not None:
                            yield gap
                        async for item in self._read(resp.content, state):
                            yield item
                except (aiohttp.ClientError, ConnectionError) as exc:
                    raise RetryableError(f"X stream: {type(exc).__name__}: {exc}") from exc
        finally:
            if self._connected and self._disconnected_at is None:
                self._disconnected_at = self.now()

    def _check_http(self, status: int, headers: Mapping[str, str], what: str) -> None:
        """As check_status, with X's reconnect guidance when the answer names no wait: after
        an HTTP error wait 5 s, doubling per error in a row up to 320 s; after a 429 start at
        a minute. (Network errors are the runner's shorter backoff.)"""
        try:
            check_status(status, headers, what)
        except RetryableError as exc:
            self._http_errors += 1
            if exc.retry_after is not None:
                raise
            first = self.throttle_wait if status == 429 else self.http_error_wait
            wait = min(first * 2 ** (self._http_errors - 1), max(first, self.max_http_wait))
            raise RetryableError(str(exc), retry_after=wait) from None

    def _gap_since(self, state: Cursor) -> Gap | None:
        if self._disconnected_at is not None:
            away = (self.now() - self._disconnected_at).total_seconds()
            return Gap(f"X stream was disconnected for {away:.1f}s; posts in it may be missing")
        if not self._connected and state.get("seen_at"):  # restarted: away since the last post
            away = (self.now() - datetime.fromisoformat(state["seen_at"])).total_seconds()
            return Gap(
                f"restarted {away:.0f}s after the last post (id {state.get('newest_id')}); "
                "X has no replay for this tier, posts in between may be missing"
            )
        return None

    async def _read(self, content: aiohttp.StreamReader, state: Cursor) -> AsyncIterator[Item]:
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # races with a line arriving, and keep-alives arrive all the time
                async with asyncio.timeout(self.stall_seconds):
                    line = await content.readline()
            except TimeoutError as exc:
                raise RetryableError(
                    f"X stream stalled: no data or keep-alive for {self.stall_seconds:.0f}s"
                ) from exc
            if not line:
                raise RetryableError("X stream closed by the server")
            if line.strip():  # blank lines are keep-alives
                yield self._item(line, state)

    def _item(self, line: bytes, state: Cursor) -> Item:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:  # not JSON, or past the parser's limits
            return Skip(f"line is {json_problem(exc)[1]}", line[:2000])
        if not isinstance(obj, dict):
            return Skip("line is not a JSON object", line[:2000])
        if "data" not in obj and obj.get("errors"):
            # operational messages (e.g. operational-disconnect) end the connection
            raise RetryableError(f"X stream error: {json.dumps(obj['errors'])[:300]}")
        now = self.now()
        try:
            post = to_post(obj["data"], users_of(obj), now)
        except (*POST_ERRORS, ValidationError) as exc:
            return Skip(f"not a post: {type(exc).__name__}: {exc}", line[:2000])
        if int(post.id) > int(state.get("newest_id") or 0):
            state["newest_id"] = post.id
        state["seen_at"] = now.isoformat()
        tags = [r.get("tag") for r in obj.get("matching_rules") or [] if r.get("tag")]
        if tags:
            post = post.model_copy(update={"metadata": {**post.metadata, "rules": tags}})
        return Emit(post, dict(state))


async def _json(resp: aiohttp.ClientResponse, what: str) -> Any:
    """The answer's JSON object; a RetryableError naming ``what`` if it is not one."""
    try:
        obj = await resp.json()
    except ValueError as exc:  # not JSON, not UTF-8
        raise RetryableError(f"{what}: the answer is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise RetryableError(f"{what}: the answer is not a JSON object")
    return obj


def build(settings: Settings) -> XStreamSource:
    return XStreamSource(
        settings.x_api_url,
        settings.x_bearer_token,
        load_watchlist(settings.watchlist),
        stall_seconds=settings.x_stall_seconds,
    )
