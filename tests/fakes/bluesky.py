"""Loopback Bluesky upstreams: a Jetstream v2 server and a relay firehose.

Both serve the same log of repo events (:class:`RepoEvent`) over their real wire formats:

- Jetstream: ``/xrpc/network.bsky.jetstream.subscribeEvents``, subprotocol ``xrpc.v1.json``,
  text frames ``{"$type": "message", "payload": {...#commit}}``; honours ``collections``,
  ``kinds`` and ``cursor`` (a seq, or unix microseconds when >= 1e15: replay from the first
  event at or after that instant, inclusive). A cursor older than the retention floor is
  clamped with an ``#info OutdatedCursor`` first frame, or, with ``reject_old_cursor``,
  refused before the upgrade with HTTP 400 ``CursorTooOld``. With ``compress=True`` it serves
  a trained zstd dictionary at ``getZstdDictionary`` and sends binary zstd frames to clients
  that ask with ``zstdDictionary=<id>``; without, that endpoint answers 501 and the SDK falls
  back to plain JSON frames.
- Firehose: ``/xrpc/com.atproto.sync.subscribeRepos``, binary DAG-CBOR frames (header +
  body), ``#commit`` bodies carrying a CAR file (built here with libipld) with the commit
  and record blocks; ``cursor`` = seq, exclusive. Too old: ``#info OutdatedCursor`` then the
  oldest retained; beyond the newest: error frame ``FutureCursor`` and close.

Faults are scripted per connection number (:class:`Faults`): drop the TCP connection after N
frames, send a garbage frame, send ``ConsumerTooSlow``, refuse the handshake with a status.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import libipld
import zstandard
from aiohttp import WSMsgType, web

from tests.fakes import serve

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
JETSTREAM_NSID = "network.bsky.jetstream.subscribeEvents"
T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def iso_us(time_us: int) -> str:
    return (EPOCH + timedelta(microseconds=time_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tid(n: int) -> str:
    """A 13-character record key in the TID alphabet."""
    alphabet = "234567abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(13):
        out = alphabet[n % 32] + out
        n //= 32
    return out


@dataclass
class RepoEvent:
    seq: int
    time_us: int
    did: str
    rkey: str
    operation: str = "create"  # create | delete
    collection: str = "app.bsky.feed.post"
    record: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.rkey}"

    @property
    def uri(self) -> str:
        return f"at://{self.did}/{self.path}"


def post_events(
    start_seq: int, n: int, *, t0_us: int = T0_US, step_us: int = 1000
) -> list[RepoEvent]:
    """``n`` post creates by two authors at ``t0_us + seq * step_us``, texts ``post <seq>``."""
    out = []
    for seq in range(start_seq, start_seq + n):
        t = t0_us + seq * step_us
        rec = {
            "$type": "app.bsky.feed.post",
            "text": f"post {seq}",
            "createdAt": iso_us(t)[:-4] + "Z",  # millisecond precision, like the apps
            "langs": ["en"],
        }
        out.append(RepoEvent(seq, t, f"did:plc:author{seq % 2}", tid(seq), record=rec))
    return out


@dataclass
class Faults:
    """Faults by connection number (0 = first connection)."""

    drop_after: dict[int, int] = field(default_factory=dict)  # abort TCP after N frames
    garbage_after: dict[int, int] = field(default_factory=dict)  # a garbage frame after N
    invalid_after: dict[int, int] = field(default_factory=dict)  # well-formed, bad schema
    too_slow_after: dict[int, int] = field(default_factory=dict)  # ConsumerTooSlow after N
    # HTTP status (or status and XRPC error name) instead of the upgrade
    refuse: dict[int, int | tuple[int, str]] = field(default_factory=dict)


class _LogServer:
    """Holds the event log, serves one websocket route; subclasses encode frames."""

    path = ""

    def __init__(self, events: list[RepoEvent] | None = None, faults: Faults | None = None):
        self.events: list[RepoEvent] = list(events or [])
        self.faults = faults or Faults()
        self.floor = 0  # index of the oldest retained event
        self.connections: list[dict[str, list[str]]] = []  # query params per connection
        self.sent = 0
        self._encoded: dict[int, Any] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> _LogServer:
        app = web.Application()
        app.router.add_get(self.path, self._handle)
        self.add_routes(app)
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}/xrpc"

    def add(self, events: list[RepoEvent]) -> None:
        self.events += events
        self._changed.set()

    def trim(self, n: int) -> None:
        """Retention: forget the oldest ``n`` events."""
        self.floor = min(len(self.events), self.floor + n)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        conn = len(self.connections)
        self.connections.append({k: request.query.getall(k) for k in request.query})
        refused = self.faults.refuse.get(conn)
        if refused:
            status, error = refused if isinstance(refused, tuple) else (refused, "Refused")
            headers = {"Retry-After": "0"} if status == 429 else {}
            return web.json_response(
                {"error": error, "message": "scripted"}, status=status, headers=headers
            )
        start, first = self.start_at(request.query)
        if isinstance(start, web.StreamResponse):
            return start
        ws = web.WebSocketResponse(protocols=("xrpc.v1.json",))
        await ws.prepare(request)
        self.opened(ws, request.query)
        i, n = start, 0
        if first is not None:
            await self.send(ws, first)
        while not ws.closed:
            if i >= len(self.events):
                self._changed.clear()
                waiter = asyncio.ensure_future(self._changed.wait())
                reader = asyncio.ensure_future(ws.receive())
                done, _ = await asyncio.wait({waiter, reader}, return_when="FIRST_COMPLETED")
                waiter.cancel()
                if reader in done:
                    msg = reader.result()
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                        break
                else:
                    reader.cancel()
                continue
            if n == self.faults.drop_after.get(conn):
                assert request.transport is not None
                request.transport.abort()
                return ws
            if n == self.faults.garbage_after.get(conn):
                await self.send_garbage(ws)
            if n == self.faults.invalid_after.get(conn):
                await self.send(ws, self.invalid_commit())
            if n == self.faults.too_slow_after.get(conn):
                await self.send_error(ws, "ConsumerTooSlow", "scripted")
                await ws.close()
                return ws
            ev = self.events[i]
            i += 1
            if self.wanted(ev, request.query):
                await self.send(ws, self.encoded(ev))
                n += 1
                self.sent += 1
        return ws

    def encoded(self, ev: RepoEvent) -> Any:
        """``encode(ev)``, once per event (so a benchmark measures the client, not us)."""
        frame_ = self._encoded.get(id(ev))
        if frame_ is None:
            frame_ = self._encoded[id(ev)] = self.encode(ev)
        return frame_

    def add_routes(self, app: web.Application) -> None:
        pass

    def opened(self, ws: web.WebSocketResponse, query: Any) -> None:
        pass

    def wanted(self, ev: RepoEvent, query: Mapping[str, str]) -> bool:
        return True

    def start_at(self, query: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def encode(self, ev: RepoEvent) -> Any:
        raise NotImplementedError

    async def send(self, ws: web.WebSocketResponse, frame: Any) -> None:
        raise NotImplementedError

    async def send_garbage(self, ws: web.WebSocketResponse) -> None:
        raise NotImplementedError

    def invalid_commit(self) -> Any:
        """A frame that decodes fine but whose commit lacks required fields."""
        raise NotImplementedError

    async def send_error(self, ws: web.WebSocketResponse, error: str, message: str) -> None:
        raise NotImplementedError


class FakeJetstream(_LogServer):
    path = f"/xrpc/{JETSTREAM_NSID}"

    def __init__(
        self, *args: Any, reject_old_cursor: bool = False, compress: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.reject_old_cursor = reject_old_cursor
        self.zstd: zstandard.ZstdCompressionDict | None = None
        if compress:  # a dictionary trained on frames like ours, as the real server does
            samples = [self.encode(e).encode() for e in post_events(1, 300)]
            self.zstd = zstandard.train_dictionary(4096, samples)
        self.compressed: set[int] = set()  # id() of websockets sending zstd frames

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/xrpc/network.bsky.jetstream.getZstdDictionary", self._dictionary)

    async def _dictionary(self, request: web.Request) -> web.Response:
        if self.zstd is None:
            return web.json_response({"error": "MethodNotImplemented"}, status=501)
        return web.Response(body=self.zstd.as_bytes(), content_type="application/octet-stream")

    def opened(self, ws: web.WebSocketResponse, query: Any) -> None:
        if self.zstd is not None and query.get("zstdDictionary") == str(self.zstd.dict_id()):
            self.compressed.add(id(ws))

    def wanted(self, ev: RepoEvent, query: Any) -> bool:
        kinds = query.getall("kinds", [])
        collections = query.getall("collections", [])
        return (not kinds or "commit" in kinds) and (
            not collections or ev.collection in collections
        )

    def start_at(self, query: Any) -> tuple[Any, Any]:
        if "cursor" not in query:
            return len(self.events), None  # the live tip
        cursor = int(query["cursor"])
        retained = self.events[self.floor :]
        if cursor < 10**15:  # a seq
            idx = next((k for k, e in enumerate(retained) if e.seq >= cursor), len(retained))
            if self.floor and cursor < (retained[0].seq if retained else 0):
                return self._too_old(), None
            return self.floor + idx, None
        if self.floor and cursor <= self.events[self.floor - 1].time_us:
            if self.reject_old_cursor:
                return self._too_old(), None
            info = {
                "$type": f"{JETSTREAM_NSID}#info",
                "name": "OutdatedCursor",
                "message": f"cursor below the retention floor; resuming at seq {retained[0].seq}",
            }
            return self.floor, json.dumps({"$type": "message", "payload": info})
        idx = next((k for k, e in enumerate(retained) if e.time_us >= cursor), len(retained))
        return self.floor + idx, None

    @staticmethod
    def _too_old() -> web.Response:
        return web.json_response(
            {"error": "CursorTooOld", "message": "cursor is below the retention floor"},
            status=400,
        )

    def encode(self, ev: RepoEvent) -> str:
        payload: dict[str, Any] = {
            "$type": f"{JETSTREAM_NSID}#commit",
            "seq": ev.seq,
            "did": ev.did,
            "time": iso_us(ev.time_us),
            "witnessed_at": iso_us(ev.time_us),
            "collection": ev.collection,
            "operation": ev.operation,
            "rkey": ev.rkey,
            "rev": tid(ev.seq + 1),
        }
        if ev.operation != "delete" and ev.record is not None:
            payload["record"] = ev.record
            payload["cid"] = libipld.encode_cid(cid_of(ev.record))
        return json.dumps({"$type": "message", "payload": payload})

    async def send(self, ws: web.WebSocketResponse, frame: Any) -> None:
        if id(ws) in self.compressed and self.zstd is not None:
            await ws.send_bytes(
                zstandard.ZstdCompressor(dict_data=self.zstd).compress(frame.encode())
            )
        else:
            await ws.send_str(frame)

    async def send_garbage(self, ws: web.WebSocketResponse) -> None:
        await ws.send_str('{"$type": "message", "payload": {"$type": "nonsense#what"')

    def invalid_commit(self) -> str:
        payload = {"$type": f"{JETSTREAM_NSID}#commit", "seq": 10**9}
        return json.dumps({"$type": "message", "payload": payload})

    async def send_error(self, ws: web.WebSocketResponse, error: str, message: str) -> None:
        await ws.send_str(json.dumps({"$type": "error", "error": error, "message": message}))


# --- firehose -----------------------------------------------------------------------------


def cid_of(block: Any) -> bytes:
    """CIDv1, dag-cbor, sha2-256 of a block, in binary form."""
    return bytes([0x01, 0x71, 0x12, 0x20]) + hashlib.sha256(libipld.encode_dag_cbor(block)).digest()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def car_file(root: bytes, blocks: list[tuple[bytes, bytes]]) -> bytes:
    """A CARv1 file: varint-prefixed DAG-CBOR header, then varint-prefixed (cid, data)."""
    header = libipld.encode_dag_cbor({"version": 1, "roots": [root]})
    out = _varint(len(header)) + header
    for cid, data in blocks:
        out += _varint(len(cid) + len(data)) + cid + data
    return out


def frame(header: dict[str, Any], body: dict[str, Any]) -> bytes:
    return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)


def commit_frame(
    seq: int, time_us: int, did: str, ops: list[tuple[str, str, dict[str, Any] | None]]
) -> bytes:
    """A ``#commit`` frame: ops (action, path, record) with the records in a CAR file."""
    commit_block = {"did": did, "rev": tid(seq + 1), "version": 3, "data": None}
    commit_cid = cid_of(commit_block)
    blocks = [(commit_cid, libipld.encode_dag_cbor(commit_block))]
    body_ops = []
    for action, path, record in ops:
        cid = None
        if action != "delete" and record is not None:
            cid = cid_of(record)
            blocks.append((cid, libipld.encode_dag_cbor(record)))
        body_ops.append({"action": action, "path": path, "cid": cid})
    body = {
        "seq": seq,
        "rebase": False,
        "tooBig": False,
        "repo": did,
        "commit": commit_cid,
        "rev": tid(seq + 1),
        "since": None,
        "blocks": car_file(commit_cid, blocks),
        "ops": body_ops,
        "blobs": [],
        "time": iso_us(time_us),
    }
    return frame({"op": 1, "t": "#commit"}, body)


