"""The faust/aiokafka workarounds in streams/faust_fixes.py, against the real library code.

No broker: aiokafka's own ``Fetcher.fetched_records`` and faust's own ``_fetch_records`` /
``perform_seek`` run on hand-built state, so the race that lost alerts after a SIGKILL is
reproduced step by step instead of by timing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.structs import TopicPartition

from streams import faust_fixes

CHANGELOG = TopicPartition("seismo-delivered-changelog", 0)
ALERTS = TopicPartition("alerts.v1", 0)


def _prefetched(tp: TopicPartition, offsets: list[int]) -> FetchResult:
    """What aiokafka's background fetch task buffers for a partition."""
    result = object.__new__(FetchResult)  # only what fetched_records reads
    recs = [SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=o) for o in offsets]
    result.getall = lambda max_records=None: list(recs)  # type: ignore[method-assign]
    result.has_more = lambda: False  # type: ignore[method-assign]
    return result


def _fetcher(records: dict[TopicPartition, FetchResult]) -> Fetcher:
    fetcher = object.__new__(Fetcher)
    fetcher._records = records
    fetcher._subscriptions = SimpleNamespace(
        reassignment_in_progress=False,
        is_assigned=lambda tp: True,
        fetch_context=contextlib.nullcontext,
    )
    fetcher._wait_consume_future = None
    fetcher._fetch_waiters = set()
    fetcher._closed = False
    fetcher._loop = asyncio.get_running_loop()
    return fetcher


async def _poll_while_recovery_ends(patched: bool) -> dict[Any, Any]:
    """faust's fetch loop polls with its live set of active partitions while only a
    changelog is active (stream partitions paused, their records already prefetched);
    then recovery ends and pauses the changelog too, so the live set becomes empty."""
    fetcher = _fetcher({ALERTS: _prefetched(ALERTS, [1, 2, 3])})
    active = {CHANGELOG}
    thread = SimpleNamespace(consumer=SimpleNamespace(flow_active=True))
    consumer = SimpleNamespace(_fetcher=fetcher, _closed=False)
    fetch: Any = faust_fixes._fetch_records if patched else faust_fixes._original_fetch_records
    poll = asyncio.ensure_future(fetch(thread, consumer, active, timeout=0.5))
    while not fetcher._fetch_waiters:  # the poll is waiting for new records
        await asyncio.sleep(0)
    active.clear()  # Recovery: "Done reading from changelog topics" -> pause_partitions
    for waiter in list(fetcher._fetch_waiters):
        waiter.set_result(None)  # some fetch response arrives and wakes the poll
    return await poll  # type: ignore[no-any-return]


def test_upstream_poll_returns_paused_partitions_when_the_active_set_empties() -> None:
    # the hazard the workaround exists for (if this starts failing, aiokafka fixed it)
    got = asyncio.run(_poll_while_recovery_ends(patched=False))
    assert [r.offset for r in got[ALERTS]] == [1, 2, 3]


def test_patched_poll_never_returns_records_of_inactive_partitions() -> None:
    got = asyncio.run(_poll_while_recovery_ends(patched=True))
    assert got == {}


def test_active_partitions_view_follows_the_live_set() -> None:
    live: set[Any] = set()
    view = faust_fixes.ActivePartitions(live)
    assert view and ALERTS not in view and len(view) == 0
    live.add(ALERTS)
    assert ALERTS in view and list(view) == [ALERTS] and len(view) == 1

    async def go() -> dict[Any, Any]:
        fetcher = _fetcher(
            {ALERTS: _prefetched(ALERTS, [0]), CHANGELOG: _prefetched(CHANGELOG, [7])}
        )
        return await fetcher.fetched_records(view, timeout=0)  # type: ignore[no-any-return]

    assert list(asyncio.run(go())) == [ALERTS]


class _SeekingConsumer:
    """The state faust's Consumer.perform_seek works on, with aiokafka's answers stubbed."""

    def __init__(self, committed: dict[TopicPartition, int | None], reset: str) -> None:
        self.committed = committed
        self.app = SimpleNamespace(conf=SimpleNamespace(consumer_auto_offset_reset=reset))
        self._read_offset: defaultdict[Any, int | None] = defaultdict(lambda: None)
        self._committed_offset: defaultdict[Any, int | None] = defaultdict(lambda: None)
        self.to_beginning: list[TopicPartition] = []
        consumer = self

        class Thread:
            async def seek_to_beginning(self, *tps: TopicPartition) -> None:
                consumer.to_beginning.extend(tps)

        self._thread = Thread()

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return dict(self.committed)  # aiokafka seeks only those with an offset > 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.committed)

    def _is_changelog_tp(self, tp: TopicPartition) -> bool:
        return bool(tp.topic.endswith("-changelog"))


def test_perform_seek_rewinds_stream_partitions_without_a_committed_offset() -> None:
    done = TopicPartition("alerts.v1", 1)
    consumer = _SeekingConsumer({ALERTS: None, done: 5, CHANGELOG: None}, "earliest")
    asyncio.run(faust_fixes._perform_seek(consumer))
    assert consumer.to_beginning == [ALERTS]  # not the changelog, not the committed one
    assert consumer._committed_offset[done] == 5
    assert consumer._read_offset[ALERTS] is None


def test_perform_seek_keeps_latest_semantics_when_configured() -> None:
    consumer = _SeekingConsumer({ALERTS: None}, "latest")
    asyncio.run(faust_fixes._perform_seek(consumer))
    assert consumer.to_beginning == []


