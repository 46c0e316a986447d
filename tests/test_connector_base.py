"""The connector run loop: cursors, repeats, skips, retry vs stop, shutdown, the Kafka sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from connectors.base import (
    Backoff,
    Cursor,
    CursorStore,
    Emit,
    FatalSourceError,
    Gap,
    Item,
    KafkaPostSink,
    RetryableError,
    Skip,
)
from connectors.cli import quiet_libraries, run_connector
from seismo.config import load_settings
from seismo.contracts import POSTS_RAW, Post, decode
from seismo.errors import SeismoError
from seismo.kafka import KAFKA_LOGGERS, FirstOfRepeats, SayKafkaUnreachable, ensure_topics
from seismo.metrics import Metrics
from tests.fakes.kit import (
    FakeSource,
    MemorySink,
    emits,
    make_runner,
    post,
    run_until,
    value,
)
from tests.helpers import finishes, read_records, wait_until_async
from tests.timeouts import CONNECTOR_PROGRESS


async def test_posts_flow_and_cursor_is_saved_after_ack(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "c.json")
    sink = MemorySink()
    runner, metrics = make_runner(FakeSource(emits(0, 5)), sink, store)
    await run_until(runner, lambda: len(sink.acked) == 5)
    assert [p.id for p in sink.acked] == ["0", "1", "2", "3", "4"]
    assert store.load() == {"n": 4}
    assert sink.started and sink.stopped
    assert value(metrics, "seismo_connector_events_total", source="fake", outcome="produced") == 5
    assert value(metrics, "seismo_connector_cursor", source="fake") == 4


async def test_reconnect_resumes_at_cursor_and_drops_repeats(tmp_path: Path) -> None:
    # first connection drops after 0..2; the upstream then replays 1..4 (overlap 1, 2)
    source = FakeSource(emits(0, 3, then=RetryableError("connection reset")), emits(1, 5))
    sink = MemorySink()
    runner, metrics = make_runner(source, sink, CursorStore(tmp_path / "c.json"))
    await run_until(runner, lambda: len(sink.acked) == 5)
    assert [p.id for p in sink.acked] == ["0", "1", "2", "3", "4"]
    assert source.started_at[:2] == [None, {"n": 2}]
    assert runner.stats.duplicates == 2
    assert value(metrics, "seismo_connector_reconnects_total", source="fake") >= 1


async def test_malformed_item_is_skipped_counted_and_dead_lettered(tmp_path: Path) -> None:
    async def script(cursor: Cursor | None) -> AsyncIterator[Item]:
        yield Emit(post(0), {"n": 0})
        yield Skip("frame is not JSON", b"\x00garbage", {"n": 1})
        yield Gap("cursor too old", {"n": 2})
        yield Emit(post(3), {"n": 3})

    sink = MemorySink()
    runner, metrics = make_runner(FakeSource(script), sink, CursorStore(tmp_path / "c.json"))
    await run_until(runner, lambda: len(sink.acked) == 2)
    assert [p.id for p in sink.acked] == ["0", "3"]
    assert sink.dead_letters == [("fake", "frame is not JSON")]
    assert value(metrics, "seismo_connector_events_total", source="fake", outcome="skipped") == 1
    assert value(metrics, "seismo_connector_gaps_total", source="fake") == 1


async def test_fatal_error_stops_the_connector(tmp_path: Path) -> None:
    source = FakeSource(emits(0, 1, then=FatalSourceError("401 Unauthorized: bad token")))
    sink = MemorySink()
    runner, _ = make_runner(source, sink, CursorStore(tmp_path / "c.json"))
    with pytest.raises(FatalSourceError, match="bad token"):
        await finishes(runner.run(asyncio.Event()), "a runner with a fatal error")
    assert sink.stopped
    assert [p.id for p in sink.acked] == ["0"]  # flushed before stopping


async def test_failed_flush_resends_from_the_durable_cursor(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "c.json")
    store.save({"n": 1})
    # resumes after 1; the first flush fails (posts 2, 3 lost), the stream errors out;
    # the reconnect must start again from the saved cursor and send 2, 3 again
    source = FakeSource(emits(2, 4, then=RetryableError("drop")), emits(2, 6))
    sink = MemorySink(fail_flushes=1)
    runner, _ = make_runner(source, sink, store)
    await run_until(runner, lambda: len(sink.acked) >= 4)
    assert [p.id for p in sink.acked] == ["2", "3", "4", "5"]
    assert source.started_at[:2] == [{"n": 1}, {"n": 1}]
    assert store.load() == {"n": 5}


async def test_restart_resumes_from_saved_cursor(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "c.json")
    sink = MemorySink()
    first, _ = make_runner(FakeSource(emits(0, 3)), sink, store)
    await run_until(first, lambda: len(sink.acked) == 3)
    second_source = FakeSource(emits(3, 5))
    second, _ = make_runner(second_source, sink, store)
    await run_until(second, lambda: len(sink.acked) == 5)
    assert second_source.started_at[0] == {"n": 2}
    assert [p.id for p in sink.acked] == ["0", "1", "2", "3", "4"]


async def test_stop_is_prompt_while_upstream_is_silent(tmp_path: Path) -> None:
    source = FakeSource()  # connected, and silent for ever: the stop must not wait for it
    runner, _ = make_runner(source, MemorySink(), CursorStore(tmp_path / "c.json"))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await wait_until_async(lambda: source.started_at, "the connection", CONNECTOR_PROGRESS)
    stop.set()
    await finishes(task, "a runner whose upstream is silent")


class DownSink(MemorySink):
    """Kafka gone: once ``down`` is set, flush and stop never return by themselves."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.back = asyncio.Event()  # set by the test's cleanup, so a failure can't hang

    async def flush(self) -> None:
        if self.down:
            await self.back.wait()
        await super().flush()

    async def stop(self) -> None:
        if self.down:
            await self.back.wait()
        await super().stop()


