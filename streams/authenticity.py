"""Who is really talking: near-duplicate clusters and repeat authors, in bounded memory.

A copy-paste campaign or a retweet storm is one voice, and one account posting the same
term ten times is one person: both are discounted before counting, so neither can make a
burst alone.

- :class:`NearDuplicates`: MinHash signatures (Broder 1997) of each post's content words
  with banded LSH over a sliding event-time window; a post whose estimated Jaccard
  similarity to a post in the window reaches ``threshold`` joins that post's cluster.
  Signatures are computed with numpy (one vectorised pass per batch of posts); the measured cost of
  ``datasketch`` here was 0.4-0.5 ms per post, 20x over the detector's whole budget.
- :class:`AuthorRepeats`: a fixed hashed array remembering, per (author, item), the last
  event-time bucket it was counted in (a collision can only discount, never inflate).

The batch methods here are the readable reference; unless ``streams.core.PURE_PYTHON``, they
run their compiled twins in streams/_authcore.pyx (same results, same state).
"""

from __future__ import annotations

import zlib
from collections import deque
from itertools import accumulate, chain, repeat

import numpy as np

from streams import _authcore, core

_MIN_WORDS = 3  # a post with fewer content words is too short to tell a copy from a coincidence


class NearDuplicates:
    def __init__(
        self,
        window_seconds: float,
        num_perm: int = 64,
        bands: int = 8,
        max_posts: int = 50_000,
        seed: int = 7,
    ) -> None:
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        rng = np.random.default_rng(seed)
        # multiply-shift hashing (Dietzfelbinger): odd 64-bit a, wrap-around products
        self._a = rng.integers(0, 1 << 63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.integers(0, 1 << 63, num_perm, dtype=np.uint64)
        self.bands = bands
        self.rows = num_perm // bands
        self.window = window_seconds
        self.max_posts = max_posts
        # band key -> cluster id of the newest post holding it; expiry queue of (ts, keys)
        self._index: dict[bytes, str] = {}
        self._queue: deque[tuple[float, list[bytes]]] = deque()

    def signature(self, words: list[str]) -> np.ndarray:
        sig: np.ndarray = self.signatures([words])[0]
        return sig

    def signatures(self, shingles: list[list[str]]) -> np.ndarray:
        """One signature row per non-empty word list, all in one vectorised pass."""
        n = sum(len(ws) for ws in shingles)
        h = np.fromiter(
            map(zlib.crc32, map(str.encode, chain.from_iterable(shingles))), np.uint64, n
        )
        starts = list(accumulate((len(ws) for ws in shingles[:-1]), initial=0))
        hashed = (h[:, None] * self._a + self._b) >> np.uint64(32)
        sigs: np.ndarray = np.minimum.reduceat(hashed, starts, axis=0)
        return sigs

    def post_keys(self, contents: list[list[str]]) -> list[list[bytes] | None]:
        """Per post (its content words): its band keys, or None when too short to compare."""
        if not core.PURE_PYTHON:  # (a signature is a min over words: order and repeats
            # do not change it, so the twin hashes the words as they come)
            return _authcore.post_keys(contents, self._a, self._b, self.bands, _MIN_WORDS)
        shingles = list(map(self.shingles, contents))
        some = [s for s in shingles if s is not None]
        keys = iter(self.band_keys(self.signatures(some)) if some else ())
        return [None if s is None else next(keys) for s in shingles]

    def join_many(
        self, post_ids: list[str], keys: list[list[bytes] | None], ts: list[float]
    ) -> list[str | None]:
        """:meth:`join_keys` for several posts in order."""
        if not core.PURE_PYTHON:
            q, index = self._queue, self._index
            return _authcore.join_many(index, q, self.window, self.max_posts, post_ids, keys, ts)
        return [self.join_keys(*args) for args in zip(post_ids, keys, ts, strict=True)]

    def _expire(self, ts: float) -> None:
        q = self._queue
        while q and (q[0][0] < ts - self.window or len(q) > self.max_posts):
            _, keys = q.popleft()
            for k in keys:
                self._index.pop(k, None)

    @staticmethod
    def shingles(words: list[str]) -> list[str] | None:
        """What a post's signature is made of; None when it is too short to compare."""
        if len(words) < _MIN_WORDS:
            return None
        return sorted(set(words))

    def cluster(self, post_id: str, words: list[str], ts: float) -> str | None:
        """The cluster this post joins (the id of an earlier similar post), or None."""
        shingles = self.shingles(words)
        sig = None if shingles is None else self.signatures([shingles])[0]
        return self.join(post_id, sig, ts)

    def join(self, post_id: str, sig: np.ndarray | None, ts: float) -> str | None:
        """:meth:`cluster` with the signature computed (None: too short, joins nothing)."""
        return self.join_keys(post_id, None if sig is None else self.band_keys(sig[None])[0], ts)

    def band_keys(self, sigs: np.ndarray) -> list[list[bytes]]:
        """Per signature row, its LSH band keys: the band's number, then its rows' bytes."""
        m = len(sigs)
        if m <= 8:  # (for a few, a numpy pass costs more than it saves)
            out = []
            for sig in sigs:
                raw_ = sig.tobytes()
                step = len(raw_) // self.bands
                out.append(
                    [bytes([i]) + raw_[i * step : (i + 1) * step] for i in range(self.bands)]
                )
            return out
        raw = np.ascontiguousarray(sigs).view(np.uint8).reshape(m, self.bands, -1)
        keyed = np.empty((m, self.bands, 1 + raw.shape[2]), dtype=np.uint8)
        keyed[:, :, 0] = np.arange(self.bands, dtype=np.uint8)
        keyed[:, :, 1:] = raw
        buf, size = keyed.tobytes(), keyed.shape[2]
        keys = [buf[at : at + size] for at in range(0, len(buf), size)]
        return [keys[i : i + self.bands] for i in range(0, len(keys), self.bands)]

    def join_keys(self, post_id: str, keys: list[bytes] | None, ts: float) -> str | None:
        """:meth:`join` with the band keys computed (None: too short, joins nothing)."""
        self._expire(ts)
        if keys is None:
            return None
        # one agreeing band of 8 rows: P(match) is 0.13 at Jaccard 0.6, 0.77 at 0.8, 0.99
        # at 0.9 -- retweets, copy-paste and templated spam, not posts on the same subject
        index = self._index
        found = None
        for found in map(index.get, keys):
            if found is not None:
                break
        index.update(zip(keys, repeat(found or post_id)))
        self._queue.append((ts, keys))
        return found


class AuthorRepeats:
    def __init__(self, size: int = 1 << 18) -> None:
        self.size = size
        self.last = np.full(size, -1, dtype=np.int32)

    def fresh(self, author: str, items: list[str], bucket: int) -> np.ndarray:
        """Boolean per item: this author has not been counted on it in this or the last bucket.

        Marks them counted now.
        """
        return self.fresh_many([(author, items)], bucket)

    def fresh_many(
        self,
        posts: list[tuple[str, list[str]]],
        bucket: int | np.ndarray,
        post: np.ndarray | None = None,
    ) -> np.ndarray:
        """:meth:`fresh` for (author, items) of several posts, in order, concatenated: an
        item an earlier post of the batch counted is not fresh.

        ``bucket`` is the posts' bucket, or an array of one per item (non-decreasing in the
        batch order: posts of several buckets in one call, as one call per bucket would count
        them).
        ``post`` gives each item's place in the batch order (default: the index of its
        unit), for units passed in another order: equal places count as one unit.
        """
        if not core.PURE_PYTHON:
            fresh_: np.ndarray = _authcore.fresh_many(self.last, posts, bucket, post)
            return fresh_
        size = self.size
        n = sum(len(items) for _, items in posts)
        crc, enc = zlib.crc32, str.encode
        idx = (
            np.fromiter(
                chain.from_iterable(
                    map(crc, map(enc, items), repeat(crc(enc(author) + b"\x00"), len(items)))
                    for author, items in posts
                ),
                dtype=np.int64,
                count=n,
            )
            % size
        )
        if post is None:
            post = np.repeat(np.arange(len(posts)), [len(items) for _, items in posts])
        elif len(post) != n:  # (the compiled twin's checks)
            raise ValueError("one post place per item")
        if isinstance(bucket, np.ndarray) and len(bucket) != n:
            raise ValueError("one bucket per item")
        if not isinstance(bucket, np.ndarray):  # (one bucket)
            return self._fresh_in(idx, post, int(bucket))
        fresh = np.empty(n, dtype=bool)
        for b in np.unique(bucket):  # (ascending: a later bucket sees the earlier ones)
            at = np.flatnonzero(bucket == b)
            fresh[at] = self._fresh_in(idx[at], post[at], int(b))
        return fresh

    def _fresh_in(self, idx: np.ndarray, post: np.ndarray, bucket: int) -> np.ndarray:
        """The reference for the items of one bucket (cells ``idx``, places ``post``)."""
        n = idx.size
        fresh: np.ndarray = self.last[idx] < bucket - 1
        if n > 1 and post.min() != post.max():  # (else no earlier post)
            order = np.argsort(idx * (int(post.max()) + 1) + post)  # by cell, then post
            cells = idx[order]
            new = np.empty(n, dtype=bool)
            new[:1] = True
            np.not_equal(cells[1:], cells[:-1], out=new[1:])
            first = np.empty(n, dtype=np.int64)
            first[order] = post[order][np.maximum.accumulate(np.where(new, np.arange(n), 0))]
            fresh &= post == first
        self.last[idx] = bucket
        return fresh
