"""Detector checkpoints in a key-value table (a changelogged Faust table, or a dict).

The detector's state is a few MB of arrays, too big to write per post. It is saved every
few seconds, whole, together with the source offset it covers; after a restart the
records between that offset and where the consumer resumes are read again and replayed
(the detector is deterministic, so the state and the alert ids/versions it rebuilds are
the ones it had, unless the settings changed in between: a restored detector goes on with
the worker's settings, and starts empty when its state is shaped by other ones). A
snapshot is written as chunks into one of two slots and then a ``meta`` entry naming the
slot, all to the same changelog partition in order: a crash mid-write leaves ``meta``
pointing at the previous, complete slot.

Beside the engine a checkpoint holds the detector's merge of the raw partitions
(``streams/merge.py``: the posts waiting in it, each source's progress), as its own bytes
after the engine's (``meta["merge_bytes"]`` of them; none in a checkpoint from before).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import MutableMapping
from typing import Any

from streams.detector import BurstEngine, DetectorParams, IncompatibleCheckpoint

log = logging.getLogger(__name__)


class Checkpoints:
    def __init__(self, table: MutableMapping[str, Any], chunk_bytes: int = 256 * 1024) -> None:
        self.table = table
        self.chunk_bytes = chunk_bytes

    def save(self, partition: int, engine: BurstEngine, merge: bytes = b"") -> int:
        """Write ``engine`` (covering up to ``engine.offset``) and the ``merge`` state;
        returns the bytes written."""
        meta = self.table.get(f"{partition}:meta")
        slot = 1 - int(meta["slot"]) if meta else 0
        data = engine.dumps() + merge
        step = self.chunk_bytes
        chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        for i, chunk in enumerate(chunks):
            self.table[f"{partition}:{slot}:{i}"] = base64.b64encode(chunk).decode("ascii")
        self.table[f"{partition}:meta"] = {
            "slot": slot,
            "chunks": len(chunks),
            "offset": engine.offset,
            "sha256": hashlib.sha256(data).hexdigest(),
            "merge_bytes": len(merge),
        }
        return len(data)

    def offset(self, partition: int) -> int:
        """The source offset the last checkpoint of ``partition`` covers (-1: none)."""
        meta = self.table.get(f"{partition}:meta")
        return int(meta["offset"]) if meta else -1

    def load(
        self, partition: int, params: DetectorParams | None = None
    ) -> tuple[BurstEngine, bytes] | None:
        """The last complete checkpoint of ``partition`` (the engine, the merge state's
        bytes), or None. With ``params`` the engine goes on with them, not with the
        settings it was saved with (None if its state is shaped by other settings)."""
        meta = self.table.get(f"{partition}:meta")
        if not meta:
            return None
        slot = meta["slot"]
        parts = [self.table.get(f"{partition}:{slot}:{i}") for i in range(meta["chunks"])]
        if any(p is None for p in parts):
            log.warning(
                "detector checkpoint of partition %d is incomplete; starting empty", partition
            )
            return None
        data = b"".join(base64.b64decode(p or "") for p in parts)
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            log.warning("detector checkpoint of partition %d is corrupt; starting empty", partition)
            return None
        cut = len(data) - int(meta.get("merge_bytes", 0))
        try:
            engine = BurstEngine.loads(data[:cut])
            if params is not None:
                engine.use_settings(params)
        except IncompatibleCheckpoint as exc:
            log.warning(
                "detector checkpoint of partition %d is %s; starting empty (baselines are "
                "learnt again from the posts that follow)",
                partition,
                exc,
            )
            return None
        engine.offset = int(meta["offset"])
        return engine, data[cut:]
