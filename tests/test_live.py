"""The live alert board and its web app, in process (no broker)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from seismo.contracts import Alert
from seismo.metrics import Metrics
from streams.live import AlertBoard, Filter, make_app
from tests.helpers import make_alert, wait_until_async
from tests.timeouts import RECORD_ARRIVES


def add(board: AlertBoard, alert: Alert) -> dict[str, Any] | None:
    return board.add(alert, alert.model_dump(mode="json"))


def test_board_keeps_the_newest_version_and_the_most_recent_alerts() -> None:
    board = AlertBoard(capacity=2)
    assert add(board, make_alert(1)) is not None
    assert add(board, make_alert(2, "update")) is not None
    assert add(board, make_alert(1)) is None  # an older version is no news
    assert board.alerts["abc123"]["status"] == "update"
    add(board, make_alert(1, id="b", dossier="ai-chips", severity="low"))
    add(board, make_alert(1, id="c", dossier=None, severity="critical"))
    assert list(board.alerts) == ["b", "c"]  # capacity 2: the oldest change went
    assert [e["id"] for e in board.snapshot(Filter())] == ["c", "b"]
    assert [e["id"] for e in board.snapshot(Filter(frozenset({"ai-chips"})))] == ["b"]
    assert [e["id"] for e in board.snapshot(Filter(min_severity="medium"))] == ["c"]
    assert board.dossiers() == ["ai-chips"]
    entry = board.alerts["b"]
    assert len(entry["evidence"]) == 2 and "6 posts" in entry["why"]


def test_listeners_get_matching_news_only() -> None:
    board = AlertBoard()
    with board.listen(Filter(min_severity="high")) as queue:
        add(board, make_alert(1, severity="low"))
        add(board, make_alert(1, id="hot", severity="critical"))
        assert queue.qsize() == 1 and queue.get_nowait()["id"] == "hot"
    assert not board.listeners


def test_app_needs_the_token_and_streams_a_snapshot_then_news() -> None:
    async def go() -> None:
        board = AlertBoard()
        add(board, make_alert(1, id="old", severity="medium"))
        client = TestClient(TestServer(make_app(board, "tok", ["china-ai-rising"])))
        await client.start_server()
        try:
            assert (await client.get("/")).status == 401
            assert (await client.get("/api/alerts?token=nope")).status == 401
            assert (await client.get("/healthz")).status == 200
            page = await client.get("/?token=tok")
            assert page.status == 200 and "live alerts" in await page.text()
            assert page.cookies["seismo_live"].value == "tok"
            # the cookie now opens the API; filters apply
            got = await (await client.get("/api/alerts?severity=high")).json()
            assert got["alerts"] == [] and got["dossiers"] == ["china-ai-rising"]
            bearer = {"Authorization": "Bearer tok"}
            got = await (await client.get("/api/alerts", headers=bearer)).json()
            assert [a["id"] for a in got["alerts"]] == ["old"]
            # the scheme is case-insensitive (RFC 7235); the token is not
            client.session.cookie_jar.clear()
            for header, status in [("bearer tok", 200), ("BEARER  tok", 200), ("Bearer TOK", 401)]:
                got_status = (
                    await client.get("/api/alerts", headers={"Authorization": header})
                ).status
                assert got_status == status, header
            assert (await client.get("/api/alerts?severity=bad", headers=bearer)).status == 400

            resp = await client.get("/events?dossier=china-ai-rising", headers=bearer)
            assert resp.headers["Content-Type"] == "text/event-stream"
            events = sse_events(resp)
            name, data = await anext(events)
            assert name == "snapshot" and [a["id"] for a in data["alerts"]] == ["old"]
            add(board, make_alert(1, id="elsewhere", dossier="ai-chips"))
            add(board, make_alert(2, "update", id="old"))
            name, data = await asyncio.wait_for(anext(events), RECORD_ARRIVES)
            assert name == "alert" and (data["id"], data["version"]) == ("old", 2)
            resp.close()
        finally:
            await client.close()

    asyncio.run(go())


def test_live_clients_follow_sse_connections_and_metrics_are_public() -> None:
    metrics = Metrics(CollectorRegistry(), process="live")

    def clients() -> float | None:
        return metrics.registry.get_sample_value("seismo_live_clients")

    async def go() -> None:
        board = AlertBoard()
        client = TestClient(TestServer(make_app(board, "tok", metrics=metrics)))
        await client.start_server()
        try:
            assert clients() == 0
            first = await client.get("/events?token=tok")
            second = await client.get("/events?token=tok")
            await anext(sse_events(first))  # both handlers are past their snapshot
            await anext(sse_events(second))
            assert clients() == 2
            scrape = await client.get("/metrics")  # no token: like /healthz
            assert scrape.status == 200 and "seismo_live_clients 2.0" in await scrape.text()
            first.close()
            # the server notices a gone browser when it next writes (news or a keep-alive)
            versions = iter(range(1, 10**6))

            def news_then_one_client() -> bool:
                add(board, make_alert(next(versions)))
                return clients() == 1

            await wait_until_async(
                news_then_one_client, "the closed stream noticed", RECORD_ARRIVES, interval=0.05
            )
            second.close()
        finally:
            await client.close()
        assert clients() == 0  # a server shutdown closes the rest

    asyncio.run(go())


def test_a_browser_going_away_ends_its_stream_without_an_error_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics(CollectorRegistry(), process="live")

    async def go() -> None:
        app = make_app(AlertBoard(), "tok", metrics=metrics, keepalive_seconds=0.05)
        # a runner as `seismo alerts serve` makes it (TestServer cancels a handler whose
        # client is gone, the real server lets it run into its next write)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                resp = await session.get(f"http://127.0.0.1:{port}/events?token=tok")
                await anext(sse_events(resp))
                resp.close()  # the tab closes; the next keep-alive write finds it gone
            await wait_until_async(
                lambda: metrics.registry.get_sample_value("seismo_live_clients") == 0,
                "the stream's handler to end",
                RECORD_ARRIVES,
                interval=0.05,
            )
        finally:
            await runner.cleanup()  # waits for the handlers: a traceback is logged by now

    with caplog.at_level(logging.DEBUG):
        asyncio.run(go())
    assert metrics.registry.get_sample_value("seismo_live_clients") == 0
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not errors, [r.getMessage() for r in errors]
    assert any("went away" in r.getMessage() for r in caplog.records)


def test_the_live_page_exports_only_its_own_series() -> None:
    async def go() -> str:
        client = TestClient(TestServer(make_app(AlertBoard(), "tok")))
        await client.start_server()
        try:
            return await (await client.get("/metrics")).text()
        finally:
            await client.close()

    body = asyncio.run(go())
    assert "seismo_live_clients 0.0" in body
    assert "seismo_detector_keys" not in body  # a worker's series: no misleading 0 here


async def sse_events(resp: Any) -> Any:
    name = ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])
