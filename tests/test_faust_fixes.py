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