class FakeFirehose(_LogServer):
    path = "/xrpc/com.atproto.sync.subscribeRepos"

    def start_at(self, query: Any) -> tuple[Any, Any]:
        if "cursor" not in query:
            return len(self.events), None
        cursor = int(query["cursor"])
        retained = self.events[self.floor :]
        newest = self.events[-1].seq if self.events else 0
        if cursor > newest:
            return self.floor + len(retained), frame(
                {"op": -1}, {"error": "FutureCursor", "message": "cursor is in the future"}
            )
        if retained and cursor < retained[0].seq - 1 and self.floor:
            info = {"name": "OutdatedCursor", "message": "cursor older than the backfill window"}
            return self.floor, frame({"op": 1, "t": "#info"}, info)
        idx = next((k for k, e in enumerate(retained) if e.seq > cursor), len(retained))
        return self.floor + idx, None

    def encode(self, ev: RepoEvent) -> bytes:
        return commit_frame(ev.seq, ev.time_us, ev.did, [(ev.operation, ev.path, ev.record)])

    async def send(self, ws: web.WebSocketResponse, frame_: Any) -> None:
        await ws.send_bytes(frame_)
        if frame_[:1] and libipld.decode_dag_cbor_multi(frame_)[0].get("op") == -1:
            await ws.close()

    async def send_garbage(self, ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(b"\xff\x00not cbor at all")

    def invalid_commit(self) -> bytes:
        return frame({"op": 1, "t": "#commit"}, {"seq": 10**9, "repo": "did:plc:x"})

    async def send_error(self, ws: web.WebSocketResponse, error: str, message: str) -> None:
        await ws.send_bytes(frame({"op": -1}, {"error": error, "message": message}))
