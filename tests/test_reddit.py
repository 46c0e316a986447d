"""Reddit connector (praw in a worker thread) against a local OAuth + listing server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import prawcore
import pytest
from pydantic import SecretStr

from connectors.base import ConnectorRunner, CursorStore, FatalSourceError
from connectors.reddit import RedditSource, to_post
from seismo.config import load_settings
from seismo.metrics import Metrics
from tests.fakes.kit import (
    MemorySink,
    SlowSink,
    connector_running,
    fast_runner,
    read_posts,
    run_until,
    value,
)
from tests.fakes.reddit import (
    CLIENT_ID,
    PASSWORD,
    SECRET,
    T0,
    USER,
    Failure,
    RedditServer,
    comment,
    submission,
)
from tests.helpers import finishes, wait_until_async
from tests.timeouts import CONNECTOR_PROGRESS

NOW = datetime.fromtimestamp(T0, UTC)


def source(
    server: RedditServer, secret: str = SECRET, password: str = PASSWORD, queue_size: int = 500
) -> RedditSource:
    return RedditSource(
        client_id=CLIENT_ID,
        client_secret=SecretStr(secret),
        username=USER,
        password=SecretStr(password),
        user_agent="seismo-tests/0.1 (loopback)",
        subreddits=["LocalLLaMA", "MachineLearning"],
        oauth_url=server.base,
        www_url=server.base,
        poll_seconds=0.05,
        timeout=5,
        queue_size=queue_size,
        now=lambda: NOW,
    )


def make(
    server: RedditServer, store: CursorStore, sink: MemorySink, **kw: Any
) -> tuple[ConnectorRunner, Metrics]:
    return fast_runner(source(server, **kw), sink, store)


def sid(i: int) -> str:
    return str(submission(i)["name"])


def cid(i: int) -> str:
    return str(comment(i)["name"])


def test_to_post_maps_submissions_and_comments() -> None:
    s = to_post("submissions", submission(3), NOW)
    assert s.id == sid(3) and s.source == "reddit" and s.author == "poster"
    assert s.text == "DeepSeek story 3\n\nDetails 3"
    assert s.url == "https://www.reddit.com" + str(submission(3)["permalink"])
    assert s.created_at.timestamp() == submission(3)["created_utc"]
    assert s.metadata == {"subreddit": "LocalLLaMA", "kind": "submission"}
    c = to_post("comments", comment(4, author="[deleted]"), NOW)
    assert c.id == cid(4) and c.reply_to == sid(0) and c.author is None
    assert c.metadata["submission"] == sid(0) and c.metadata["kind"] == "comment"
    link = to_post("submissions", submission(5, is_self=False, url="https://x.org/a"), NOW)
    assert link.metadata["link"] == "https://x.org/a"


def polled(server: RedditServer) -> list[int]:
    """How often each listing has been read so far."""
    return [len(li.requests) for li in server.listings.values()]


async def wait_polled(server: RedditServer, times: int = 1) -> None:
    """Until both listings were read ``times`` times (the stream has started)."""
    await wait_until_async(
        lambda: min(polled(server)) >= times,
        lambda: f"both listings polled {times} times (polls: {polled(server)})",
        CONNECTOR_PROGRESS,
        interval=0.02,
    )


@dataclass
class Scenario:
    name: str
    new: list[int]  # submissions posted after the start (comments with the same numbers)
    failures: list[Failure] = field(default_factory=list)  # on the submissions listing
    garbage: list[dict[str, object]] = field(default_factory=list)  # bad comments
    reconnects: int = 0
    sink: Callable[[], MemorySink] = MemorySink
    queue_size: int = 500  # between the praw thread and the loop
    logged: str = ""  # said in the log


SCENARIOS = [
    Scenario("normal", [2, 3, 4]),
    Scenario("drop-mid-poll", [2, 3], failures=[Failure(0)]),  # prawcore retries the request
    Scenario(
        "garbage-items",
        [2, 3],
        garbage=[comment(10, created_utc="yesterday"), comment(11, body=None)],
    ),
    Scenario("429", [2, 3], failures=[Failure(429, {"Retry-After": "0"})], reconnects=1),
    Scenario("5xx-retried-by-prawcore", [2], failures=[Failure(503)]),
    Scenario(
        "bad-json",
        [2],
        failures=[Failure(200, body="<html>oops")],
        reconnects=1,
        logged="/r/LocalLLaMA+MachineLearning/new answered with no JSON (HTTP 200)",
    ),
    Scenario("slow-consumer", list(range(2, 50)), sink=lambda: SlowSink(0.005), queue_size=2),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_scenarios(sc: Scenario, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = await RedditServer().start()
    try:
        subs, coms = server.listings["new"], server.listings["comments"]
        subs.items = [submission(i) for i in range(2)]  # existed before we started
        coms.items = [comment(i) for i in range(2)]
        sink = sc.sink()
        runner, metrics = make(
            server, CursorStore(tmp_path / "c.json"), sink, queue_size=sc.queue_size
        )
        want = 2 * len(sc.new)

        async def drive() -> None:
            await wait_polled(server)
            subs.failures = list(sc.failures)
            subs.items += [submission(i) for i in sc.new]
            coms.items += [*(comment(i) for i in sc.new), *sc.garbage]  # type: ignore[misc]

        driver = asyncio.create_task(drive())
        # then stopped: the praw thread never holds up shutdown
        await run_until(
            runner, lambda: len(sink.acked) >= want and runner.stats.skipped >= len(sc.garbage)
        )
        await driver
        got = [p.id for p in sink.acked]
        assert sorted(got) == sorted([sid(i) for i in sc.new] + [cid(i) for i in sc.new])
        assert [p for p in got if p.startswith("t3_")] == [sid(i) for i in sc.new]  # in order
        assert runner.stats.skipped == len(sc.garbage) == len(sink.dead_letters)
        assert runner.stats.reconnects >= sc.reconnects
        assert (
            value(metrics, "seismo_connector_events_total", source="reddit", outcome="produced")
            == want
        )
        assert sc.logged in caplog.text
        # signed in with the script-app password grant
        assert server.token_requests[0]["grant_type"] == "password"
    finally:
        await server.stop()


async def test_a_sign_in_answer_that_is_not_json_names_the_endpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await RedditServer().start()
    try:
        server.token_bodies = ["<html>down for maintenance</html>"]
        runner, _ = make(server, CursorStore(tmp_path / "c.json"), MemorySink())
        await run_until(runner, lambda: runner.stats.reconnects >= 1)
        assert runner.stats.reconnects >= 1
        assert "not JSON" in caplog.text and "/api/v1/access_token" in caplog.text
    finally:
        await server.stop()


async def test_rate_limit_headers_are_respected(tmp_path: Path) -> None:
    server = await RedditServer(ratelimit_remaining=1, reset=1).start()
    try:
        sink = MemorySink()
        runner, _ = make(server, CursorStore(tmp_path / "c.json"), sink)
        await run_until(runner, lambda: len(server.listings["comments"].requests) >= 2)
        times = sorted(t for li in server.listings.values() for t, _ in li.requests)
        # remaining hit 0 with reset=1s: prawcore waits before every further request
        assert len(times) >= 3
        assert min(b - a for a, b in itertools.pairwise(times[1:])) >= 0.9
    finally:
        await server.stop()


async def test_restart_resumes_without_gap_or_repeat(tmp_path: Path) -> None:
    server = await RedditServer().start()
    try:
        subs, coms = server.listings["new"], server.listings["comments"]
        store = CursorStore(tmp_path / "c.json")
        sink = MemorySink()
        first, _ = make(server, store, sink)

        async def publish() -> None:
            await wait_polled(server)
            subs.items += [submission(i) for i in range(3)]
            coms.items += [comment(i) for i in range(3)]

        pub = asyncio.create_task(publish())
        await run_until(first, lambda: len(sink.acked) == 6)
        await pub
        # while we are down: new posts, one at the very same second as the last one seen
        subs.items += [submission(2, id="zz1", name="t3_zz1"), submission(3)]
        coms.items += [comment(3)]
        second, _ = make(server, store, sink)
        after: list[int] = []

        def all_in_then_polled_again() -> bool:
            """All 9 in, then both listings polled 3 more times: nothing may repeat."""
            if len(sink.acked) >= 9 and not after:
                after.extend(polled(server))
            return (
                bool(after) and min(n - a for n, a in zip(polled(server), after, strict=True)) >= 3
            )

        await run_until(second, all_in_then_polled_again)
        ids = [p.id for p in sink.acked]
        assert len(ids) == len(set(ids)) == 9, " ".join(ids)
        assert {"t3_zz1", sid(3), cid(3)} <= set(ids)
        assert second.stats.gaps == 0 and second.stats.duplicates == 0
    finally:
        await server.stop()


async def test_more_than_a_page_while_down_is_reported_as_a_gap(tmp_path: Path) -> None:
    server = await RedditServer().start()
    try:
        subs = server.listings["new"]
        store = CursorStore(tmp_path / "c.json")
        sink = MemorySink()
        first, _ = make(server, store, sink)

        async def publish() -> None:
            await wait_polled(server)
            subs.items.append(submission(0))

        pub = asyncio.create_task(publish())
        await run_until(first, lambda: len(sink.acked) == 1)
        await pub
        subs.items += [submission(i) for i in range(1, 151)]
        second, metrics = make(server, store, sink)
        await run_until(second, lambda: second.stats.gaps >= 1)
        assert value(metrics, "seismo_connector_gaps_total", source="reddit") == 1
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"secret": "wrong"}, "HTTP 401"),
        ({"password": "wrong-pass"}, "invalid_grant"),
    ],
    ids=["bad-client-secret", "bad-password"],
)
async def test_bad_credentials_are_fatal(tmp_path: Path, kw: dict[str, str], message: str) -> None:
    server = await RedditServer().start()
    try:
        runner, _ = make(server, CursorStore(tmp_path / "c"), MemorySink(), **kw)
        with pytest.raises(FatalSourceError, match=message) as err:
            await finishes(runner.run(asyncio.Event()), "a connector with bad credentials")
        assert "wrong" not in str(err.value)
    finally:
        await server.stop()


def test_missing_credentials_are_named() -> None:
    with pytest.raises(FatalSourceError, match="reddit_client_secret, reddit_password"):
        RedditSource(
            client_id="x",
            client_secret=None,
            username="u",
            password=None,
            user_agent="ua",
            subreddits=["a"],
        )


async def test_stop_is_prompt_while_the_thread_waits_on_the_rate_limit(tmp_path: Path) -> None:
    # an hour's reset: the stop can't wait for it (the praw thread is a daemon)
    server = await RedditServer(ratelimit_remaining=1, reset=3600).start()
    try:
        runner, _ = make(server, CursorStore(tmp_path / "c"), MemorySink())
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        # remaining hit 0 on the first request: the next one sleeps in prawcore
        await wait_until_async(
            lambda: sum(polled(server)) >= 1, "a first listing request", CONNECTOR_PROGRESS
        )
        stop.set()
        await finishes(task, "a runner whose praw thread waits on the rate limit")
    finally:
        await server.stop()


@pytest.mark.broker
async def test_reddit_into_kafka(kafka: str, namespace: str, tmp_path: Path) -> None:
    server = await RedditServer().start()
    try:
        settings = load_settings(kafka_bootstrap=kafka, namespace=namespace, data_dir=tmp_path)
        async with connector_running(source(server), settings):
            await wait_polled(server)
            server.listings["new"].items.append(submission(1))
            server.listings["comments"].items.append(comment(1))
            got = await read_posts(settings, 2)
        assert sorted(k for k, _ in got) == sorted(
            [f"reddit:{cid(1)}".encode(), f"reddit:{sid(1)}".encode()]
        )
        post = dict(got)[f"reddit:{cid(1)}".encode()]
        assert post.reply_to == sid(0) and post.created_at.timestamp() == T0 + 1
    finally:
        await server.stop()


async def test_unknown_subreddit_is_fatal(tmp_path: Path) -> None:
    server = await RedditServer().start()
    try:
        server.listings["new"].failures = [Failure(404, body='{"reason": "banned"}')]
        runner, _ = make(server, CursorStore(tmp_path / "c"), MemorySink())
        with pytest.raises(FatalSourceError, match="subreddit not found"):
            await finishes(runner.run(asyncio.Event()), "a connector with bad credentials")
    finally:
        await server.stop()


def test_a_429_without_retry_after_waits_for_the_rate_limit_reset() -> None:
    import requests

    from connectors.base import RetryableError
    from connectors.reddit import fatal_or_retry

    def too_many(**headers: str) -> RetryableError:
        response = requests.Response()
        response.status_code = 429
        response.headers.update(headers)
        response._content = b"{}"
        err = fatal_or_retry(prawcore.TooManyRequests(response))
        assert isinstance(err, RetryableError)
        return err

    assert too_many(**{"X-Ratelimit-Reset": "2"}).retry_after == 2.0
    assert too_many(**{"Retry-After": "5", "X-Ratelimit-Reset": "2"}).retry_after == 5.0
    assert too_many().retry_after is None  # our own backoff then


async def test_a_reconnect_keeps_the_client_and_its_token(tmp_path: Path) -> None:
    server = await RedditServer().start()
    try:
        subs = server.listings["new"]
        sink = MemorySink()
        runner, _ = make(server, CursorStore(tmp_path / "c.json"), sink)

        async def fail_once() -> None:
            await wait_polled(server)
            subs.failures = [Failure(429, {"Retry-After": "0"})]
            subs.items += [submission(2)]

        driver = asyncio.create_task(fail_once())
        await run_until(runner, lambda: runner.stats.reconnects >= 1 and len(sink.acked) >= 1)
        await driver
        assert len(server.token_requests) == 1  # signed in once, not again per reconnect
    finally:
        await server.stop()


async def test_a_malformed_item_is_dead_lettered_once_across_restarts(tmp_path: Path) -> None:
    server = await RedditServer().start()
    try:
        coms = server.listings["comments"]
        store = CursorStore(tmp_path / "c.json")
        sink = MemorySink()
        first, _ = make(server, store, sink)

        async def publish() -> None:
            await wait_polled(server)
            coms.items += [comment(10, created_utc="yesterday"), comment(2)]

        pub = asyncio.create_task(publish())
        await run_until(first, lambda: first.stats.skipped >= 1 and len(sink.acked) >= 1)
        await pub
        assert len(sink.dead_letters) == 1
        second, _ = make(server, store, sink)
        before = polled(server)
        await run_until(
            second, lambda: min(n - b for n, b in zip(polled(server), before, strict=True)) >= 3
        )
        assert second.stats.skipped == 0 and len(sink.dead_letters) == 1
        assert [p.id for p in sink.acked] == [cid(2)]
    finally:
        await server.stop()
