"""Fixed-memory moving rate statistics per item: a SigniTrend-style hashed sketch.

Each item (a term, a hashtag, a tracked key) is hashed to one cell in each of ``depth``
rows of ``width`` cells. A cell holds the weighted count of the current and the previous
event-time bucket and an exponentially weighted moving average and variance of its past
bucket counts (Schubert, Weiler, Kriegel: *SigniTrend*, KDD 2014). Memory is
``depth * width * 20`` bytes whatever the vocabulary size. Cells are brought up to date
lazily when touched (k empty buckets are folded in closed form), so a bucket boundary
costs nothing and a sparse stream with long gaps is as cheap as a dense one.

An item's count is the smallest of its cells (count-min: collisions only inflate) and its
significance is read from the row where it looks least significant, as in SigniTrend.

:class:`KeyedRates` is the same statistic with one exact cell per key, for the bounded set
of tracked keys (claims, dossiers, stance classes) whose baselines must not collide.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from itertools import compress
from operator import not_
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from streams import _sketchcore, core

T = TypeVar("T", bound=np.generic)
_MEMO_SIZE = 200_000  # items whose hashes are remembered (a memo, not state)
F32 = npt.NDArray[np.float32]
# a cell: the current and previous bucket's weighted count, the EWMA and EWM variance of its
# past bucket counts, and the bucket it was last brought up to date to
CELL = np.dtype(
    [
        ("cur", np.float32),
        ("prev", np.float32),
        ("mean", np.float32),
        ("var", np.float32),
        ("bucket", np.int32),
    ]
)
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


class Run(NamedTuple):
    """The items of one event-time bucket in a batch: those before ``end`` (and after the
    previous run's end), read with that bucket's ``correction`` and ``floor``."""

    end: int
    bucket: int
    correction: float
    floor: float


@dataclass(frozen=True)
class Estimate:
    """Per item: windowed count, its expected value and variance, and z."""

    count: F32
    expected: F32
    var: F32
    z: F32


class RateSketch:
    """``depth`` x ``width`` cells of (current, previous, EWMA, EWM variance, bucket): one
    :data:`CELL` record each."""

    def __init__(self, width: int, depth: int, alpha: float, beta: float) -> None:
        self.width = width
        self.depth = depth
        self.alpha = alpha
        self.beta = beta
        n = width * depth
        # one 20-byte record per cell: a touch reads one cache line, not five arrays
        self.cells = np.zeros(n, CELL)
        self.stacked = False  # its cells a column of a ScaleStack's
        self._rows = (np.arange(depth, dtype=np.int64) * width)[:, None]
        self._cache: dict[str, int] = {}
        self._r = np.arange(depth, dtype=np.int64)[:, None]

    def __getstate__(self) -> dict[str, object]:
        # the hash memo is not state: checkpoints stay small and restore into any version;
        # a stacked sketch's cells are pickled once with its stack's (not copied per column)
        skip = ("_cache", "_r", "cells") if self.stacked else ("_cache", "_r")
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, object]) -> None:
        state.setdefault("stacked", False)  # (pickled before sketches were stacked)
        self.__dict__.update(state)
        self._cache = {}
        self._r = np.arange(self.depth, dtype=np.int64)[:, None]

    @property
    def nbytes(self) -> int:
        return int(self.cells.nbytes)

    # each field of the cells, as a (strided) view that reads and writes them
    @property
    def cur(self) -> F32:
        return self.cells["cur"]  # type: ignore[no-any-return]

    @property
    def prev(self) -> F32:
        return self.cells["prev"]  # type: ignore[no-any-return]

    @property
    def mean(self) -> F32:
        return self.cells["mean"]  # type: ignore[no-any-return]

    @property
    def var(self) -> F32:
        return self.cells["var"]  # type: ignore[no-any-return]

    @property
    def bucket(self) -> I32:
        return self.cells["bucket"]  # type: ignore[no-any-return]

    @staticmethod
    def _hashes(item: str) -> int:
        return fnv1a64(item.encode())

    def locate(self, items: list[str]) -> I64:
        """Cell indices, shape (depth, len(items)): row r's column is
        ``mix64(h + (r + 1) * ROW_STEP) mod width``, h the item's :func:`fnv1a64`.

        Each row's column is a strong mix of the item's 64-bit hash with its own constant, so
        the rows are independent hash functions (two items that share a cell in one row are
        no likelier to share one in another). Double hashing ``h1 + r * h2`` with CRC-32s was
        not: CRC is affine over GF(2), so ``crc32(x, seed) ^ crc32(x)`` depends only on the
        length of x, and a row could fold most of the vocabulary into few columns."""
        if not core.PURE_PYTHON:  # (hashing in C costs less than the memo's lookup)
            out: I64 = _sketchcore.locate(items, self.depth, self.width)
            return out
        cache = self._cache
        hs = list(map(cache.get, items))
        if None in hs:  # hash each new item once (items repeat within a batch)
            new = set(compress(items, map(not_, hs)))
            if len(cache) + len(new) > _MEMO_SIZE:
                cache.clear()
                new = set(items)  # (the batch's remembered items went too)
            new_items = list(new)
            cache.update(zip(new_items, map(self._hashes, new_items), strict=True))
            hs = list(map(cache.__getitem__, items))
        h = np.array(hs, dtype=np.uint64)
        steps = (self._r.astype(np.uint64) + np.uint64(1)) * ROW_STEP
        cols = mix64(h[None, :] + steps) % np.uint64(self.width)
        idx: I64 = cols.astype(np.int64) + self._rows
        return idx

    def _bring_up_to_date(self, flat: I64, bucket: int) -> None:
        stale = flat[self.bucket[flat] < bucket]
        if stale.size == 0:
            return
        a = self.alpha
        k = (bucket - self.bucket[stale]).astype(np.int64)
        x = self.cur[stale]
        # the baseline takes a bucket when it leaves the window (prev + cur), never while
        # the window still holds it: the previous bucket, then (k >= 2) the current one
        m = self.mean[stale]
        v = self.var[stale]
        for y, now in ((self.prev[stale], np.ones(k.shape, bool)), (x, k >= 2)):
            diff = y - m
            m = np.where(now, m + a * diff, m)
            v = np.where(now, (1.0 - a) * (v + a * diff * diff), v)
        # k - 2 empty buckets in closed form: m_j = m r^j, v_j = r^j (v + m^2 (1 - r^j))
        rk = pow_f32(np.float32(1.0 - a), np.maximum(k - 2, 0))
        v = rk * (v + m * m * (1.0 - rk))
        m = m * rk
        self.prev[stale] = np.where(k == 1, x, np.float32(0.0))
        self.cur[stale] = 0.0
        self.mean[stale] = m
        self.var[stale] = v
        self.bucket[stale] = bucket

    def take_back_previous(self) -> None:
        """Take each cell's previous bucket out of its baseline, where a checkpoint of
        layouts 3-5 had put it when it closed (this layout takes a bucket when it leaves
        the window): one EWMA step undone, m = (m' - a y) / (1 - a) and
        v = v' / (1 - a) - a (y - m)^2, in float64, negative rounding residues set to 0.
        A cell whose previous bucket was empty took a 0 (a step of the closed form)."""
        a = self.alpha
        y = self.prev.astype(np.float64)
        m = (self.mean.astype(np.float64) - a * y) / (1.0 - a)
        v = self.var.astype(np.float64) / (1.0 - a) - a * (y - m) ** 2
        self.mean[:] = np.maximum(m, 0.0)
        self.var[:] = np.maximum(v, 0.0)

    def add(self, idx: I64, weights: F32, bucket: int) -> None:
        """Count ``weights`` (one per item) into the current bucket of each item's cells."""
        flat = idx.ravel()
        self._bring_up_to_date(flat, bucket)
        np.add.at(self.cur, flat, self._tile(weights))

    def observe(
        self, idx: I64, weights: F32, bucket: int, correction: float, floor: float
    ) -> Estimate:
        """:meth:`add`, then :meth:`estimate` (one pass over the cells)."""
        return self.observe_batch(idx, weights, None, bucket, correction, floor)

    def observe_batch(
        self,
        idx: I64,
        weights: F32,
        post: I64 | None,
        bucket: int,
        correction: float,
        floor: float,
    ) -> Estimate:
        """:meth:`observe` for the items of several posts of one bucket at once.

        Item ``m`` belongs to post ``post[m]`` (non-decreasing; None = all one post). Each
        item's estimate is the one :meth:`observe` would return had the posts been
        observed one by one: its cells' counts include the weights of its own post and of
        the earlier ones, not the later ones. Counts are sums of 0/1 weights, exact in
        float32, and the rest is the same elementwise arithmetic, so the results are
        bit-identical whatever the batch size.
        """
        if not core.PURE_PYTHON:
            return self.observe_runs(
                idx, weights, post, [Run(idx.shape[1], bucket, correction, floor)]
            )
        n = idx.shape[1]  # (the compiled pass's checks)
        if len(weights) != n:
            raise ValueError("one weight per item")
        if post is not None and len(post) != n:
            raise ValueError("one post per item")
        flat = idx.ravel()
        self._bring_up_to_date(flat, bucket)
        w = self._tile(weights)
        before = self.cur[flat]
        np.add.at(self.cur, flat, w)
        if post is None or post[0] == post[-1]:
            cur = self.cur[flat]
        else:
            cur = before + _added_by_post(flat, self._tile(post), w)
        return self._read(self.prev[flat] + cur, flat, idx.shape, correction, floor)

    def observe_runs(self, idx: I64, weights: F32, post: I64 | None, runs: list[Run]) -> Estimate:
        """:meth:`observe_batch` for the posts of several consecutive buckets at once: the
        items of each run as one call for its bucket would count and read them, the runs in
        order (their ends non-decreasing, the last at the number of items, a run's end at a
        post boundary; more than one run needs ``post``)."""
        if not core.PURE_PYTHON:  # the same, in one compiled pass over the items
            out = _sketchcore.observe_runs(
                self.cells, idx, weights, post, runs, self.alpha, self.beta
            )
            return Estimate(count=out[0], expected=out[1], var=out[2], z=out[3])
        _check_runs(runs, idx.shape[1], post)
        parts, start = [], 0
        for end, bucket, correction, floor in runs:  # (the reference: one call per bucket)
            if end > start:
                at = slice(start, end)
                part_post = None if post is None else post[at]
                parts.append(
                    self.observe_batch(
                        idx[:, at], weights[at], part_post, bucket, correction, floor
                    )
                )
            start = end
        if len(parts) == 1:
            return parts[0]
        none: list[F32] = [np.zeros(0, np.float32)]  # (no items at all)
        return Estimate(
            count=np.concatenate([e.count for e in parts] or none),
            expected=np.concatenate([e.expected for e in parts] or none),
            var=np.concatenate([e.var for e in parts] or none),
            z=np.concatenate([e.z for e in parts] or none),
        )

    def _tile(self, a: npt.NDArray[T]) -> npt.NDArray[T]:
        """One copy of a per-item array for each row."""
        return a if self.depth == 1 else np.concatenate((a,) * self.depth)

    def estimate(self, idx: I64, bucket: int, correction: float, floor: float) -> Estimate:
        """Windowed (previous + current bucket) count of each item vs. its baseline.

        ``correction`` divides the EWMA (bias correction for a short watch); ``floor`` is
        the smallest expected window count.
        """
        flat = idx.ravel()
        self._bring_up_to_date(flat, bucket)
        x = self.prev[flat] + self.cur[flat]
        return self._read(x, flat, idx.shape, correction, floor)

    def _read(
        self, x: F32, flat: I64, shape: tuple[int, ...], correction: float, floor: float
    ) -> Estimate:
        x = x.reshape(shape)
        exp = np.maximum(self.mean[flat].reshape(shape) * (2.0 / correction), floor)
        var = self.var[flat].reshape(shape) * (2.0 / correction)
        z = (x - exp) / (np.sqrt(var) + self.beta)
        if shape[0] == 1:
            return Estimate(count=x[0], expected=exp[0], var=var[0], z=z[0])
        row = np.argmin(z, axis=0)
        cols = np.arange(shape[1])
        # count-min: colliding items only ever inflate a cell, so the smallest is the best
        return Estimate(
            count=x.min(axis=0), expected=exp[row, cols], var=var[row, cols], z=z[row, cols]
        )


ROW_STEP = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: rows' constants far apart
_FNV_OFFSET, _FNV_PRIME, _MASK64 = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def fnv1a64(raw: bytes) -> int:
    """FNV-1a, 64 bits (Fowler, Noll, Vo): the item hash the sketch's rows are mixed from."""
    h = _FNV_OFFSET
    for byte in raw:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


def mix64(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finalizer (Steele, Lea, Flood, OOPSLA 2014), elementwise (uint64 wraps):
    a bijection whose every output bit depends on every input bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: npt.NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return out


def pow_f32(base: np.float32, n: I64) -> F32:
    """``base ** n`` for each exponent ``n >= 0``: square-and-multiply in float64, rounded to
    float32 once.

    Not ``np.power``: libm's ``powf`` and numpy's ``power`` may differ in the last bit, and by
    how much depends on the CPU and the numpy build. A chain of correctly rounded float64
    multiplications gives the same bits everywhere (relative error ~2 n 1e-16, far below
    float32's rounding for any n that leaves a non-negligible factor), and the compiled core
    (``_sketchcore.pow_f32``) does the same chain in the same order.
    """
    result = np.ones(n.shape, np.float64)
    b = np.float64(base)
    rest = n.astype(np.int64)
    while rest.any():
        odd = (rest & 1).astype(bool)
        result[odd] = result[odd] * b
        b = b * b
        rest >>= 1
    return result.astype(np.float32)


def _added_by_post(flat: I64, post: I64, w: F32) -> F32:
    """Per entry: the weight added to its cell by the entries of its own and earlier posts.

    ``post`` is non-decreasing within each row (a cell belongs to one row), so a stable
    sort by cell keeps each cell's entries in post order."""
    n = flat.size
    order = np.argsort(flat, kind="stable")
    cells, posts = flat[order], post[order]
    ws = w[order].astype(np.float64)  # sums of 0/1 weights: exact
    cs = np.cumsum(ws)
    at = np.arange(n)
    new_cell = np.empty(n, dtype=bool)
    new_cell[0] = True
    np.not_equal(cells[1:], cells[:-1], out=new_cell[1:])
    start = np.maximum.accumulate(np.where(new_cell, at, 0))
    run_end = np.empty(n, dtype=bool)
    run_end[-1] = True
    run_end[:-1] = new_cell[1:] | (posts[1:] != posts[:-1])
    end = np.minimum.accumulate(np.where(run_end, at, n)[::-1])[::-1]
    out = np.empty(n, dtype=np.float32)
    out[order] = cs[end] - (cs[start] - ws[start])
    return out


def _check_runs(runs: list[Run], n: int, post: I64 | None) -> None:
    """The checks the compiled pass makes of its runs, with its messages."""
    last_end = 0
    for run in runs:
        end = run[0]
        if not last_end <= end <= n:
            raise ValueError("run ends must be non-decreasing, within the items")
        if 0 < end < n and (post is None or post[end - 1] == post[end]):
            raise ValueError("a run must end at a post boundary")
        last_end = end
    if last_end != n:
        raise ValueError("the last run must end at the number of items")


class ScaleStack:
    """Same-shaped :class:`RateSketch` es, one per time scale, whose cells share one array: an
    item's cell at every scale side by side (a cache line or two where separate arrays cost
    one miss per scale; the sketches are far larger than the cache). Each sketch's ``cells``
    is its column, a view that reads and writes the shared array; the stack pickles the
    array once, and the sketches get their columns back when it is restored."""

    def __init__(self, sketches: list[RateSketch], fresh: bool = False) -> None:
        """``fresh``: the sketches were never counted into (their cells all zero)."""
        first = sketches[0]
        if any(
            (s.width, s.depth, s.beta) != (first.width, first.depth, first.beta) for s in sketches
        ):
            raise ValueError("the stacked sketches must have the same shape and beta")
        self.sketches = sketches
        self.cells = np.zeros((first.width * first.depth, len(sketches)), CELL)
        for column, sketch in enumerate(sketches):
            if not fresh:
                self.cells[:, column] = sketch.cells
        self._link()

    def _link(self) -> None:
        for column, sketch in enumerate(self.sketches):
            sketch.cells = self.cells[:, column]
            sketch.stacked = True

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._link()

    def observe_runs(
        self, idx: I64, weights: F32, post: I64 | None, runs: list[list[Run]]
    ) -> list[Estimate]:
        """:meth:`RateSketch.observe_runs` of the same items on each sketch (``runs``: one
        list per sketch): one compiled pass over the items for all of them."""
        if core.PURE_PYTHON:  # (the reference: one call per sketch)
            return [
                sketch.observe_runs(idx, weights, post, sketch_runs)
                for sketch, sketch_runs in zip(self.sketches, runs, strict=True)
            ]
        alphas = [sketch.alpha for sketch in self.sketches]
        beta = self.sketches[0].beta
        out = _sketchcore.observe_scales(self.cells, idx, weights, post, runs, alphas, beta)
        return [Estimate(count=o[0], expected=o[1], var=o[2], z=o[3]) for o in out]


class KeyedRates(RateSketch):
    """One exact cell per key (a bounded set: the watchlist's claims, dossiers, stances)."""

    def __init__(self, capacity: int, alpha: float, beta: float) -> None:
        super().__init__(capacity, 1, alpha, beta)
        self.slots: dict[str, int] = {}

    def locate(self, items: list[str]) -> I64:
        out = np.empty((1, len(items)), dtype=np.int64)
        for j, key in enumerate(items):
            slot = self.slots.get(key)
            if slot is None:
                # past capacity, keys share cells (hashed): still bounded, merely less exact
                slot = len(self.slots) if len(self.slots) < self.width else None
                if slot is None:
                    slot = zlib.crc32(key.encode()) % self.width
                else:
                    self.slots[key] = slot
            out[0, j] = slot
        return out
