"""RSS/Atom connector against a local feed server (ETag / Last-Modified, failures)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from connectors.base import ConnectorRunner, CursorStore, FatalSourceError
from connectors.rss import RssSource, entry_id, to_post
from connectors.webutil import strip_html
from seismo.config import load_settings
from seismo.contracts import POSTS_RAW, Post, decode
from seismo.metrics import Metrics
from tests.fakes.feeds import T0, Feed, FeedServer
from tests.fakes.kit import MemorySink, fast_runner, read_posts, run_until, value
from tests.helpers import REPO, finishes, read_to_end, wait_until_async
from tests.timeouts import CONNECTOR_PROGRESS, PROCESS_STOPS

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def make(urls: list[str], store: CursorStore, sink: MemorySink) -> tuple[ConnectorRunner, Metrics]:
    source = RssSource(urls, poll_seconds=0.05, timeout=1.0, now=lambda: NOW)
    return fast_runner(source, sink, store)


def test_to_post_maps_an_entry() -> None:
    feed = Feed()
    feed.add(1, start=7)
    parsed = feedparser.parse(feed.render())
    p = to_post(parsed.entries[0], "http://f/x", parsed.feed.get("language"), NOW)
    assert p.id == "urn:item:7" and p.source == "rss"
    assert p.text == "Headline 7 & more\n\nBody 7 of the story."
    assert p.created_at == T0.replace(minute=7)
    assert p.url == "https://news.example/7" and p.author == "Reporter"
    assert p.lang == "en-us" and p.metadata == {"feed": "http://f/x"}


def test_entry_without_guid_gets_a_stable_hash_of_its_link() -> None:
    feed = Feed()
    feed.add(2, guid=False)
    entries = feedparser.parse(feed.render()).entries
    ids = [entry_id(e, "http://f/a") for e in entries]
    assert ids == [entry_id(e, "http://f/a") for e in feedparser.parse(feed.render()).entries]
    assert len(set(ids)) == 2 and all(i.startswith("sha256:") for i in ids)


def test_a_guid_that_is_not_a_uri_is_scoped_to_its_feed() -> None:
    entry = {"id": "1234", "title": "t"}
    assert entry_id(entry, "https://a.example/feed") == "a.example/feed#1234"
    assert entry_id(entry, "https://b.example/rss") == "b.example/rss#1234"
    assert entry_id({"id": "urn:x:1"}, "https://a.example/feed") == "urn:x:1"


def test_strip_html() -> None:
    assert strip_html("<p>a &amp; <i>b</i>\n  c</p><script>") == "a & b c"


@dataclass
class Scenario:
    name: str
    setup: Callable[[Feed], None]
    want: int  # posts acked
    check: Callable[[Feed, MemorySink, ConnectorRunner, Metrics], None]


def _no_repeat(feed: Feed, sink: MemorySink, r: ConnectorRunner, m: Metrics) -> None:
    assert feed.not_modified >= 1  # later polls were answered 304
    assert any("If-None-Match" in h for h in feed.requests)
    assert any("If-Modified-Since" in h for h in feed.requests)


def _recovered(feed: Feed, sink: MemorySink, r: ConnectorRunner, m: Metrics) -> None:
    assert r.stats.reconnects >= 1
    assert value(m, "seismo_connector_reconnects_total", source="rss") >= 1


def _skipped(feed: Feed, sink: MemorySink, r: ConnectorRunner, m: Metrics) -> None:
    assert r.stats.skipped == 1 and sink.dead_letters[0][0] == "rss"
    assert value(m, "seismo_connector_events_total", source="rss", outcome="skipped") == 1


def _atom(feed: Feed) -> None:
    feed.kind = "atom"
    feed.add(3)


def _garbage_then_ok(feed: Feed) -> None:
    feed.failures = [b"\x00\x01 this is not xml <<<"]
    feed.add(3)


def _bad_entry(feed: Feed) -> None:
    feed.add(3)
    feed.entries[1].title = feed.entries[1].summary = ""


def _throttled(feed: Feed) -> None:
    feed.failures, feed.retry_after = [429], "0"
    feed.add(3)


def _server_errors(feed: Feed) -> None:
    feed.failures = [500, 503]
    feed.add(3)


SCENARIOS = [
    Scenario("normal-rss", lambda f: f.add(4), 4, _no_repeat),
    Scenario("normal-atom", _atom, 3, _no_repeat),
    Scenario("garbage-body", _garbage_then_ok, 3, _skipped),
    Scenario("entry-without-text", _bad_entry, 2, _skipped),
    Scenario("429-retry-after", _throttled, 3, _recovered),
    Scenario("5xx", _server_errors, 3, _recovered),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_scenarios(sc: Scenario, tmp_path: Path) -> None:
    server = await FeedServer().start()
    try:
        feed = server.feeds["a"] = Feed()
        sc.setup(feed)
        sink = MemorySink()
        runner, metrics = make([server.url("a")], CursorStore(tmp_path / "c.json"), sink)

        def done() -> bool:
            return len(sink.acked) >= sc.want and len(feed.requests) >= 3 + len(feed.failures)

        await run_until(runner, done)  # then a clean stop
        assert len(sink.acked) == sc.want  # nothing repeated by later polls
        assert len({p.id for p in sink.acked}) == sc.want
        times = [p.created_at for p in sink.acked]
        assert times == sorted(times)
        sc.check(feed, sink, runner, metrics)
    finally:
        await server.stop()


async def test_new_entries_appear_and_restart_resumes_without_gap_or_repeat(
    tmp_path: Path,
) -> None:
    server = await FeedServer().start()
    try:
        feed = server.feeds["a"] = Feed()
        feed.add(3)
        store = CursorStore(tmp_path / "c.json")
        sink = MemorySink()
        first, _ = make([server.url("a")], store, sink)
        await run_until(first, lambda: len(sink.acked) == 3)
        feed.add(2, start=3)  # published while we were down
        second, _ = make([server.url("a")], store, sink)
        requests_before = len(feed.requests)
        await run_until(second, lambda: len(sink.acked) >= 5)
        assert [p.id for p in sink.acked] == [f"urn:item:{i}" for i in range(5)]
        # the restarted poller sent the stored validators right away
        assert "If-Modified-Since" in feed.requests[requests_before]
    finally:
        await server.stop()


async def test_one_failing_feed_does_not_hold_up_the_others(tmp_path: Path) -> None:
    server = await FeedServer().start()
    try:
        good = server.feeds["good"] = Feed()
        good.add(2)
        bad = server.feeds["bad"] = Feed()
        bad.failures = [503] * 1000
        sink = MemorySink()
        runner, _ = make([server.url("bad"), server.url("good")], CursorStore(tmp_path / "c"), sink)
        await run_until(runner, lambda: len(sink.acked) == 2)
        assert [p.metadata["feed"] for p in sink.acked] == [server.url("good")] * 2
    finally:
        await server.stop()


async def test_missing_feed_is_fatal_when_nothing_is_left(tmp_path: Path) -> None:
    server = await FeedServer().start()
    try:
        runner, _ = make([server.url("nope")], CursorStore(tmp_path / "c"), MemorySink())
        with pytest.raises(FatalSourceError, match="no configured feed"):
            await finishes(runner.run(asyncio.Event()), "a connector with nothing left")
    finally:
        await server.stop()


async def test_stalled_server_times_out_and_stop_is_prompt(tmp_path: Path) -> None:
    from aiohttp import web

    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/feed", hang)
    app_runner = web.AppRunner(app)
    await app_runner.setup()
    await web.TCPSite(app_runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{app_runner.addresses[0][1]}/feed"
    try:
        runner, _ = make([url], CursorStore(tmp_path / "c"), MemorySink())
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await wait_until_async(  # the 1 s timeout fired and counted a retry
            lambda: runner.stats.reconnects >= 1, "a retry after the timeout", CONNECTOR_PROGRESS
        )
        stop.set()  # the server never answers (until the cleanup): the stop can't wait for it
        await finishes(task, "a runner polling a hung feed")
    finally:
        release.set()
        await app_runner.cleanup()


@pytest.mark.broker
async def test_seismo_connect_rss_into_kafka_and_resume(
    kafka: str, namespace: str, worker_env: dict[str, str]
) -> None:
    server = await FeedServer().start()
    try:
        feed = server.feeds["a"] = Feed()
        feed.add(3)
        env = {
            **os.environ,
            **worker_env,
            "SEISMO_RSS_FEEDS": json.dumps([server.url("a")]),
            "SEISMO_RSS_POLL_SECONDS": "0.2",
        }
        settings = load_settings(kafka_bootstrap=kafka, namespace=namespace)

        async def connect_once(wait_for: int) -> dict[str, int]:
            proc = subprocess.Popen(
                [sys.executable, "-m", "seismo.cli", "connect", "rss"],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                await read_posts(settings, wait_for)
                polls = len(feed.requests)
                await wait_until_async(  # a couple more polls: nothing may repeat
                    lambda: len(feed.requests) >= polls + 2 or proc.poll() is not None,
                    "two more polls of the feed",
                    CONNECTOR_PROGRESS,
                    interval=0.1,
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                out, err = await asyncio.to_thread(proc.communicate, timeout=PROCESS_STOPS)
            assert proc.returncode == 0, err[-2000:]
            summary: dict[str, int] = json.loads(out.strip().splitlines()[-1])
            return summary

        first = await connect_once(3)
        assert first["produced"] == 3
        feed.add(1, start=3)
        second = await connect_once(4)  # resumes from the saved cursor
        assert second["produced"] == 1
        # both runs have ended: everything they wrote is in the topic, and nothing twice
        got = sorted(await read_to_end(kafka, settings.topic(POSTS_RAW)), key=lambda r: r.timestamp)
        assert [r.key for r in got] == [f"rss:urn:item:{i}".encode() for i in range(4)]
        assert decode(Post, got[0].value).created_at == T0
    finally:
        await server.stop()


def test_retry_after_reads_seconds_dates_and_x_reset() -> None:
    from connectors.webutil import retry_after

    assert retry_after({"Retry-After": "7"}, now=0) == 7.0
    assert retry_after({"Retry-After": "Thu, 01 Jan 1970 00:01:40 GMT"}, now=40) == 60.0
    assert retry_after({"x-rate-limit-reset": "1000"}, now=990) == 10.0
    assert retry_after({"Retry-After": "soon"}, now=0) is None
    assert retry_after({}, now=0) is None


async def test_a_failed_poll_logs_one_line_with_the_true_next_try(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await FeedServer().start()
    try:
        feed = server.feeds["f"] = Feed()
        feed.add(1)
        feed.failures = [500]
        source = RssSource([server.url("f")], poll_seconds=0.4, timeout=1.0, now=lambda: NOW)
        sink = MemorySink()
        runner, _ = fast_runner(source, sink, CursorStore(tmp_path / "c"))
        caplog.set_level(logging.WARNING)
        await run_until(runner, lambda: len(sink.acked) == 1)
        lines = [r.getMessage() for r in caplog.records if "HTTP 500" in r.getMessage()]
        assert len(lines) == 1, lines
        waited = float(re.search(r"reconnecting in ([\d.]+)s", lines[0])[1])  # type: ignore[index]
        assert waited >= 0.35  # not the runner's 50 ms: the feed is polled again after 0.4 s
        assert len(feed.requests) == 2
    finally:
        await server.stop()
