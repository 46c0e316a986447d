"""Workarounds for upstream faust-streaming/aiokafka bugs, applied when the worker starts.

After a restart with tables, ``Recovery.on_recovery_completed`` (faust-streaming 0.15.3)
resumes the stream partitions *before* seeking them to their committed offsets. Records
fetched in between are dropped from the in-memory queues while the fetch position moves on,
which leaves a gap in the acked offsets: those records are never processed and the offset
commit stalls for good (upstream issue #596; PR #217 fixed the same ordering in
``_resume_streams`` only). We observed it here: a worker restarted mid-stream skipped
raw offsets 218-323 and never committed past 218.

The replacement below does the same steps with the seek first, as ``_resume_streams`` does.

A recovery can also be *superseded during its seek*. The seek waits for aiokafka's consumer
thread; aiokafka's ``seek_to_beginning`` (``perform_seek`` below) even waits until the fetcher
has reset the positions *or the partitions are unassigned*. On fresh, empty topics that can
take a second, and when a second worker joins meanwhile the seek answers right at the next
rebalance's revocation -- or just after its assignment paused the new partitions, but before
the new recovery has been signalled (which would cancel the old one). Upstream (and the
replacement below, until 2026-12-07) checks the generation only *before* seeking, then
resumes the flow, the stream queues and the *old* assignment's partitions and ends the
rebalance (``[^-App]: Missing sensor state for rebalance #2`` in the log is that). Records
then flow in the middle of the next rebalance; the next recovery's seek positions the
partitions, records are read past it, and its ``flow_control.resume()`` -- which *clears*
the stream queues -- drops them: read (faust's read offset is past them) but never
delivered, so never acked, and the commit of that partition stops at the first of them for
good. We saw it with two workers started together on fresh topics, posts produced right
away: raw partition 3 committed up to 16 and 5 posts never classified, 4 runs out of 5.
The replacement therefore (a) gives up without resuming anything when another rebalance
began (``rebalancing_count`` moved, i.e. a revocation, or the generation changed) while it
was seeking; the new recovery resumes what is really assigned, and (b) pauses the stream
partitions before seeking them, so nothing is read from them between the seek and the
queue clear whatever resumed them meanwhile.

Two more holes let a restarted worker skip records (lost alerts after a SIGKILL):

* Faust passes its live, mutable set of active partitions to aiokafka's
  ``Fetcher.fetched_records(partitions)``, which long-polls and re-checks the set on every
  wake-up -- and reads an *empty* set as "no filter: every assigned partition". When
  recovery ends it pauses the changelog partitions while the stream partitions are still
  paused, so the set is empty for a moment; a poll in flight then drains the records that
  aiokafka had prefetched for the paused stream partitions. Faust drops them (not active)
  but aiokafka's position has moved past them. If that happens after the seek to the
  committed offsets, the next record read lies past a jump, which faust takes for a
  compaction gap and *commits over* (records lost), or the commit stalls. We saw both: a
  restarted worker whose signals.v1 position was 650 right after seeking to committed 400,
  and a replay left with 377 records pending. ``_fetch_records`` below passes a view of
  the set that is never "empty = everything".
* Faust undoes such drops with ``perform_seek`` (seek to committed), but aiokafka's
  ``seek_to_committed`` leaves a partition without a committed offset where it is. A
  partition with nothing committed yet (alerts.v1 right after the first deliveries) thus
  kept the advanced position and its first records were never processed. ``perform_seek``
  below moves such stream partitions back to the start, as ``auto_offset_reset=earliest``
  would for a fresh consumer (at-least-once; the stages are idempotent). (faust records
  a committed offset of 0 as None too; aiokafka does not seek to 0 either.)

tests/test_faust_fixes.py replays the race on aiokafka's real fetch code, without timing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Set
from typing import Any

from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    Consumer,
    ensure_aiokafka_TP,
)
from faust.types import TP

log = logging.getLogger(__name__)

_original = Recovery.on_recovery_completed
_original_fetch_records = AIOKafkaConsumerThread._fetch_records
_original_perform_seek = Consumer.perform_seek


def _superseded(self: Any, generation_id: int, rebalance: int) -> bool:
    """Has another rebalance begun since this recovery's one (revocation or assignment)?"""
    app = self.app
    return bool(app.consumer_generation_id != generation_id or app.rebalancing_count != rebalance)


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    consumer = self.app.consumer
    # on_rebalance_start (at the revocation) counts rebalances: a change means ours is stale
    rebalance = self.app.rebalancing_count
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table], self.standbys_for_table[table]
            )
        )
        for table in self.tables.values()
    ]
    if callbacks:
        await asyncio.wait(callbacks)
    assignment = consumer.assignment()
    if _superseded(self, generation_id, rebalance):
        self.log.warning(
            "Recovery rebalancing again app id %s param %s",
            self.app.consumer_generation_id,
            generation_id,
        )
        return
    streams = {tp for tp in assignment if not self._is_changelog_tp(tp)}
    if assignment:
        # seek first: nothing may be fetched from a stream partition before it is
        # positioned at its committed offset (nor while it is being positioned)
        consumer.pause_partitions(streams)
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        if _superseded(self, generation_id, rebalance):
            # the next rebalance began during the seek: it owns the flow and the partitions
            self.log.warning("Recovery superseded by a rebalance during the seek: not resuming")
            return
    consumer.resume_partitions(streams)
    self.completed.set()
    self.app.flow_control.resume()
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


class ActivePartitions(Set[TP]):
    """A live view of faust's active partitions that is never "empty = all" to aiokafka.

    aiokafka's ``fetched_records`` filters with ``if partitions and tp not in partitions``:
    while the set is empty nothing may be returned, so the view is always truthy.
    """

    def __init__(self, live: Set[TP]) -> None:
        self.live = live

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self.live

    def __iter__(self) -> Iterator[TP]:
        return iter(self.live)

    def __len__(self) -> int:
        return len(self.live)


async def _fetch_records(
    self: Any,
    consumer: Any,
    active_partitions: Set[TP],
    timeout: float | None = None,
    max_records: int | None = None,
) -> Any:
    return await _original_fetch_records(
        self,
        consumer,
        ActivePartitions(active_partitions),  # type: ignore[arg-type]  # read-only use
        timeout=timeout,
        max_records=max_records,
    )


async def _perform_seek(self: Any) -> None:
    await _original_perform_seek(self)
    if self.app.conf.consumer_auto_offset_reset != "earliest":
        return
    # seek_to_committed left partitions with nothing committed where they were (see above)
    uncommitted = [
        tp
        for tp in self.assignment()
        if self._committed_offset.get(tp) is None and not self._is_changelog_tp(tp)
    ]
    if uncommitted:
        log.info("Seek partitions without a committed offset to the start: %s", uncommitted)
        await self._thread.seek_to_beginning(*(ensure_aiokafka_TP(tp) for tp in uncommitted))


def apply() -> None:
    """Install the workarounds (idempotent)."""
    if Recovery.on_recovery_completed is not _on_recovery_completed:
        Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
        AIOKafkaConsumerThread._fetch_records = _fetch_records  # type: ignore[method-assign]
        Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
        log.debug("faust recovery/fetch workarounds installed")
