"""A workaround for an upstream faust-streaming bug, applied when the worker starts.

After a restart with tables, ``Recovery.on_recovery_completed`` (faust-streaming 0.15.3)
resumes the stream partitions *before* seeking them to their committed offsets. Records
fetched in between are dropped from the in-memory queues while the fetch position moves on,
which leaves a gap in the acked offsets: those records are never processed and the offset
commit stalls for good (upstream issue #596; PR #217 fixed the same ordering in
``_resume_streams`` only). We observed it here: a worker restarted mid-stream skipped
raw offsets 218-323 and never committed past 218.

The replacement below does the same steps with the seek first, as ``_resume_streams`` does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.tables.recovery import Recovery

log = logging.getLogger(__name__)

_original = Recovery.on_recovery_completed


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    consumer = self.app.consumer
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
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            "Recovery rebalancing again app id %s param %s",
            self.app.consumer_generation_id,
            generation_id,
        )
        return
    if assignment:
        # seek first: nothing may be fetched from a stream partition before it is
        # positioned at its committed offset
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.app.flow_control.resume()
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


def apply() -> None:
    """Install the workaround (idempotent)."""
    if Recovery.on_recovery_completed is not _on_recovery_completed:
        Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
        log.debug("faust recovery ordering workaround installed")
