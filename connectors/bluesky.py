"""Bluesky connector: Jetstream v2 (default) or the relay firehose, via the atproto SDK.

**Jetstream** (``bluesky_mode: jetstream``): the SDK's :class:`AsyncJetstreamClient` subscribes
to ``network.bsky.jetstream.subscribeEvents`` with ``collections=[app.bsky.feed.post]`` and
``kinds=[commit]``. The cursor is ``{"time_us", "seq"}`` of the last event handled; a resume
sends ``cursor=time_us`` (a unix-microseconds cursor, which the v2 server translates to the
first event witnessed at or after that instant on whichever instance we reach; a seq is only
meaningful on the instance that assigned it). The replayed event at the cursor itself is
dropped. A gap is reported when the server says ``#info OutdatedCursor`` (the cursor was
clamped up to the retention floor), when it rejects the cursor (``CursorTooOld``: we then go
on from now), or when the first event after a resume is later than the cursor by more than
``bluesky_gap_tolerance_seconds``.

**Firehose** (``bluesky_mode: firehose``): the SDK's :class:`AsyncFirehoseSubscribeReposClient`
on ``com.atproto.sync.subscribeRepos``; each ``#commit`` frame's CAR blocks are decoded with
``CAR.from_bytes`` and the created ``app.bsky.feed.post`` records become posts. The cursor is
``{"seq"}`` of the last commit fully handled. ``#info OutdatedCursor`` is a gap; an error
frame ``FutureCursor`` (the relay doesn't know our seq: it was reset or replaced) is a gap
and the stream goes on from the live tip.

**Deletes** are counted (``seismo_connector_events_total{outcome="deleted"}``) and
checkpointed, nothing else: ``posts.raw.v1`` is an append-only record of what was said, and an
alert's evidence keeps a post that was later deleted. Posts without text (image-only) and post
updates are counted as ``ignored``; firehose ops on other collections are not counted.

Both SDK clients reconnect by themselves, forever, with their own backoff. Here one SDK
client lives for exactly one connection (:class:`_OneConnection` makes ``start()`` return or
raise instead of redialling), so the :class:`ConnectorRunner` owns reconnects: its capped
jittered backoff, its reconnect metric, and the resume from the durable cursor, where the
gap checks run. The SDK also drops undecodable frames silently; here they become ``Skip``
items so they are counted and dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from atproto_client.exceptions import ModelError
from atproto_client.models.utils import get_model_as_dict
from atproto_core.car import CAR
from atproto_core.cid import CID
from atproto_firehose import AsyncFirehoseSubscribeReposClient, parse_subscribe_repos_message
from atproto_jetstream import AsyncJetstreamClient
from atproto_jetstream.exceptions import (
    JetstreamConsumerTooSlowError,
    JetstreamCursorTooOldError,
    JetstreamDecodingError,
    JetstreamError,
)
from atproto_subscription.exceptions import SubscriptionError
from websockets.exceptions import InvalidStatus, WebSocketException

from connectors.base import (
    MAPPING_ERRORS,
    Checkpoint,
    Cursor,
    Emit,
    Gap,
    Item,
    RetryableError,
    Skip,
    SourceError,
    error_for_status,
)
from seismo.config import Settings
from seismo.contracts import Post

log = logging.getLogger(__name__)

POST_COLLECTION = "app.bsky.feed.post"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# a post's own createdAt is client-chosen; one later than this past the relay's time is not
# believed and the relay's time is used instead
FUTURE_SLACK = timedelta(minutes=5)
GAP_INFOS = ("OutdatedCursor", "FutureCursor")
BUFFER = 1000  # frames read ahead of the runner; a full buffer stops reading (backpressure)


# --- pure mapping -------------------------------------------------------------------------


def at_uri(did: str, rkey: str, collection: str = POST_COLLECTION) -> str:
    return f"at://{did}/{collection}/{rkey}"


def post_url(did: str, rkey: str) -> str:
    return f"https://bsky.app/profile/{did}/post/{rkey}"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp with a zone, or None."""
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else None


def to_time_us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def from_time_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _uri_at(obj: Any, *path: str) -> str | None:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj if isinstance(obj, str) else None


def quoted_uri(embed: Any) -> str | None:
    """The quoted record of an ``app.bsky.embed.record`` / ``recordWithMedia`` embed."""
    kind = _uri_at(embed, "$type")
    if kind == "app.bsky.embed.record":
        return _uri_at(embed, "record", "uri")
    if kind == "app.bsky.embed.recordWithMedia":
        return _uri_at(embed, "record", "record", "uri")
    return None