async def test_flush_without_ack_is_a_retry_and_stop_is_prompt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CursorStore(tmp_path / "c.json")
    sink = DownSink()

    async def script(cursor: Cursor | None) -> AsyncIterator[Item]:
        for i in range(3):
            yield Emit(post(i), {"n": i})
        sink.down = True
        for i in range(3, 6):
            yield Emit(post(i), {"n": i})
        await asyncio.Event().wait()

    source = FakeSource(script, emits(3, 6))
    runner, _ = make_runner(source, sink, store)
    runner.flush_timeout, runner.stop_timeout = 0.2, 0.2
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        # the hung flush became an error: logged, retried from the durable cursor
        await wait_until_async(
            lambda: len(source.started_at) >= 2,
            "a reconnect after the hung flush",
            CONNECTOR_PROGRESS,
        )
        assert runner.stats.reconnects >= 1
        assert "did not acknowledge" in caplog.text
        assert source.started_at[1] == {"n": 2}
        stop.set()  # the sink never answers again (until the cleanup): the stop can't wait for it
        await finishes(task, "a runner whose sink hangs")
    finally:
        sink.back.set()
        stop.set()
    assert [p.id for p in sink.acked] == ["0", "1", "2"]
    assert store.load() == {"n": 2}  # never past what was acknowledged


async def test_stop_is_prompt_while_the_sink_cannot_start(tmp_path: Path) -> None:
    answer = asyncio.Event()  # set by the cleanup, so a failure can't hang

    class SilentKafka(MemorySink):
        starting = False

        async def start(self) -> None:
            self.starting = True
            await answer.wait()  # a socket that accepts and never answers

    sink = SilentKafka()
    runner, _ = make_runner(FakeSource(), sink, CursorStore(tmp_path / "c.json"))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_until_async(lambda: sink.starting, "the sink's start", CONNECTOR_PROGRESS)
        stop.set()
        await finishes(task, "a runner whose sink cannot start")
        assert sink.stopped
    finally:
        answer.set()


class SilentServer:
    """A socket that accepts connections and never says a word; counts the connections."""

    def __init__(self) -> None:
        self.accepted = 0
        self.address = ""
        self._hold = asyncio.Event()

    async def _mute(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await self._hold.wait()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SilentServer]:
        server = await asyncio.start_server(self._mute, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            self._hold.set()
            server.close()


async def test_silent_kafka_names_a_reason_and_ctrl_c_stops_the_connect(
    tmp_path: Path,
) -> None:
    async with SilentServer().running() as silent:
        settings = load_settings(kafka_bootstrap=silent.address, data_dir=tmp_path)
        with pytest.raises(SeismoError, match=r"cannot reach Kafka at .*: no answer within 0.5s"):
            await finishes(ensure_topics(settings, timeout=0.5), "ensure_topics")
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_connector(FakeSource(), settings, Metrics(CollectorRegistry()), stop)
        )
        try:
            before = silent.accepted
            await wait_until_async(
                lambda: silent.accepted > before, "the connector's Kafka client", CONNECTOR_PROGRESS
            )
            stop.set()
            await finishes(task, "a connector whose Kafka never answers")
        finally:
            task.cancel()


