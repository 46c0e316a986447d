"""A bounded memory of recently seen post keys (pure logic).

The detector counts each post once. After a worker crash the ingest stage re-emits the
posts whose raw offsets it had not committed yet, so ``posts.classified.v1`` can carry a
post twice (at two offsets); counting it again would shift the baselines and could change
which alerts fire. Duplicates from a restart arrive within the uncommitted window, so the
last ``capacity`` keys are enough; keys are kept as 64-bit digests (stable across
processes, unlike ``hash()``) in insertion order, oldest evicted first.
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
