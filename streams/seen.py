"""A bounded memory of recently seen post keys (pure logic).

The detector counts each post once, and it is the only place that does: ingest is
stateless, so ``posts.classified.v1`` carries every copy of a post (a replay re-run of a
file, a connector resending, ingest re-emitting after a crash), at another offset. Counting
a copy again would shift the baselines and could change which alerts fire.

Two rules together make that exact. A copy more than ``max_lateness_seconds`` behind the
detector's current bucket is not counted anyway (too late). A more recent one is caught
here, as long as its key is still among the last ``capacity`` keys counted, i.e. as long
as the partition counted fewer than ``capacity`` posts in ``max_lateness_seconds`` +
``bucket_seconds`` of event time (the longest a post can be behind and still count). With
the defaults (20,000 keys, 1800 + 300 s) that is a sustained 9.5 posts a second per
partition; the busiest 2,100 s of the replay streams in ``data/replay`` hold at most 352
posts (Queensland floods), so a re-run of a whole file is caught by the lateness rule for
its old posts and by this memory for its recent ones. A faster stream needs a larger
``detector.seen_posts`` (each 20,000 keys add about 200 KB to a checkpoint) or more
partitions. The memory is saved in the detector's checkpoint, so a restart keeps it.

Keys are kept as 64-bit digests (stable across processes, unlike ``hash()``) in insertion
order, oldest evicted first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict


class SeenPosts:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._keys: OrderedDict[int, None] = OrderedDict()

    @staticmethod
    def _digest(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")

    def resize(self, capacity: int) -> None:
        """Remember the last ``capacity`` keys from now on (fewer: the oldest go now)."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        while len(self._keys) > capacity:
            self._keys.popitem(last=False)

    def add(self, key: str) -> bool:
        """Remember ``key``; False if it was already among the last ``capacity`` keys."""
        d = self._digest(key)
        if d in self._keys:
            return False
        self._keys[d] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: str) -> bool:
        return self._digest(key) in self._keys
