"""Hacker News connector: item mapping, and the real client against a loopback HN API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from connectors.base import (
    ConnectorRunner,
    CursorStore,
    FatalSourceError,
    RetryableError,
    Skip,
    error_for_status,
)
from connectors.cli import build_source, run_connector
from connectors.hackernews import HackerNewsSource, Progress, html_to_text, post_from_item
from seismo.config import Settings, load_settings
from seismo.contracts import Post, decode
from seismo.metrics import Metrics
from tests.fakes.hackernews import T0, FakeHackerNews, hn_items
from tests.fakes.kit import (
    MemorySink,
    SlowSink,
    connect_to_kafka,
    make_runner,
    outcomes,
    read_posts,
    run_until,
)
from tests.helpers import finishes, wait_until_async
from tests.timeouts import BROKER_START, CONNECTOR_PROGRESS, PROCESS_STOPS

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_comment_html_becomes_plain_text() -> None:
    html = 'It&#x27;s <i>fine</i> &amp; <a href="https://x.org">x.org</a><p>second &gt; para'
    assert html_to_text(html) == "It's fine & x.org\n\nsecond > para"


def test_story_and_comment_map_to_posts() -> None:
    items = hn_items(1, 2)
    story = post_from_item(items[1], now=NOW)
    assert story is not None
    assert (story.id, story.text, story.url) == ("1", "Story 1", "https://example.com/1")
    assert story.created_at == datetime.fromtimestamp(T0 + 1, UTC)
    assert story.metadata["hn_url"] == "https://news.ycombinator.com/item?id=1"
    comment = post_from_item(items[2], now=NOW)
    assert comment is not None
    assert comment.reply_to == "1" and comment.author == "user2"
    assert comment.url == "https://news.ycombinator.com/item?id=2"
    assert comment.text == "Comment 2: it's fine\n\na > b"
    ask = post_from_item(
        {"id": 3, "type": "story", "time": T0, "title": "Ask HN", "text": "<p>?"}, now=NOW
    )
    assert ask is not None and ask.text == "Ask HN\n\n?"
    assert ask.url == "https://news.ycombinator.com/item?id=3"
    assert post_from_item({"id": 4, "type": "job", "time": T0, "title": "Hiring"}, now=NOW) is None
    with pytest.raises(ValueError):
        post_from_item({"id": "x", "type": "story"}, now=NOW)


def test_unmappable_items_are_skipped_not_retried() -> None:
    source = HackerNewsSource(load_settings())
    absurd = {"id": 1, "type": "story", "time": 10**20, "title": "from the far future"}
    item = source._item(1, absurd, Progress(0))
    assert isinstance(item, Skip) and item.cursor == {"id": 1}
    no_id = source._item(2, {"type": "comment", "text": "x"}, Progress(1))
    assert isinstance(no_id, Skip) and no_id.cursor == {"id": 2}


def test_http_errors_are_sorted_into_stop_and_retry() -> None:
    assert isinstance(error_for_status(401, "GET /x"), FatalSourceError)
    assert isinstance(error_for_status(404, "GET /x"), FatalSourceError)
    slow = error_for_status(429, "GET /x", "7")
    assert isinstance(slow, RetryableError) and slow.retry_after == 7.0
    dated = error_for_status(503, "GET /x", "Wed, 21 Oct 2015 07:28:00 GMT")  # long past
    assert isinstance(dated, RetryableError) and dated.retry_after == 0.0
    garbage = error_for_status(503, "GET /x", "soon")
    assert isinstance(garbage, RetryableError) and garbage.retry_after is None


def test_progress_holds_the_cursor_at_the_first_unhandled_id() -> None:
    p = Progress(10)
    assert p.handled(12) is None  # 11 not yet
    assert not p.absent(11)
    assert list(p.to_fetch(14)) == [11, 13, 14]
    assert p.handled(11) == {"id": 12}
    assert p.handled(13) == {"id": 13}
    assert p.handled(5) is None  # old id again: no move


# --- against the fake API -----------------------------------------------------------------


def settings_for(server: FakeHackerNews, tmp_path: Path, **kw: Any) -> Settings:
    return load_settings(
        hn_api_url=server.url,
        hn_poll_seconds=kw.pop("poll", 0.05),
        hn_concurrency=kw.pop("concurrency", 3),
        hn_timeout_seconds=5,
        data_dir=tmp_path,
        **kw,
    )


def runner_for(source: HackerNewsSource, sink: MemorySink, tmp_path: Path) -> ConnectorRunner:
    runner, _ = make_runner(source, sink, CursorStore(tmp_path / "hn.json"))
    return runner


def corpus() -> dict[int, Any]:
    items = hn_items(1, 30)
    items[5] = {"id": 5, "type": "comment", "deleted": True, "time": T0}
    items[7] = {"id": 7, "type": "comment", "dead": True, "time": T0, "text": "spam"}
    items[9] = {"id": 9, "type": "job", "time": T0, "title": "Hiring"}
    return items


def wanted(items: dict[int, Any]) -> list[str]:
    return [
        str(i)
        for i, it in sorted(items.items())
        if isinstance(it, dict)
        and it.get("type") in ("story", "comment")
        and not it.get("deleted")
        and not it.get("dead")
    ]


@dataclass
class Scenario:
    name: str
    faults: dict[str, list[int | str]] = field(default_factory=dict)
    garbage: int | None = None
    body: str | bytes = '{"id": 14, "type": "comm'  # the garbage item's body
    null_polls: dict[int, int] = field(default_factory=dict)
    sink_delay: float = 0.0
    skipped: int = 0
    min_reconnects: int = 0


SCENARIOS = [
    Scenario("normal"),
    Scenario("5xx on maxitem", {"/v0/maxitem.json": [503, 502]}, min_reconnects=2),
    Scenario("429 on an item", {"/v0/item/12.json": [429]}, min_reconnects=1),
    # aiohttp itself retries a GET once when a reused connection drops, so drop twice
    Scenario("disconnect mid-stream", {"/v0/item/20.json": ["drop", "drop"]}, min_reconnects=1),
    Scenario("garbage item", garbage=14, skipped=1),
    Scenario(
        "item not UTF-8",
        garbage=14,
        body=b'{"id": 14, "type": "comment", "time": 1767225614, "text": "caf\xe9"}',
        skipped=1,
    ),
    Scenario("item not yet replicated", null_polls={16: 2}),
    Scenario("slow consumer", sink_delay=0.01),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_scenarios(sc: Scenario, tmp_path: Path) -> None:
    items = corpus()
    want = wanted(items)
    if sc.garbage is not None:
        items[sc.garbage] = sc.body
        want.remove(str(sc.garbage))
    async with FakeHackerNews(items, delay=0.005) as server:
        server.faults = {k: list(v) for k, v in sc.faults.items()}
        server.null_polls = dict(sc.null_polls)
        CursorStore(tmp_path / "hn.json").save({"id": 0})
        source = HackerNewsSource(settings_for(server, tmp_path))
        sink = SlowSink(sc.sink_delay)
        runner = runner_for(source, sink, tmp_path)
        await run_until(
            runner,
            lambda: (
                len(sink.acked) >= len(want)
                and CursorStore(tmp_path / "hn.json").load() == {"id": 30}
            ),
        )
    ids = [p.id for p in sink.acked]
    assert sorted(ids, key=int) == want and len(set(ids)) == len(ids)  # none lost or doubled
    if not sc.null_polls:
        assert ids == want  # in id order (a late item comes when it comes)
    assert runner.stats.skipped == sc.skipped
    if sc.garbage is not None:  # dead-lettered with a reason that names the URL
        [(_, reason)] = sink.dead_letters
        assert f"/item/{sc.garbage}.json" in reason
        assert ("not UTF-8" in reason) == isinstance(sc.body, bytes)
    assert runner.stats.reconnects >= sc.min_reconnects
    assert outcomes(runner.metrics, "hackernews", "deleted", "dead", "ignored") == [1, 1, 1]
    assert server.max_in_flight <= 3
    assert CursorStore(tmp_path / "hn.json").load() == {"id": 30}


async def test_restart_resumes_after_the_cursor(tmp_path: Path) -> None:
    async with FakeHackerNews(hn_items(1, 10)) as server:
        settings = settings_for(server, tmp_path)
        CursorStore(tmp_path / "hn.json").save({"id": 0})
        first_sink = MemorySink()
        first = runner_for(HackerNewsSource(settings), first_sink, tmp_path)
        await run_until(first, lambda: len(first_sink.acked) == 10)
        server.items.update(hn_items(11, 10))
        server.updates = [3, 15]  # an edit of an old item, and a new one
        before = len(server.item_requests)
        second_sink = MemorySink()
        second = runner_for(HackerNewsSource(settings), second_sink, tmp_path)
        await run_until(second, lambda: len(second_sink.acked) >= 10)
    ids = [p.id for p in first_sink.acked + second_sink.acked]
    assert ids == [str(i) for i in range(1, 21)]
    assert min(server.item_requests[before:]) == 11


async def test_item_given_up_after_polls_is_counted_and_cursor_moves(tmp_path: Path) -> None:
    async with FakeHackerNews(hn_items(1, 4)) as server:
        server.null_polls = {2: 100}
        CursorStore(tmp_path / "hn.json").save({"id": 0})
        source = HackerNewsSource(settings_for(server, tmp_path))
        sink = MemorySink()
        runner = runner_for(source, sink, tmp_path)
        await run_until(runner, lambda: CursorStore(tmp_path / "hn.json").load() == {"id": 4})
    assert [p.id for p in sink.acked] == ["1", "3", "4"]
    assert outcomes(runner.metrics, "hackernews", "missing") == [1]


async def test_first_start_begins_at_maxitem(tmp_path: Path) -> None:
    async with FakeHackerNews(hn_items(1, 5)) as server:
        sink = MemorySink()
        runner = runner_for(HackerNewsSource(settings_for(server, tmp_path)), sink, tmp_path)

        def grown() -> bool:
            if 6 not in server.items and len(server.requests) >= 2:
                server.items.update(hn_items(6, 2))
            return len(sink.acked) >= 2

        await run_until(runner, grown)
    assert [p.id for p in sink.acked] == ["6", "7"]
    assert min(server.item_requests) == 6


async def test_forbidden_stops_the_connector(tmp_path: Path) -> None:
    async with FakeHackerNews(hn_items(1, 2)) as server:
        server.faults = {"/v0/maxitem.json": [403]}
        runner = runner_for(
            HackerNewsSource(settings_for(server, tmp_path)), MemorySink(), tmp_path
        )
        with pytest.raises(Exception, match="403"):
            await finishes(runner.run(asyncio.Event()), "a refused connector")


@pytest.mark.broker
async def test_hackernews_to_kafka(kafka: str, namespace: str, tmp_path: Path) -> None:
    async with FakeHackerNews(hn_items(1, 6)) as server:
        settings = settings_for(server, tmp_path, kafka_bootstrap=kafka, namespace=namespace)
        source = build_source("hackernews", settings)
        CursorStore.for_source(settings, "hackernews").save({"id": 0})
        got = await connect_to_kafka(source, settings, 6)
    posts = [decode(Post, r.value) for r in got]
    assert [p.id for p in posts] == [str(i) for i in range(1, 7)]
    assert [r.key for r in got][:2] == [b"hackernews:1", b"hackernews:2"]
    assert posts[1].reply_to == "1"
    assert CursorStore.for_source(settings, "hackernews").load() == {"id": 6}


@pytest.mark.broker
@pytest.mark.slow
async def test_seismo_connect_command(kafka: str, namespace: str, tmp_path: Path) -> None:
    """The real command: settings from the environment, SIGTERM stops it cleanly."""
    async with FakeHackerNews(hn_items(1, 4)) as server:
        settings = settings_for(server, tmp_path, kafka_bootstrap=kafka, namespace=namespace)
        CursorStore.for_source(settings, "hackernews").save({"id": 0})
        env = {
            **os.environ,
            "SEISMO_KAFKA_BOOTSTRAP": kafka,
            "SEISMO_NAMESPACE": namespace,
            "SEISMO_DATA_DIR": str(tmp_path),
            "SEISMO_HN_API_URL": server.url,
            "SEISMO_HN_POLL_SECONDS": "0.2",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "seismo.cli",
            "connect",
            "hackernews",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert len(await read_posts(settings, 4)) == 4
            proc.send_signal(signal.SIGTERM)
            out, err = await finishes(
                proc.communicate(), "seismo connect after SIGTERM", PROCESS_STOPS
            )
        finally:
            if proc.returncode is None:
                proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    stats = json.loads(out.decode().strip().splitlines()[-1])
    assert stats["source"] == "hackernews" and stats["produced"] == 4
    assert CursorStore.for_source(settings, "hackernews").load() == {"id": 4}  # saved at the stop


@pytest.mark.broker
@pytest.mark.slow
async def test_kafka_going_away_mid_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A dedicated broker is killed while the connector runs: flushes that get no answer are
    retried (not a hang), a stop request is obeyed within seconds, and the saved cursor
    never passes what Kafka acknowledged."""
    from seismo.broker import EmbeddedKafka

    broker = EmbeddedKafka(tmp_path / "kafka", port=0)
    await asyncio.to_thread(broker.start, BROKER_START)
    stop = asyncio.Event()
    task: asyncio.Task[Any] | None = None
    try:
        async with FakeHackerNews(hn_items(1, 4)) as server:
            settings = settings_for(
                server,
                tmp_path,
                poll=0.2,
                kafka_bootstrap=broker.bootstrap,
                connectors={
                    "checkpoint_seconds": 0.1,
                    "flush_timeout_seconds": 2,
                    "stop_seconds": 1,
                },
            )
            cursors = CursorStore.for_source(settings, "hackernews")
            cursors.save({"id": 0})
            metrics = Metrics(CollectorRegistry())
            task = asyncio.create_task(
                run_connector(build_source("hackernews", settings), settings, metrics, stop)
            )
            assert len(await read_posts(settings, 4)) == 4  # acknowledged
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGKILL)  # Kafka goes away, without a goodbye
            server.items.update(hn_items(5, 4))
            await wait_until_async(  # reported as an error, retried
                lambda: "did not acknowledge" in caplog.text,
                "the unacknowledged flush reported",
                CONNECTOR_PROGRESS,
                interval=0.05,
            )
            assert 8 in server.item_requests
            stop.set()  # Kafka never comes back: the stop can't wait for it
            await finishes(task, "a connector whose Kafka is gone")
            saved = cursors.load()
            assert saved is not None and saved["id"] <= 4  # 5..8 were never acknowledged
    finally:
        stop.set()
        if task is not None and not task.done():
            task.cancel()
        await asyncio.to_thread(broker.stop, 10)