async def test_backoff_starts_over_only_after_a_healthy_connection(tmp_path: Path) -> None:
    now = [0.0]

    def long_connection(cursor: Cursor | None) -> AsyncIterator[Item]:
        now[0] += 31.0  # up longer than healthy_seconds before it drops
        return emits(9, 10, then=RetryableError("dropped after a good while"))(cursor)

    # five connections that each send one post (the first a repeat) and close at once
    short = [emits(0, 1, then=RetryableError("closed"))]
    short += [emits(i, i + 1, then=RetryableError("closed")) for i in range(4)]
    source = FakeSource(*short, long_connection)
    runner, _ = make_runner(source, MemorySink(), CursorStore(tmp_path / "c.json"))
    runner.clock = lambda: now[0]
    attempts: list[int] = []
    real_next = runner.backoff.next_delay

    def next_delay(at_least: float | None = None) -> float:
        attempts.append(runner.backoff.attempt)
        return real_next(at_least)

    runner.backoff.next_delay = next_delay  # type: ignore[method-assign]
    await run_until(runner, lambda: runner.stats.reconnects >= 6)
    assert attempts[:6] == [0, 1, 2, 3, 4, 0]


def test_backoff_is_capped_jittered_and_resets() -> None:
    b = Backoff(base=1.0, cap=8.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert max(delays[4:]) <= 8.0 and min(delays[4:]) >= 4.0  # at the cap: in [cap/2, cap]
    assert b.next_delay(at_least=30.0) == 30.0  # Retry-After wins when longer
    b.reset()
    assert b.next_delay() <= 1.0


def test_cursor_store_round_trip_and_bad_file(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "x" / "c.json")
    assert store.load() is None
    store.save({"time_us": 123})
    assert store.load() == {"time_us": 123}
    store.path.write_text("not json")
    with pytest.raises(Exception, match="unreadable"):
        store.load()


@pytest.mark.broker
async def test_kafka_sink_writes_posts_keyed_with_event_time(kafka: str, namespace: str) -> None:
    settings = load_settings(kafka_bootstrap=kafka, namespace=namespace)
    sink = KafkaPostSink(settings)
    await sink.start()
    try:
        for i in range(3):
            await sink.send(post(i))
        await sink.flush()
    finally:
        await sink.stop()
    got = await read_records(kafka, settings.topic(POSTS_RAW), 3)
    assert [r.key for r in got] == [b"fake:0", b"fake:1", b"fake:2"]
    assert [decode(Post, r.value).id for r in got] == ["0", "1", "2"]
    assert got[1].timestamp == int(post(1).created_at.timestamp() * 1000)


def test_repeated_library_errors_show_the_first_and_count_the_rest() -> None:
    now = [0.0]
    shown: list[str] = []
    repeats = FirstOfRepeats(window=60.0, clock=lambda: now[0])
    for i in range(30):  # one broker-down second of aiokafka
        record = logging.LogRecord(
            "aiokafka", logging.ERROR, __file__, 1, "Unable connect to node %s: %s", (1, i), None
        )
        if repeats.filter(record):
            shown.append(record.getMessage())
        now[0] += 0.03
    now[0] = 61.0
    record = logging.LogRecord(
        "aiokafka", logging.ERROR, __file__, 1, "Unable connect to node %s: %s", (1, 99), None
    )
    assert repeats.filter(record)
    shown.append(record.getMessage())
    assert shown == [
        "Unable connect to node 1: 0",
        "Unable connect to node 1: 99 (29 more like it in the last 60s)",
    ]
    other = logging.LogRecord(
        "aiokafka", logging.ERROR, __file__, 1, "Topic %s not found", ("t",), None
    )
    assert repeats.filter(other)  # a different message is a first occurrence


def test_connector_processes_quiet_chatty_libraries() -> None:
    loggers = [logging.getLogger(n) for n in ("httpx", "prawcore", *KAFKA_LOGGERS)]
    before = [(lg.level, list(lg.filters)) for lg in loggers]
    try:
        quiet_libraries()
        assert logging.getLogger("httpx").level == logging.WARNING
        assert not logging.getLogger("prawcore").isEnabledFor(logging.WARNING)
        assert any(isinstance(f, FirstOfRepeats) for f in logging.getLogger("aiokafka").filters)
    finally:
        for lg, (level, filters) in zip(loggers, before, strict=True):
            lg.setLevel(level)
            lg.filters[:] = filters


def test_kafka_unreachable_is_said_once_a_minute_in_our_own_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    say = SayKafkaUnreachable(window=60.0, clock=lambda: now[0])
    # a logger of its own: aiokafka's may carry the filters of an earlier test's process setup
    aiokafka_log = logging.getLogger("tests.aiokafka.conn")
    aiokafka_log.addFilter(say)
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(10):  # ten a second during an outage
                aiokafka_log.error("Unable connect to node with id %s: %s", 1, "refused")
                now[0] += 0.1
            now[0] += 60.0
            aiokafka_log.error("Unable connect to node with id %s: %s", 1, "refused")
    finally:
        aiokafka_log.removeFilter(say)
    ours = [r.getMessage() for r in caplog.records if r.name == "seismo.kafka"]
    assert len([r for r in caplog.records if r.name == "tests.aiokafka.conn"]) == 11  # kept
    assert len(ours) == 2
    assert ours[0].startswith("Kafka unreachable, retrying (Unable connect to node with id 1")