def post_from_record(
    record: Mapping[str, Any],
    *,
    did: str,
    rkey: str,
    seen_at: datetime,
    now: datetime,
    cid: str | None = None,
) -> Post | None:
    """An ``app.bsky.feed.post`` record (JSON form) as a Post; None for a post without text.

    ``seen_at`` is when the relay saw it: the event time when the record's own ``createdAt``
    is missing, unparseable or implausibly far in the future. Raises ValueError (pydantic's
    ValidationError included) for a record that is not a post.
    """
    text = record.get("text")
    if not isinstance(text, str):
        raise ValueError("post record has no text field")
    if not text.strip():
        return None
    created = parse_time(record.get("createdAt"))
    if created is None or created > seen_at + FUTURE_SLACK:
        created = seen_at
    langs = record.get("langs")
    langs = [x for x in langs if isinstance(x, str)] if isinstance(langs, list) else []
    metadata: dict[str, Any] = {"seen_at": seen_at.isoformat()}
    if cid:
        metadata["cid"] = cid
    if len(langs) > 1:
        metadata["langs"] = langs
    root = _uri_at(record, "reply", "root", "uri")
    if root:
        metadata["reply_root"] = root
    return Post(
        id=at_uri(did, rkey),
        source="bluesky",
        text=text,
        created_at=created,
        author=did,
        url=post_url(did, rkey),
        lang=langs[0][:16] if langs else None,
        reply_to=_uri_at(record, "reply", "parent", "uri"),
        quote_of=quoted_uri(record.get("embed")),
        metadata=metadata,
        ingested_at=now,
    )


# --- SDK clients, one connection each ------------------------------------------------------


@dataclass(frozen=True)
class _BadFrame:
    reason: str
    raw: bytes | str


@dataclass(frozen=True)
class _End:
    error: BaseException | None


class _OneConnection:
    """Mixin for an SDK websocket client: end ``start()`` where the SDK would redial.

    A normal close (``ConnectionClosedOK``) returns; any error the SDK would retry by itself
    (drop, timeout, handshake status, ConsumerTooSlow) is raised to the caller instead.
    """

    def _handle_websocket_error_or_stop(self, exception: Exception) -> bool:
        if super()._handle_websocket_error_or_stop(exception):  # type: ignore[misc]
            return True
        raise exception


class _JetstreamConnection(_OneConnection, AsyncJetstreamClient):  # type: ignore[misc]
    def _decode_frame(self, raw_frame: str | bytes) -> Any:
        try:
            return super()._decode_frame(raw_frame)
        except (JetstreamDecodingError, ModelError, ValueError) as exc:  # garbage, bad schema
            return _BadFrame(f"undecodable Jetstream frame: {exc}", raw_frame)


class _FirehoseConnection(_OneConnection, AsyncFirehoseSubscribeReposClient):  # type: ignore[misc]
    def _decode_frame(self, raw_frame: str | bytes) -> Any:
        try:
            return super()._decode_frame(raw_frame)
        except SubscriptionError as exc:
            if type(exc) is SubscriptionError:  # an error frame from the relay, not garbage
                raise
            return _BadFrame(f"undecodable firehose frame: {exc}", raw_frame)
        except Exception as exc:  # libipld raises plain ValueErrors on bad CBOR
            return _BadFrame(f"undecodable firehose frame: {exc}", raw_frame)


