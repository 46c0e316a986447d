"""One order for the posts of several raw partitions: a k-way merge by arrival time.

``posts.raw.v1`` may have N partitions so that N workers classify in parallel; the
detector still counts the whole stream, in one order. Ingest sends every classified post
to the one partition of ``posts.classified.v1``, where the posts of the N raw partitions
interleave in whatever order the workers happened to finish. This merge undoes that
interleaving:

* **Sources.** Each raw partition is a source. A source's posts keep their raw order
  (raw offset order); a post whose raw offset is not past the last one taken from its
  source is a copy (ingest classified it again after a restart or a rebalance) and is
  dropped.
* **Order.** The merge releases the head of the source whose head is first by
  ``(ingested_at, post key, source)``: ``ingested_at`` is the wall-clock time the connector
  stamped when it received the post, so a merge of sources that are each in stamp order
  is the order the posts arrived at seismo's edge, the order one raw partition would have
  kept. It does not depend on N, nor on which worker was faster.
* **Waiting.** A head can go only once every other source has a head after it, or a
  bound saying that nothing before it will come: a **progress marker**. The detector
  writes one into ``posts.classified.v1`` for a source it waits on once the consumer group
  has committed that raw partition to its end (every post of it is then in the classified
  partition, ahead of the marker): no post at or after that raw offset was stamped more
  than ``merge_slack_seconds`` before now (``Progress``). Markers go through the log, not
  around it, so a detector reading the partition again after a restart sees them at the
  same places and releases the same posts in the same order.
* **Late posts.** A post stamped before the merge's last release (a marker that promised
  too much: a connector whose post took longer than the slack to reach Kafka, or clocks
  apart) is released in its place in its source, after posts that it preceded; it is
  counted (``late``), never dropped.
* **Bounded memory.** When more than ``max_buffered`` posts wait (a source stalled: its
  worker gone, nobody assigned its partition), the first head goes without waiting and
  is counted (``forced``).

The merge is a pure function of the sequence of records it is given (posts and markers in
``posts.classified.v1`` order), so a detector replaying that partition after a restart
releases the same posts in the same order. Its state (the buffered posts, each source's
last raw offset and bound) is saved with the detector's checkpoint.

With one source it releases each post as it comes.

This is the classic watermark merge of stream processors (a source's *watermark* is the
bound below which it promises no more records; cf. the Dataflow model, Akidau et al.,
VLDB 2015, and Flink's per-partition watermarks, whose minimum drives the operator).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(when: datetime) -> int:
    """``when`` as whole microseconds since the epoch (exact: no float rounding)."""
    return (when - _EPOCH) // _MICROSECOND


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """One post waiting in the merge."""

    stamp: int
    """``ingested_at`` in microseconds since the epoch."""
    key: str
    source: int
    raw_offset: int | None
    """Its offset in the raw partition (None, from before raw offsets were recorded: never
    a copy by offset)."""
    offset: int
    """The record's offset in ``posts.classified.v1``."""
    item: T