def test_apply_installs_the_workarounds() -> None:
    from faust.tables.recovery import Recovery
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

    faust_fixes.apply()
    faust_fixes.apply()
    assert AIOKafkaConsumerThread._fetch_records is faust_fixes._fetch_records
    assert Consumer.perform_seek is faust_fixes._perform_seek
    assert Recovery.on_recovery_completed is faust_fixes._on_recovery_completed


class _RecoveringApp:
    """The worker state a recovery's completion touches: the consumer's active/paused
    partition sets and flow (faust's own Consumer methods), the stream queues' flow control
    (mode's own FlowControlEvent), the rebalance counters aiokafka's listener bumps."""

    def __init__(self, assignment: set[TopicPartition]) -> None:
        from faust.transport.consumer import Consumer
        from mode.utils.queues import FlowControlEvent

        app = self
        self.consumer_generation_id = 1
        self.rebalancing_count = 1
        self.rebalance_ended = False
        self.conf = SimpleNamespace(broker_request_timeout=1.0)
        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.seeks: list[set[TopicPartition]] = []  # stream partitions active at each seek
        self.next_rebalance: str | None = None  # "revoked" / "assigned": begins in the seek

        class Signal:
            async def send(self) -> None: ...

        class Fetcher:
            async def maybe_start(self) -> None: ...

        class Consumer_:
            flow_active = True
            # faust's own bookkeeping (typed for faust's Consumer, hence Any)
            pause_partitions: Any = Consumer.pause_partitions
            resume_partitions: Any = Consumer.resume_partitions
            stop_flow: Any = Consumer.stop_flow
            resume_flow: Any = Consumer.resume_flow

            def __init__(self) -> None:
                self._active_partitions: set[TopicPartition] = set()
                self._paused_partitions: set[TopicPartition] = set()
                self.can_resume_flow = asyncio.Event()
                self.suspend_flow = asyncio.Event()

            def _get_active_partitions(self) -> set[TopicPartition]:
                return self._active_partitions

            def assignment(self) -> set[TopicPartition]:
                return set(assignment)

            async def perform_seek(self) -> None:
                app.seeks.append({tp for tp in self._active_partitions if tp in assignment})
                if app.next_rebalance:  # the consumer thread answers once the group rejoined
                    # aiokafka's listener: on_partitions_revoked -> app.on_rebalance_start
                    app.rebalancing_count += 1
                    self.stop_flow()
                    app.flow_control.suspend()
                    self.pause_partitions(assignment)
                    if app.next_rebalance == "assigned":  # on_partitions_assigned
                        app.consumer_generation_id += 1

        self.consumer = Consumer_()
        self.on_rebalance_complete = Signal()
        self._fetcher = Fetcher()
        self.assignor = SimpleNamespace(assigned_standbys=lambda: set())

    def on_rebalance_end(self) -> None:
        self.rebalance_ended = True


def _recovery(app: _RecoveringApp) -> Any:
    """A Recovery as far as on_recovery_completed goes (no tables: nothing to wait for)."""

    async def wait(coro: Any, timeout: float | None = None) -> None:
        await coro

    return SimpleNamespace(
        app=app,
        log=SimpleNamespace(info=lambda *a: None, warning=lambda *a: None),
        tables=SimpleNamespace(
            values=lambda: [], on_actives_ready=lambda: None, on_standbys_ready=lambda: None
        ),
        completed=asyncio.Event(),
        _set_recovery_ended=lambda: None,
        _is_changelog_tp=lambda tp: tp.topic.endswith("-changelog"),
        _wait=wait,
    )


RAW = [TopicPartition("posts.raw.v1", p) for p in range(4)]


async def _complete_recovery(next_rebalance: str | None, active: set[TopicPartition]) -> Any:
    app = _RecoveringApp({*RAW, CHANGELOG})
    app.consumer._active_partitions = set(active)
    app.consumer._paused_partitions = {*RAW} - active
    app.next_rebalance = next_rebalance
    await faust_fixes._on_recovery_completed(_recovery(app), generation_id=1)
    return app


def test_recovery_resumes_the_stream_partitions_and_the_flow_after_seeking() -> None:
    app = asyncio.run(_complete_recovery(None, set()))
    assert app.seeks == [set()]
    assert app.consumer._active_partitions == set(RAW)
    assert app.consumer.flow_active and app.flow_control.is_active()
    assert app.rebalance_ended


@pytest.mark.parametrize("next_rebalance", ["revoked", "assigned"])
def test_recovery_superseded_during_its_seek_resumes_nothing(next_rebalance: str) -> None:
    # Gen-1 recovery seeks; its answer comes back only once the group has rejoined for the
    # next rebalance, which has stopped the flow and paused the partitions. Upstream (and our
    # first replacement) then resumed the flow and the *old* assignment in the middle of
    # that rebalance: its records flowed, were queued, and were dropped by the next
    # recovery's flow_control.resume() after its seek -- a gap the commit never passes.
    app = asyncio.run(_complete_recovery(next_rebalance, set()))
    assert not app.consumer.flow_active, "a stale recovery resumed the flow"
    assert not app.flow_control.is_active(), "a stale recovery resumed the stream queues"
    assert not app.consumer._active_partitions & set(RAW), "stale partitions resumed"
    assert not app.rebalance_ended, "a stale recovery ended the next rebalance"


def test_stream_partitions_are_paused_while_recovery_seeks_them() -> None:
    # Whatever resumed them meanwhile, nothing is read from a stream partition between its
    # seek and the flow_control.resume() that clears the stream queues.
    app = asyncio.run(_complete_recovery(None, {RAW[1], RAW[3]}))
    assert app.seeks == [set()]
    assert app.consumer._active_partitions == set(RAW)