async def frames(client: Any, buffer: int = BUFFER) -> AsyncIterator[Any]:
    """Run one connection of an SDK client and yield its decoded frames.

    The SDK calls back per frame; a bounded queue hands frames to this generator, so a slow
    consumer stops the reading (and the server sees it). Closing the generator closes the
    connection.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=buffer)

    async def on_message(frame: Any) -> None:
        await queue.put(frame)

    async def pump() -> None:
        try:
            await client.start(on_message)
        except Exception as exc:
            await queue.put(_End(exc))
        else:
            await queue.put(_End(None))

    task = asyncio.create_task(pump())
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        await client.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _xrpc_error(exc: BaseException) -> tuple[str, str]:
    """(error, message) of an SDK error carrying an XrpcError, else ('', str(exc))."""
    arg = exc.args[0] if exc.args else None
    error = getattr(arg, "error", None)
    if isinstance(error, str):
        return error, str(getattr(arg, "message", None) or "")
    return "", str(exc)


def _sorted_error(exc: BaseException, what: str) -> SourceError:
    """An SDK or websocket failure as retry (drops, 5xx, 429, error frames) or stop (4xx)."""
    status = exc if isinstance(exc, InvalidStatus) else exc.__cause__
    if isinstance(status, InvalidStatus):
        response = status.response
        if b"UnknownZstdDictionary" in (response.body or b""):
            # the dictionary was rotated: the next connection's client fetches the new one
            return RetryableError(f"{what}: zstd dictionary rotated")
        return error_for_status(
            response.status_code,
            f"{what} refused the connection",
            response.headers.get("Retry-After"),
        )
    error, message = _xrpc_error(exc)
    detail = f"{error}: {message}" if error else message or type(exc).__name__
    return RetryableError(f"{what}: {detail}")


# --- Jetstream ----------------------------------------------------------------------------


class _BlueskySource:
    name = "bluesky"

    def __init__(
        self,
        settings: Settings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.stall = settings.bluesky_stall_seconds
        self.now = now


class JetstreamSource(_BlueskySource):
    """Posts from Jetstream v2; see the module docstring."""

    def __init__(self, settings: Settings, **kw: Any) -> None:
        super().__init__(settings, **kw)
        self.url = settings.bluesky_jetstream_url.rstrip("/")
        self.compress = settings.bluesky_jetstream_compress
        self.tolerance_us = int(settings.bluesky_gap_tolerance_seconds * 1_000_000)

    def position(self, cursor: Cursor) -> float | None:
        t = cursor.get("time_us")
        return float(t) if isinstance(t, int) else None

    def _client(self, time_us: int | None) -> _JetstreamConnection:
        params: dict[str, Any] = {"collections": [POST_COLLECTION], "kinds": ["commit"]}
        if time_us is not None:
            params["cursor"] = time_us
        return _JetstreamConnection(
            params=params, base_uri=self.url, recv_timeout=self.stall, compress=self.compress
        )

    async def stream(self, cursor: Cursor | None) -> AsyncIterator[Item]:
        resume = cursor if cursor and isinstance(cursor.get("time_us"), int) else None
        check_gap = True
        while True:
            client = self._client(resume["time_us"] if resume else None)
            try:
                async for item in self._connection(client, resume, check_gap):
                    yield item
                return
            except JetstreamCursorTooOldError as exc:
                now_us = to_time_us(self.now())
                yield Gap(
                    f"Jetstream rejected cursor {resume} ({_xrpc_error(exc)[1]}); "
                    "going on from now",
                    {"time_us": now_us, "seq": None},
                )
                resume = {"time_us": now_us, "seq": None}
                check_gap = False  # reported just now
            except TimeoutError as exc:
                raise RetryableError(f"Jetstream sent nothing for {self.stall:.0f}s") from exc
            except (JetstreamError, OSError, WebSocketException) as exc:
                if isinstance(exc, JetstreamConsumerTooSlowError):
                    raise RetryableError("Jetstream dropped us as too slow") from exc
                raise _sorted_error(exc, f"Jetstream at {self.url}") from exc
            finally:
                await _close_xrpc(client)

    async def _connection(
        self, client: _JetstreamConnection, resume: Cursor | None, check_gap: bool
    ) -> AsyncIterator[Item]:
        first = check_gap
        async for frame in frames(client):
            if isinstance(frame, _BadFrame):
                yield Skip(frame.reason, frame.raw)
                continue
            kind = getattr(frame, "py_type", "")
            if kind.endswith("#info"):
                if frame.name in GAP_INFOS:
                    first = False  # reported: the late first event is the same gap
                    yield Gap(f"Jetstream #info {frame.name}: {frame.message or ''}".strip())
                else:
                    log.info("bluesky: Jetstream #info %s: %s", frame.name, frame.message)
                continue
            if not kind.endswith("#commit"):
                continue
            seen_at = parse_time(frame.witnessed_at) or parse_time(frame.time)
            if seen_at is None:
                yield Skip(f"Jetstream event {frame.seq} has no usable time", str(frame))
                continue
            t_us = to_time_us(seen_at)
            here = {"time_us": t_us, "seq": frame.seq}
            if first and resume is not None:
                first = False
                late = t_us - resume["time_us"]
                if late > self.tolerance_us:
                    yield Gap(
                        f"first Jetstream event after resuming is {late / 1e6:.1f}s after "
                        f"the cursor ({from_time_us(resume['time_us']).isoformat()})"
                    )
            if resume is not None and (
                t_us < resume["time_us"]
                or (t_us == resume["time_us"] and frame.seq <= (resume.get("seq") or -1))
            ):
                continue  # the inclusive replay of what we already handled
            yield self._item(frame, seen_at, here)

    def _item(self, commit: Any, seen_at: datetime, cursor: Cursor) -> Item:
        if commit.collection != POST_COLLECTION or commit.operation not in ("create", "delete"):
            return Checkpoint(cursor, "ignored")
        if commit.operation == "delete":
            return Checkpoint(cursor, "deleted")
        record = get_model_as_dict(commit.record) if commit.record is not None else {}
        try:
            post = post_from_record(
                record,
                did=commit.did,
                rkey=commit.rkey,
                seen_at=seen_at,
                now=self.now(),
                cid=commit.cid,
            )
        except MAPPING_ERRORS as exc:
            return Skip(
                f"bad post record {at_uri(commit.did, commit.rkey)}: {exc}",
                json.dumps(record, default=str),
                cursor,
            )
        if post is None:
            return Checkpoint(cursor, "ignored")
        return Emit(post, cursor)


async def _close_xrpc(client: Any) -> None:
    """Close the HTTP client the SDK opened to fetch the zstd dictionary, if it did."""
    request = getattr(getattr(client, "_xrpc_client", None), "request", None)
    if request is not None:
        with contextlib.suppress(Exception):
            await request.close()


# --- relay firehose -----------------------------------------------------------------------


class FirehoseSource(_BlueskySource):
    """Posts from the relay firehose (``com.atproto.sync.subscribeRepos``)."""

    def __init__(self, settings: Settings, **kw: Any) -> None:
        super().__init__(settings, **kw)
        self.url = settings.bluesky_firehose_url.rstrip("/")

    def position(self, cursor: Cursor) -> float | None:
        seq = cursor.get("seq")
        return float(seq) if isinstance(seq, int) else None

    async def stream(self, cursor: Cursor | None) -> AsyncIterator[Item]:
        seq = cursor.get("seq") if cursor else None
        params = {"cursor": seq} if isinstance(seq, int) else None
        client = _FirehoseConnection(params=params, base_uri=self.url, recv_timeout=self.stall)
        try:
            async for frame in frames(client):
                if isinstance(frame, _BadFrame):
                    yield Skip(frame.reason, frame.raw)
                    continue
                for item in self._items(frame):
                    yield item
        except SubscriptionError as exc:
            error, message = _xrpc_error(exc)
            if error == "FutureCursor":
                # the relay has never reached our seq: it was reset or is another relay
                yield Gap(f"relay: FutureCursor for seq {seq} ({message}); going on from now", {})
                return
            raise _sorted_error(exc, f"relay at {self.url}") from exc
        except TimeoutError as exc:
            raise RetryableError(f"relay sent nothing for {self.stall:.0f}s") from exc
        except (OSError, WebSocketException) as exc:
            raise _sorted_error(exc, f"relay at {self.url}") from exc

    def _items(self, frame: Any) -> list[Item]:
        try:
            message = parse_subscribe_repos_message(frame)
        except (KeyError, ModelError, ValueError) as exc:  # unknown type, bad schema
            return [Skip(f"undecodable firehose message {frame.type!r}: {exc}", None)]
        kind = getattr(message, "py_type", "")
        if kind.endswith("#info"):
            if message.name in GAP_INFOS:
                return [Gap(f"relay #info {message.name}: {message.message or ''}".strip())]
            log.info("bluesky: relay #info %s: %s", message.name, message.message)
            return []
        here: Cursor = {"seq": message.seq}
        if not kind.endswith("#commit"):
            return [Checkpoint(here)]
        try:
            items = self._commit_items(message)
        except Exception as exc:  # a bad CAR or op: the whole commit is skipped
            return [Skip(f"bad commit seq {message.seq}: {exc}", None, here)]
        # only the last item of a commit carries its seq: a cursor saved in the middle
        # would resume after the commit and lose the rest of it
        if not items:
            return [Checkpoint(here)]
        items[-1] = dataclasses.replace(items[-1], cursor=here)
        return list(items)

    def _commit_items(self, commit: Any) -> list[Emit | Skip | Checkpoint | Gap]:
        """The commit's post ops as items without a cursor (the caller adds it)."""
        seen_at = parse_time(commit.time) or self.now()
        car: CAR | None = None
        items: list[Emit | Skip | Checkpoint | Gap] = []
        for op in commit.ops:
            collection, _, rkey = op.path.partition("/")
            if collection != POST_COLLECTION:
                continue  # likes, follows, reposts...: most of the firehose
            if op.action != "create":
                items.append(Checkpoint(None, "deleted" if op.action == "delete" else "ignored"))
                continue
            if car is None:
                car = CAR.from_bytes(commit.blocks)
            cid = op.cid if isinstance(op.cid, CID) else CID.decode(op.cid)
            record = car.blocks.get(cid)
            if not isinstance(record, dict):
                items.append(Skip(f"commit {commit.seq}: no block for {op.path}", None))
                continue
            try:
                post = post_from_record(
                    record,
                    did=commit.repo,
                    rkey=rkey,
                    seen_at=seen_at,
                    now=self.now(),
                    cid=str(cid),
                )
            except MAPPING_ERRORS as exc:
                items.append(Skip(f"bad post record {at_uri(commit.repo, rkey)}: {exc}", None))
                continue
            items.append(Emit(post) if post else Checkpoint(None, "ignored"))
        return items


def build(settings: Settings) -> JetstreamSource | FirehoseSource:
    if settings.bluesky_mode == "firehose":
        return FirehoseSource(settings)
    return JetstreamSource(settings)