@dataclass
class Merge(Generic[T]):
    """The k-way merge of ``sources`` raw partitions (see the module docstring)."""

    sources: int
    max_buffered: int = 50_000
    queues: list[deque[Entry[T]]] = field(init=False)
    taken: list[int] = field(init=False)
    """Per source: the last raw offset taken in (a post at or before it is a copy)."""
    bounds: list[int | None] = field(init=False)
    """Per source: no post still to come was stamped before this (None: no promise yet)."""
    released: tuple[int, str] | None = None
    """``(stamp, key)`` of the last post released."""
    buffered: int = 0
    late: int = 0
    forced: int = 0
    copies: int = 0

    def __post_init__(self) -> None:
        if self.sources < 1:
            raise ValueError("a merge needs at least one source")
        self.queues = [deque() for _ in range(self.sources)]
        self.taken = [-1] * self.sources
        self.bounds = [None] * self.sources

    def push(self, entry: Entry[T]) -> bool:
        """Take ``entry`` in; False (and counted in ``copies``) if it is a copy."""
        s = self._source(entry.source)
        if entry.raw_offset is not None:
            if entry.raw_offset <= self.taken[s]:
                self.copies += 1
                return False
            self.taken[s] = entry.raw_offset
        self.queues[s].append(entry)
        self.buffered += 1
        return True

    def progress(self, source: int, raw_offset: int, not_before: int) -> None:
        """A marker: no post of ``source`` at or after ``raw_offset`` was stamped before
        ``not_before``. Posts before ``raw_offset`` that come later are copies."""
        s = self._source(source)
        self.taken[s] = max(self.taken[s], raw_offset - 1)
        bound = self.bounds[s]
        self.bounds[s] = not_before if bound is None else max(bound, not_before)

    def pop(self) -> list[Entry[T]]:
        """The posts that can go now, in merge order."""
        out: list[Entry[T]] = []
        queues, bounds = self.queues, self.bounds
        if self.sources == 1:  # nothing to wait for
            out.extend(queues[0])
            queues[0].clear()
        while self.buffered > len(out):
            best = -1
            best_order: tuple[int, str, int] | None = None
            waiting = False
            for s in range(self.sources):
                q = queues[s]
                bound = bounds[s]
                if q:
                    head = q[0]
                    order = (head.stamp, head.key, s)
                elif bound is None:
                    waiting = True
                    continue
                else:  # a bound ties before any post stamped at it
                    order = (bound, "", -1)
                if best_order is None or order < best_order:
                    best, best_order = s, order
            if waiting or not queues[best]:
                if self.buffered - len(out) <= self.max_buffered:
                    break
                best = min(
                    (s for s in range(self.sources) if queues[s]),
                    key=lambda s: (queues[s][0].stamp, queues[s][0].key, s),
                )
                self.forced += 1
            out.append(queues[best].popleft())
        self.buffered -= len(out)
        for entry in out:
            at = (entry.stamp, entry.key)
            if self.released is not None and at < self.released:
                self.late += 1
            else:
                self.released = at
        return out

    def blocking(self) -> list[int]:
        """The sources the first post waiting waits on: no post of theirs waits, and no
        bound of theirs is past it (empty while no post waits)."""
        heads = [q[0].stamp for q in self.queues if q]
        if not heads:
            return []
        first = min(heads)
        out = []
        for s, q in enumerate(self.queues):
            bound = self.bounds[s]
            if not q and (bound is None or bound <= first):
                out.append(s)
        return out

    def first_offset(self) -> int | None:
        """The lowest ``posts.classified.v1`` offset among the posts waiting, or None."""
        heads = [q[0].offset for q in self.queues if q]
        return min(heads) if heads else None

    def _source(self, source: int) -> int:
        if not 0 <= source < self.sources:
            raise ValueError(f"raw partition {source} is not one of the {self.sources} merged")
        return source

    # -- persistence (with the detector's checkpoint) ------------------------------------

    def dumps(self, item_bytes: Callable[[T], bytes]) -> bytes:
        """The state as JSON; each waiting post's item as ``item_bytes`` gives it."""
        state = {
            "sources": self.sources,
            "taken": self.taken,
            "bounds": self.bounds,
            "released": list(self.released) if self.released else None,
            "counts": [self.late, self.forced, self.copies],
            "waiting": [
                [e.stamp, e.key, e.source, e.raw_offset, e.offset, item_bytes(e.item).decode()]
                for q in self.queues
                for e in q
            ],
        }
        return json.dumps(state, separators=(",", ":")).encode()

    @classmethod
    def loads(
        cls, data: bytes, sources: int, max_buffered: int, item: Callable[[bytes], T]
    ) -> Merge[T]:
        """A merge of ``sources`` from :meth:`dumps`' bytes (a checkpoint of fewer sources
        gains empty ones; of more sources is refused: their posts would have no order)."""
        state = json.loads(data)
        if state["sources"] > sources:
            raise ValueError(
                f"the checkpoint merges {state['sources']} raw partitions, not {sources}"
            )
        merge: Merge[T] = cls(sources, max_buffered)
        n = state["sources"]
        merge.taken[:n] = state["taken"]
        merge.bounds[:n] = state["bounds"]
        merge.released = tuple(state["released"]) if state["released"] else None  # type: ignore[assignment]
        merge.late, merge.forced, merge.copies = state["counts"]
        for stamp, key, source, raw_offset, offset, value in state["waiting"]:
            merge.queues[source].append(
                Entry(stamp, key, source, raw_offset, offset, item(value.encode()))
            )
            merge.buffered += 1
        return merge
