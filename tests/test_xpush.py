"""The x-push endpoint: auth, size limit, per-line validation, answers only after Kafka acks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from connectors.base import (
    ConnectorRunner,
    Cursor,
    CursorStore,
    Emit,
    FatalSourceError,
    Flush,
    Item,
    Skip,
)
from connectors.x import to_post
from connectors.xpush import PATH, XPushSource, parse_body
from seismo.broker import free_port
from seismo.config import load_settings
from seismo.metrics import Metrics
from tests.fakes.kit import (
    FakeSource,
    MemorySink,
    connector_running,
    fast_runner,
    read_posts,
    value,
)
from tests.fakes.x import ndjson, x_post
from tests.helpers import finishes, wait_until_async
from tests.timeouts import CONNECTOR_PROGRESS, RECORD_ARRIVES, SERVICE_READY

NOW = datetime(2026, 11, 24, tzinfo=UTC)
AUTH = {"Authorization": "Bearer push-secret"}


def test_parse_body_accepts_a_post_an_envelope_an_array_and_ndjson() -> None:
    single = x_post(1)["data"]
    assert [v.id for v in parse_body(json.dumps(single).encode(), NOW)[1]] == [single["id"]]
    env = {"data": [x_post(1)["data"], x_post(2)["data"]], "includes": x_post(1)["includes"]}
    items, verdicts = parse_body(json.dumps(env).encode(), NOW)
    assert [v.error for v in verdicts] == [None, None]
    assert all(isinstance(i, Emit) and i.post.author == "newsdesk" for i in items)
    items, _ = parse_body(json.dumps([x_post(1), x_post(2)]).encode(), NOW)
    assert len(items) == 2
    body = ndjson(x_post(1)) + b"{broken\n\n" + ndjson({"data": {"id": "7"}}, x_post(2))
    items, verdicts = parse_body(body, NOW)
    assert [(v.line, v.error is None) for v in verdicts] == [
        (1, True),
        (2, False),
        (4, False),
        (5, True),
    ]
    assert verdicts[2].id == "7" and "KeyError" in str(verdicts[2].error)
    assert [type(i) for i in items] == [Emit, Skip, Skip, Emit]


async def listening(source: XPushSource) -> None:
    """Until the endpoint has bound its port."""
    await wait_until_async(lambda: source.bound_port, "the x-push endpoint bound", SERVICE_READY)


async def post_when_listening(
    http: aiohttp.ClientSession, url: str | Callable[[], str], body: bytes, headers: dict[str, str]
) -> int:
    """POST ``body`` once the endpoint accepts connections (it may be (re)starting; ``url``
    is asked again for each try when a callable: a reconnect on port 0 takes a new port)."""
    status = 0

    def at() -> str:
        return url if isinstance(url, str) else url()

    async def attempt() -> bool:
        nonlocal status
        try:
            async with http.post(at(), data=body, headers=headers) as resp:
                status = resp.status
                return True
        except aiohttp.ClientConnectionError:
            return False

    loop = asyncio.get_running_loop()
    deadline = loop.time() + SERVICE_READY
    while not await attempt():
        assert loop.time() < deadline, f"{at()} not accepting in {SERVICE_READY:g}s"
        await asyncio.sleep(0.02)
    return status


class Push:
    """An XPushSource driven by a runner, and an HTTP client for it."""

    def __init__(self, tmp_path: Path, sink: MemorySink, max_bytes: int = 4096) -> None:
        self.source = XPushSource("127.0.0.1", 0, SecretStr("push-secret"), max_bytes)
        self.sink = sink
        self.runner: ConnectorRunner = fast_runner(self.source, sink, CursorStore(tmp_path / "c"))[
            0
        ]
        self.stop = asyncio.Event()
        self.task: asyncio.Task[object] | None = None

    async def __aenter__(self) -> Push:
        self.task = asyncio.create_task(self.runner.run(self.stop))
        await listening(self.source)
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        self.stop.set()
        assert self.task is not None
        await finishes(self.task, "the x-push runner")

    def url(self) -> str:
        return f"http://127.0.0.1:{self.source.bound_port}{PATH}"

    async def post(
        self, body: bytes, headers: dict[str, str] = AUTH
    ) -> tuple[int, dict[str, object]]:
        async with self.http.post(self.url(), data=body, headers=headers) as resp:
            return resp.status, await resp.json()


async def test_batch_is_answered_after_the_posts_are_acked(tmp_path: Path) -> None:
    sink = MemorySink()
    async with Push(tmp_path, sink) as push:
        body = ndjson(x_post(1), x_post(2)) + b"not json\n" + ndjson(x_post(3))
        status, answer = await push.post(body)
        assert status == 200
        # acked by the sink before the answer, not merely buffered
        assert [p.id for p in sink.acked] == [x_post(i)["data"]["id"] for i in (1, 2, 3)]
        assert answer["accepted"] == 3
        assert answer["rejected"] == [
            {"line": 3, "id": None, "error": answer["rejected"][0]["error"]}
        ]  # type: ignore[index]
        assert len(sink.dead_letters) == 1 and sink.dead_letters[0][0] == "x-push"
        assert all(p.source == "x" for p in sink.acked)


async def test_repeated_push_is_not_doubled(tmp_path: Path) -> None:
    sink = MemorySink()
    async with Push(tmp_path, sink) as push:
        for _ in range(2):
            status, _ = await push.post(ndjson(x_post(1), x_post(2)))
            assert status == 200
        assert len(sink.acked) == 2 and push.runner.stats.duplicates == 2


async def test_failed_kafka_ack_answers_503_and_the_retry_stores_once(tmp_path: Path) -> None:
    sink = MemorySink(fail_flushes=1)
    async with Push(tmp_path, sink) as push:
        status, answer = await push.post(ndjson(x_post(1)))
        assert status == 503 and "retry" in str(answer["error"])
        assert sink.acked == []
        # the runner reconnects: the endpoint comes back (on a new port: it asked for port 0)
        status = await post_when_listening(push.http, push.url, ndjson(x_post(1)), AUTH)
        assert status == 200
        assert [p.id for p in sink.acked] == [x_post(1)["data"]["id"]]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, ndjson(x_post(1)), 401),
        ({"Authorization": "Bearer wrong"}, ndjson(x_post(1)), 401),
        (AUTH, ndjson(*[x_post(i) for i in range(40)]), 413),
        (AUTH, b"", 400),
        (AUTH, b"garbage\n", 400),
    ],
    ids=["no-token", "wrong-token", "too-large", "empty", "all-bad"],
)
async def test_refusals(tmp_path: Path, headers: dict[str, str], body: bytes, status: int) -> None:
    sink = MemorySink()
    async with Push(tmp_path, sink) as push:
        got, answer = await push.post(body, headers)
        assert got == status, answer
        assert sink.acked == []


def test_push_needs_a_token() -> None:
    with pytest.raises(FatalSourceError, match="x_push_token"):
        XPushSource("127.0.0.1", 0, None, 4096)


async def test_stop_fails_waiting_pushes_promptly(tmp_path: Path) -> None:
    source = XPushSource("127.0.0.1", 0, SecretStr("push-secret"), 4096)

    taken = asyncio.Event()

    async def consume_one(gen: AsyncIterator[object]) -> None:
        async for _ in gen:
            taken.set()
            await asyncio.Event().wait()  # a consumer that never flushes

    gen = source.stream(None)
    task = asyncio.create_task(consume_one(gen))
    await listening(source)
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{source.bound_port}{PATH}"
        pending = asyncio.create_task(http.post(url, data=ndjson(x_post(1)), headers=AUTH))
        await finishes(taken.wait(), "the push taken by the consumer", CONNECTOR_PROGRESS)
        task.cancel()  # what the runner does on stop; dropping the generator closes it
        await gen.aclose()  # type: ignore[attr-defined]
        resp = await finishes(pending, "the waiting push's answer")
        assert resp.status == 503


@pytest.mark.broker
async def test_push_answers_after_kafka_has_the_posts(
    kafka: str, namespace: str, tmp_path: Path
) -> None:
    settings = load_settings(kafka_bootstrap=kafka, namespace=namespace, data_dir=tmp_path)
    source = XPushSource("127.0.0.1", free_port(), SecretStr("push-secret"), 100_000)
    async with connector_running(source, settings), aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{source.port}{PATH}"
        # once the endpoint listens (the sink starts first)
        status = await post_when_listening(http, url, ndjson(x_post(1), x_post(2)), AUTH)
        assert status == 200
        got = await read_posts(settings, 2)  # already there when the answer came
        assert [k for k, _ in got] == [f"x:{x_post(i)['data']['id']}".encode() for i in (1, 2)]


async def test_overloaded_endpoint_answers_503_at_once(tmp_path: Path) -> None:
    source = XPushSource("127.0.0.1", 0, SecretStr("push-secret"), 4096, queue_size=1)
    gen = source.stream(None)
    stuck = asyncio.Event()

    async def slow_consumer() -> None:
        async for _ in gen:
            stuck.set()
            await asyncio.Event().wait()  # stuck on the first item

    task = asyncio.create_task(slow_consumer())
    await listening(source)
    url = f"http://127.0.0.1:{source.bound_port}{PATH}"
    async with aiohttp.ClientSession() as http:
        first = asyncio.create_task(http.post(url, data=ndjson(x_post(1)), headers=AUTH))
        # batch 1 taken, its answer pending
        await finishes(stuck.wait(), "the first push taken", CONNECTOR_PROGRESS)
        second = asyncio.create_task(http.post(url, data=ndjson(x_post(2)), headers=AUTH))
        await wait_until_async(  # batch 2 fills the queue
            lambda: source._conn is not None and source._conn.queue.full(),
            "the second push queued",
            CONNECTOR_PROGRESS,
        )
        async with http.post(url, data=ndjson(x_post(3)), headers=AUTH) as third:
            assert third.status == 503 and third.headers["Retry-After"] == "1"
        task.cancel()
        await gen.aclose()  # type: ignore[attr-defined]
        for pending in (first, second):
            assert (await finishes(pending, "a waiting push's answer")).status == 503


async def test_flush_item_acks_at_once_even_between_checkpoints(tmp_path: Path) -> None:
    # the runner's Flush: flush now (not at the next checkpoint tick), resolve after the ack
    loop = asyncio.get_running_loop()
    ack: asyncio.Future[None] = loop.create_future()

    async def script(cursor: Cursor | None) -> AsyncIterator[Item]:
        yield Emit(to_post(x_post(1)["data"], {}, NOW))
        yield Flush(ack)

    sink = MemorySink()
    store = CursorStore(tmp_path / "c")
    runner = ConnectorRunner(
        FakeSource(script),
        sink,
        store,
        Metrics(CollectorRegistry()),
        checkpoint_seconds=3600,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await finishes(asyncio.shield(ack), "the flush's ack", CONNECTOR_PROGRESS)
    assert [p.id for p in sink.acked] == [x_post(1)["data"]["id"]]
    assert store.load() is None  # no cursor was given: nothing to save
    stop.set()
    await finishes(task, "the runner")


async def test_a_late_close_of_the_old_connection_leaves_the_new_one_serving() -> None:
    # after a flush error the runner reconnects; the old generator may be finalized later
    source = XPushSource("127.0.0.1", free_port(), SecretStr("push-secret"), 4096)
    old = source.stream(None)
    old_task = asyncio.create_task(anext(old))  # type: ignore[arg-type]
    await listening(source)
    old_conn = source._conn
    new = source.stream(None)  # same port: the old server is closed first
    new_task = asyncio.create_task(anext(new))  # type: ignore[arg-type]
    await wait_until_async(
        lambda: source._conn not in (None, old_conn), "the new server", SERVICE_READY
    )
    old_task.cancel()  # the old generator ends now and runs its cleanup
    with contextlib.suppress(asyncio.CancelledError):
        await old_task
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{source.port}/healthz"
        async with http.get(url) as resp:
            assert resp.status == 200
    new_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await new_task


async def test_a_batch_kafka_refused_is_503_with_a_reason_and_not_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class RefusingOnce(MemorySink):
        async def flush(self) -> None:
            if self.fail_flushes:
                self.fail_flushes -= 1
                self.buffer.clear()
                raise ConnectionError()  # aiokafka's errors often say nothing
            await super().flush()

    source = XPushSource("127.0.0.1", free_port(), SecretStr("push-secret"), 4096)
    sink = RefusingOnce(fail_flushes=1)
    runner, metrics = fast_runner(source, sink, CursorStore(tmp_path / "c"))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    url = f"http://127.0.0.1:{source.port}{PATH}"
    try:
        async with aiohttp.ClientSession() as http:
            statuses = []
            # the scheme is case-insensitive (RFC 7235)
            for auth in ("Bearer push-secret", "bearer push-secret"):
                # once the (re)connected endpoint listens
                body = ndjson(x_post(len(statuses)))
                statuses.append(await post_when_listening(http, url, body, {"Authorization": auth}))
                if len(statuses) == 1:
                    assert runner.stats.produced == 0  # answered 503: not produced
        assert statuses == [503, 200]
        assert re.search(r"was not stored: \S", caplog.text)
        assert runner.stats.produced == 1
        assert (
            value(metrics, "seismo_connector_events_total", source="x-push", outcome="produced")
            == 1
        )
    finally:
        stop.set()
        await finishes(task, "the runner")


# --- hostile bodies (issue 18): a 400 with a reason, never a 500; valid lines kept ---------


def _hostile_bodies() -> dict[str, bytes]:
    good = x_post(7)
    data = good["data"]
    return {
        "nested-3000": b"[" * 3000 + b"]" * 3000,
        "nested-object-3000": b'{"data":' * 3000 + b"1" + b"}" * 3000,
        "digits-5000": b'{"data": {"id": ' + b"1" * 5000 + b', "text": "x"}}',
        "includes-list": json.dumps({**good, "includes": ["x"]}).encode(),
        "includes-string": json.dumps({**good, "includes": "users"}).encode(),
        "users-string": json.dumps({**good, "includes": {"users": "newsdesk"}}).encode(),
        "users-ints": json.dumps({**good, "includes": {"users": [1, 2]}}).encode(),
        "refs-string": json.dumps({**data, "referenced_tweets": "quoted"}).encode(),
        "refs-ints": json.dumps({**data, "referenced_tweets": [1, 2]}).encode(),
        "year-9999": json.dumps({**data, "created_at": "9999-12-31T23:59:59.000Z"}).encode(),
        "year-1900": json.dumps({**data, "created_at": "1900-01-01T00:00:00.000Z"}).encode(),
        "nested-list-900": b"[" * 900 + b"]" * 900,
        "deep-id": json.dumps({**data, "id": json.loads("[" * 900 + "]" * 900)}).encode(),
    }


@pytest.mark.parametrize("kind", list(_hostile_bodies()))
async def test_a_hostile_body_is_a_400_with_a_reason(tmp_path: Path, kind: str) -> None:
    sink = MemorySink()
    async with Push(tmp_path, sink, max_bytes=100_000) as push:
        status, answer = await push.post(_hostile_bodies()[kind])
        assert status == 400, answer
        assert answer["accepted"] == 0 and answer["rejected"], answer
        assert sink.acked == []


def test_a_post_dated_1900_or_9999_is_refused_by_the_one_rule_replay_uses_too() -> None:
    from connectors.replay import RowError
    from connectors.replay import to_post as replay_post

    for when in ("1900-01-01T00:00:00.000Z", "9999-12-31T23:59:59.000Z"):
        items, verdicts = parse_body(json.dumps(x_post(1, created_at=when)).encode(), NOW)
        assert [type(i) for i in items] == [Skip]
        assert "created_at: event time" in str(verdicts[0].error)
        row = {"id": "1", "source": "x", "text": "t", "created_at": when}
        with pytest.raises(RowError, match="created_at: event time") as err:
            replay_post(row)
        assert err.value.kind == "created_at out of range"


async def test_a_bad_line_keeps_the_valid_lines_of_its_body(tmp_path: Path) -> None:
    sink = MemorySink()
    async with Push(tmp_path, sink, max_bytes=100_000) as push:
        bodies = _hostile_bodies()
        body = ndjson(x_post(1)) + bodies["nested-3000"] + b"\n" + bodies["digits-5000"] + b"\n"
        body += bodies["refs-ints"] + b"\n" + bodies["year-9999"] + b"\n" + ndjson(x_post(2))
        status, answer = await push.post(body)
        assert status == 200, answer
        assert answer["accepted"] == 2
        assert [r["line"] for r in answer["rejected"]] == [2, 3, 4, 5]  # type: ignore[index]
        assert [p.id for p in sink.acked] == [x_post(i)["data"]["id"] for i in (1, 2)]


@pytest.mark.broker
async def test_2000_hostile_bodies_then_every_valid_post_is_stored(
    kafka: str, namespace: str, tmp_path: Path
) -> None:
    """Year 9999 once took the connector down for every client (Kafka refused the
    timestamp, the idempotent producer went out of sequence, later posts were lost)."""
    settings = load_settings(kafka_bootstrap=kafka, namespace=namespace, data_dir=tmp_path)
    source = XPushSource("127.0.0.1", free_port(), SecretStr("push-secret"), 100_000)
    hostile = list(_hostile_bodies().values())
    async with connector_running(source, settings), aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{source.port}{PATH}"

        async def post(body: bytes) -> int:
            async with http.post(url, data=body, headers=AUTH) as r:
                await r.read()
                return r.status

        for _ in range(int(SERVICE_READY / 0.1)):  # until the endpoint listens (sink first)
            try:
                await post(b"{}")
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        statuses: dict[int, int] = {}
        for i in range(2000):
            status = await post(hostile[i % len(hostile)])
            statuses[status] = statuses.get(status, 0) + 1
        assert set(statuses) == {400}, statuses
        for i in range(20):  # NDJSON and single bodies, each after more hostile ones
            body = ndjson(x_post(100 + i)) if i % 2 else json.dumps(x_post(100 + i)).encode()
            assert await post(body) == 200
            assert await post(hostile[i % len(hostile)]) == 400
        got = await read_posts(settings, 20, timeout=RECORD_ARRIVES)
        assert sorted(p.id for _, p in got) == [x_post(100 + i)["data"]["id"] for i in range(20)]
