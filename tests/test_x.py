"""X filtered-stream connector against a local chunked-streaming X API server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.base import ConnectorRunner, CursorStore, FatalSourceError, RetryableError
from connectors.x import XStreamSource, rule_changes, to_post, wanted_rules
from seismo.config import load_settings
from seismo.metrics import Metrics
from seismo.watchlist import Claim, Dossier, Watchlist
from tests.fakes.kit import (
    MemorySink,
    SlowSink,
    connector_running,
    fast_runner,
    read_posts,
    run_until,
    value,
)
from tests.fakes.x import TOKEN, Conn, XServer, line, x_post
from tests.helpers import finishes
from tests.timeouts import CONNECTOR_PROGRESS

NOW = datetime(2026, 11, 24, tzinfo=UTC)
WATCH = Watchlist(
    dossiers=[Dossier(id="china-ai", title="China AI", keywords=["deepseek", "moonshot ai"])],
    claims=[Claim(id="glm", text="GLM-5 on Ascend", keywords=["glm-5", "ascend"])],
)


def pid(i: int) -> str:
    return x_post(i)["data"]["id"]


def make(
    server: XServer,
    store: CursorStore,
    sink: MemorySink,
    token: str = TOKEN,
    stall: float = 5.0,
) -> tuple[ConnectorRunner, Metrics, XStreamSource]:
    source = XStreamSource(
        server.base, SecretStr(token), WATCH, stall_seconds=stall, http_error_wait=0.05
    )
    runner, metrics = fast_runner(source, sink, store)
    return runner, metrics, source


def test_to_post_maps_refs_author_and_url() -> None:
    msg = x_post(
        3,
        referenced_tweets=[{"type": "replied_to", "id": "11"}, {"type": "quoted", "id": "12"}],
        lang="und",
    )
    p = to_post(msg["data"], {"42": "newsdesk"}, NOW)
    assert p.id == pid(3) and p.source == "x" and p.author == "newsdesk"
    assert p.url == f"https://x.com/i/web/status/{pid(3)}"
    assert p.reply_to == "11" and p.quote_of == "12" and p.lang is None
    assert p.created_at == datetime(2026, 11, 23, 12, 0, 3, tzinfo=UTC)
    assert p.metadata["conversation_id"] == pid(3)


def test_rules_from_watchlist_are_tagged_and_split_to_fit() -> None:
    rules = wanted_rules(WATCH)
    assert rules == {
        "seismo:dossier:china-ai": '(deepseek OR "moonshot ai")',
        "seismo:claim:glm": '("glm-5" OR ascend)',
    }
    many = Watchlist(
        dossiers=[Dossier(id="d", title="D", keywords=[f"keyword{i}" for i in range(100)])]
    )
    split = wanted_rules(many, max_chars=120)
    assert len(split) > 1 and all(len(v) <= 120 for v in split.values())
    terms = [t for v in split.values() for t in v.strip("()").split(" OR ")]
    assert terms == [f"keyword{i}" for i in range(100)]


def test_rule_changes_touch_only_our_rules() -> None:
    current = [
        {"id": "1", "value": "deepseek", "tag": "seismo:dossier:china-ai"},  # changed
        {"id": "2", "value": "old", "tag": "seismo:dossier:gone"},  # stale
        {"id": "3", "value": "cats", "tag": "someone-else"},
        {"id": "4", "value": '("glm-5" OR ascend)', "tag": "seismo:claim:glm"},  # same
    ]
    delete, add = rule_changes(current, wanted_rules(WATCH))
    assert sorted(delete) == ["1", "2"]
    assert add == [{"value": '(deepseek OR "moonshot ai")', "tag": "seismo:dossier:china-ai"}]


@dataclass
class Scenario:
    name: str
    conns: list[Conn]
    want: list[int]  # post numbers produced, in order
    skipped: int = 0
    reconnects: int = 0  # at least
    gaps: int = 0  # at least
    stall: float = 5.0
    sink: Callable[[], MemorySink] = MemorySink
    live: list[int] = field(default_factory=list)  # posts sent later on the open stream


SCENARIOS = [
    Scenario("normal", [Conn([line(x_post(i)) for i in range(5)])], list(range(5))),
    Scenario(
        "disconnect-mid-stream",
        [Conn([line(x_post(i)) for i in range(3)], end="drop"), Conn([line(x_post(3))])],
        [0, 1, 2, 3],
        reconnects=1,
        gaps=1,
    ),
    Scenario(
        "server-closes",
        [Conn([line(x_post(0))], end="close"), Conn([line(x_post(1))])],
        [0, 1],
        reconnects=1,
        gaps=1,
    ),
    Scenario(
        "garbage-lines",
        [
            Conn(
                [
                    line(x_post(0)),
                    b"{not json\r\n",
                    line({"data": {"id": "abc", "text": "x"}}),
                    line([1, 2]),
                    line(x_post(1)),
                ]
            )
        ],
        [0, 1],
        skipped=3,
    ),
    Scenario(
        "429-rate-limited",
        [Conn(status=429, headers={"x-rate-limit-reset": str(int(time.time()))}), Conn()],
        [0],
        reconnects=1,
        live=[0],
    ),
    Scenario("503", [Conn(status=503), Conn(status=500), Conn()], [0], reconnects=2, live=[0]),
    Scenario(
        "operational-disconnect",
        [
            Conn([line(x_post(0)), line({"errors": [{"title": "operational-disconnect"}]})]),
            Conn([line(x_post(1))]),
        ],
        [0, 1],
        reconnects=1,
        gaps=1,
    ),
    Scenario(
        "stalled-stream",
        [Conn([line(x_post(0))], end="stall"), Conn([line(x_post(1))])],
        [0, 1],
        reconnects=1,
        gaps=1,
        stall=0.3,
    ),
    Scenario(
        "slow-consumer",
        [Conn([line(x_post(i)) for i in range(30)])],
        list(range(30)),
        sink=lambda: SlowSink(0.005),
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_scenarios(sc: Scenario, tmp_path: Path) -> None:
    server = await XServer().start()
    try:
        server.conns = list(sc.conns)
        sink = sc.sink()
        runner, metrics, _ = make(server, CursorStore(tmp_path / "c.json"), sink, stall=sc.stall)
        for i in sc.live:
            server.live.put_nowait(line(x_post(i)))
        await run_until(runner, lambda: len(sink.acked) >= len(sc.want))  # then a clean stop
        assert [p.id for p in sink.acked] == [pid(i) for i in sc.want]
        assert runner.stats.skipped == sc.skipped == len(sink.dead_letters)
        assert runner.stats.reconnects >= sc.reconnects
        assert runner.stats.gaps >= sc.gaps
        assert value(metrics, "seismo_connector_gaps_total", source="x") == runner.stats.gaps
        # rules were synced once and every connect asked for the fields we map
        assert {r["tag"] for r in server.rules} == set(wanted_rules(WATCH))
        assert all("referenced_tweets" in c["tweet.fields"] for c in server.connects)
        assert sink.acked[0].metadata["rules"] == ["seismo:dossier:china-ai"]
    finally:
        await server.stop()


async def test_bad_token_is_fatal_with_a_clear_message(tmp_path: Path) -> None:
    server = await XServer().start()
    try:
        runner, _, _ = make(server, CursorStore(tmp_path / "c"), MemorySink(), token="wrong-tok")
        with pytest.raises(FatalSourceError, match="401 Unauthorized") as err:
            await finishes(runner.run(asyncio.Event()), "a connector with a bad token")
        assert "wrong-tok" not in str(err.value)
    finally:
        await server.stop()


def test_missing_token_is_fatal() -> None:
    with pytest.raises(FatalSourceError, match="x_bearer_token"):
        XStreamSource("http://127.0.0.1:1/2", None, WATCH)


async def test_restart_resumes_reports_the_gap_and_repeats_nothing(tmp_path: Path) -> None:
    server = await XServer().start()
    try:
        store = CursorStore(tmp_path / "c.json")
        sink = MemorySink()
        server.conns = [Conn([line(x_post(i)) for i in range(3)])]
        first, _, _ = make(server, store, sink)
        await run_until(first, lambda: len(sink.acked) == 3)
        assert store.load() is not None and store.load()["newest_id"] == pid(2)  # type: ignore[index]
        # the restarted connection replays nothing (X has no replay) and sends new posts
        server.conns = [Conn([line(x_post(i)) for i in range(3, 5)])]
        second, _, _ = make(server, store, sink)
        await run_until(second, lambda: len(sink.acked) == 5)
        assert [p.id for p in sink.acked] == [pid(i) for i in range(5)]
        assert second.stats.gaps == 1 and first.stats.gaps == 0
        assert len(server.rule_posts) == 1  # the second run found the rules already in place
    finally:
        await server.stop()


async def test_stale_rules_we_own_are_deleted_and_others_kept(tmp_path: Path) -> None:
    server = await XServer().start()
    try:
        server.rules = [
            {"id": "1", "value": "old words", "tag": "seismo:dossier:gone"},
            {"id": "2", "value": "cats", "tag": "cat-team"},
        ]
        sink = MemorySink()
        server.conns = [Conn([line(x_post(0))])]
        runner, _, _ = make(server, CursorStore(tmp_path / "c"), sink)
        await run_until(runner, lambda: len(sink.acked) == 1)
        tags = sorted(r["tag"] for r in server.rules)
        assert tags == sorted(["cat-team", *wanted_rules(WATCH)])
    finally:
        await server.stop()


def test_gap_detail_counts_the_time_away() -> None:
    clock = [NOW]
    source = XStreamSource("http://127.0.0.1:1/2", SecretStr("t"), WATCH, now=lambda: clock[0])
    source._connected, source._disconnected_at = True, NOW
    clock[0] = NOW + timedelta(seconds=42)
    gap = source._gap_since({})
    assert gap is not None and "42.0s" in gap.detail


@pytest.mark.broker
async def test_x_stream_into_kafka(kafka: str, namespace: str, tmp_path: Path) -> None:
    server = await XServer().start()
    try:
        server.conns = [
            Conn([line(x_post(i)) for i in range(2)], end="drop"),
            Conn([line(x_post(i)) for i in range(1, 4)]),  # overlaps post 1
        ]
        settings = load_settings(kafka_bootstrap=kafka, namespace=namespace, data_dir=tmp_path)
        source = XStreamSource(server.base, SecretStr(TOKEN), WATCH)
        async with connector_running(source, settings):
            got = await read_posts(settings, 4)
        assert [k for k, _ in got] == [f"x:{pid(i)}".encode() for i in range(4)]
        assert got[0][1].url == f"https://x.com/i/web/status/{pid(0)}"
    finally:
        await server.stop()


async def test_a_rule_x_refuses_is_fatal(tmp_path: Path) -> None:
    from aiohttp import web

    async def refuse(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"meta": {"result_count": 0}})
        return web.json_response({"errors": [{"title": "Invalid Rule"}]}, status=400)

    app = web.Application()
    app.router.add_route("*", "/2/tweets/search/stream/rules", refuse)
    app_runner = web.AppRunner(app)
    await app_runner.setup()
    await web.TCPSite(app_runner, "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{app_runner.addresses[0][1]}/2"
        source = XStreamSource(base, SecretStr(TOKEN), WATCH)
        runner, _ = fast_runner(source, MemorySink(), CursorStore(tmp_path / "c"))
        with pytest.raises(FatalSourceError, match="Invalid Rule"):
            await finishes(runner.run(asyncio.Event()), "a connector with a bad token")
    finally:
        await app_runner.cleanup()


def test_stream_errors_wait_at_least_what_x_asks() -> None:
    waits = []
    for status, headers in [(503, {}), (429, {}), (429, {"Retry-After": "7"})]:
        source = XStreamSource("http://127.0.0.1:1/2", SecretStr("t"), WATCH)
        with pytest.raises(RetryableError) as err:
            source._check_http(status, headers, "X filtered stream")
        waits.append(err.value.retry_after)
    assert waits == [5.0, 60.0, 7.0]


async def test_http_errors_on_rules_wait_5s_doubling_and_start_over_once_connected(
    tmp_path: Path,
) -> None:
    server = await XServer().start()
    try:
        server.rules_faults = [500, 503, 500]
        source = XStreamSource(server.base, SecretStr(TOKEN), WATCH)
        waits = []
        for _ in range(3):
            with pytest.raises(RetryableError, match="X rules") as err:
                await asyncio.wait_for(anext(aiter(source.stream(None))), CONNECTOR_PROGRESS)
            waits.append(err.value.retry_after)
        assert waits == [5.0, 10.0, 20.0]  # X's guidance: 5 s, doubling, after HTTP errors
        server.conns = [Conn(end="close"), Conn(status=503)]
        with pytest.raises(RetryableError, match="closed by the server"):
            async with asyncio.timeout(CONNECTOR_PROGRESS):
                async for _ in source.stream(None):  # connects, then is closed
                    pass
        with pytest.raises(RetryableError) as err:
            await asyncio.wait_for(anext(aiter(source.stream(None))), CONNECTOR_PROGRESS)
        assert err.value.retry_after == 5.0  # a successful connect started it over
    finally:
        await server.stop()
