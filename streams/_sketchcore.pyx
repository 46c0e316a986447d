# cython: language_level=3
# distutils: extra_compile_args = -ffp-contract=off
"""Compiled twins of :class:`streams.sketch.RateSketch`'s hot path: ``locate`` and
``observe_runs`` (bring cells up to date, add, read, the least significant row), and
``observe_scales``, the same for all time scales' sketches at once (``ScaleStack``).

Bit-identical to the numpy reference in float32 on any CPU and numpy: every operation is an
IEEE-754 basic operation (+, -, *, /, sqrt: correctly rounded, so the same everywhere) done
in the same order on float32 operands as numpy does it (a Python float meeting a float32 array
is cast to float32 first), and gcc must not fuse a multiply and an add (``-ffp-contract=off``
above). No libm function is used: ``powf`` and numpy's ``power`` differ in the last bit on
some CPU/numpy pairs, so the decay factor is :func:`pow_f32` here and
``streams.sketch.pow_f32`` there, the same square-and-multiply. Checked against the reference
in tests/test_core_sketch.py.
"""

import numpy as np

from libc.math cimport sqrtf
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc

from streams._hashcore cimport fnv1a64, mix64, utf8

_NO_POSTS = np.zeros(0, dtype=np.int64)


def locate(list items, Py_ssize_t depth, Py_ssize_t width):
    """``RateSketch.locate``: cell indices, shape (depth, len(items)); row r's column is
    mix64(h + (r + 1) * ROW_STEP) mod width, h the item's FNV-1a 64 hash."""
    cdef Py_ssize_t n = len(items), j, r, size
    out = np.empty((depth, n), dtype=np.int64)
    cdef int64_t[:, ::1] idx = out
    cdef const uint8_t* raw
    cdef uint64_t h
    for j in range(n):
        raw = utf8(<str?> items[j], &size)
        h = fnv1a64(raw, size)
        for r in range(depth):
            idx[r, j] = <int64_t> (
                mix64(h + <uint64_t> (r + 1) * <uint64_t> 0x9E3779B97F4A7C15u) % <uint64_t> width
            ) + r * width
    return out


cdef inline float pow_f32(float base, int64_t n) noexcept nogil:
    """base ** n (n >= 0) by square-and-multiply in float64, rounded to float32 once:
    ``streams.sketch.pow_f32``."""
    cdef double result = 1.0, b = base
    while n > 0:
        if n & 1:
            result = result * b
        b = b * b
        n >>= 1
    return <float> result


def pow_f32_many(float base, const int64_t[::1] n):
    """:func:`pow_f32` of each exponent (for the tests: the twin of the numpy one)."""
    out = np.empty(n.shape[0], dtype=np.float32)
    cdef float[::1] o = out
    cdef Py_ssize_t i
    for i in range(n.shape[0]):
        o[i] = pow_f32(base, n[i])
    return out


cdef extern from *:
    # a hint to the CPU that an address will be read and written soon (no effect on results)
    void __builtin_prefetch(const void* addr, int rw, int locality) noexcept nogil


cdef packed struct Cell:  # streams.sketch.CELL
    float cur
    float prev
    float mean
    float var
    int32_t bucket


cdef enum:
    _DECAYS = 1024  # decay factors remembered per scale and call (keep ** n, n < _DECAYS)


cdef inline float _decay(float* decays, float keep, int64_t n) noexcept nogil:
    """:func:`pow_f32` ``(keep, n)``, remembered in ``decays`` (one entry per n below
    _DECAYS, negative until known): the same float, worked out once per call."""
    if n >= _DECAYS:
        return pow_f32(keep, n)
    if decays[n] < 0:
        decays[n] = pow_f32(keep, n)
    return decays[n]


cdef inline void _refresh(
    Cell* cell, int64_t k, float a, float keep, float* decays
) noexcept nogil:
    """``RateSketch._bring_up_to_date`` of one cell, ``k`` buckets behind: the baseline
    takes the previous bucket, then (k >= 2) the current one and k - 2 empty ones (folded
    in closed form). ``a`` is alpha and ``keep`` 1 - alpha, as float32; ``decays`` the
    powers of ``keep`` known so far (:func:`_decay`)."""
    cdef float one = 1.0  # (a float32 1: a bare 1.0 would make the arithmetic double)
    cdef float x = cell.cur, m = cell.mean, v = cell.var, diff, rk
    diff = cell.prev - m
    m = m + a * diff
    v = keep * (v + a * diff * diff)
    if k >= 2:
        diff = x - m
        m = m + a * diff
        v = keep * (v + a * diff * diff)
    rk = _decay(decays, keep, k - 2 if k >= 2 else 0)
    v = rk * (v + m * m * (one - rk))
    m = m * rk
    cell.prev = x if k == 1 else 0
    cell.cur = 0
    cell.mean = m
    cell.var = v


def observe_runs(cells, idx, weights, post, list runs, double alpha, double beta):
    """``RateSketch.observe_runs`` on the sketch's cells (changed in place): returns
    rows count, expected, var and z (float32, shape (4, items)); :func:`observe_scales`
    with one scale.

    Walks the items post by post (``post``: each item's post, non-decreasing, or None for
    one post): brings a cell up to date to its run's bucket when first touched there, adds
    a post's weights, then reads its items, so an item's count holds its own post and the
    earlier ones (one pass: a cell is still in cache when read). ``runs``: (end, bucket,
    correction, floor) per bucket, in order. Counts are sums of 0/1 weights (exact below
    2**24).
    """
    return observe_scales(cells[:, None], idx, weights, post, [runs], [alpha], beta)[0]


def observe_scales(
    Cell[:, :] cells,
    const int64_t[:, ::1] idx,
    const float[::1] weights,
    post,
    list runs,
    list alphas,
    double beta,
):
    """:func:`observe_runs` at every time scale in one pass: ``cells`` holds one column per
    scale (``streams.sketch.ScaleStack``: an item's cells at all scales side by side, a cache
    line or two instead of one per scale), ``runs`` and ``alphas`` one entry per scale.
    Returns shape (scales, 4, items): per scale what one call on its column alone returns;
    per cell the same operations in the same order (a post's weights added row by row, item
    by item, then its items read), so the same floats."""
    cdef Py_ssize_t depth = idx.shape[0], n = idx.shape[1], nsc = cells.shape[1]
    cdef Py_ssize_t r, j, j0, j1, s, ncells = cells.shape[0], ri, total = 0
    cdef const int64_t[::1] post_of = _NO_POSTS
    cdef bint by_post = post is not None and n > 0
    if weights.shape[0] != n:
        raise ValueError("one weight per item")
    if len(runs) != nsc or len(alphas) != nsc:
        raise ValueError("one list of runs and one alpha per scale")
    for r in range(depth):
        for j in range(n):
            if not 0 <= idx[r, j] < ncells:
                raise IndexError("cell index out of range")
    if by_post:
        post_of = post
        if post_of.shape[0] != n:
            raise ValueError("one post per item")
        by_post = post_of[0] != post_of[n - 1]
    for s in range(nsc):
        total += max(len(runs[s]), 1)
    # per scale s its runs at [first[s], first[s + 1]): end, bucket, and float32 operands
    cdef int64_t* run_end = <int64_t*> malloc(total * sizeof(int64_t))
    cdef int32_t* run_bucket = <int32_t*> malloc(total * sizeof(int32_t))
    cdef float* run_scale = <float*> malloc(total * sizeof(float))
    cdef float* run_floor = <float*> malloc(total * sizeof(float))
    cdef Py_ssize_t* first = <Py_ssize_t*> malloc((nsc + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* at = <Py_ssize_t*> malloc(max(nsc, 1) * sizeof(Py_ssize_t))
    cdef float* a = <float*> malloc(max(nsc, 1) * sizeof(float))
    cdef float* keep = <float*> malloc(max(nsc, 1) * sizeof(float))
    cdef int32_t* bkt = <int32_t*> malloc(max(nsc, 1) * sizeof(int32_t))
    cdef float* scale = <float*> malloc(max(nsc, 1) * sizeof(float))
    cdef float* fl = <float*> malloc(max(nsc, 1) * sizeof(float))
    cdef float* decays = <float*> malloc(max(nsc, 1) * _DECAYS * sizeof(float))
    cdef Py_ssize_t end, last_end, k = 0, d
    cdef double correction, floor, alpha
    cdef float[:, :, ::1] out
    cdef float b = <float> beta
    cdef float x, e, vv, zz
    cdef float best_z = 0, best_x = 0, best_e = 0, best_v = 0
    cdef Cell* cell
    try:
        if not (run_end and run_bucket and run_scale and run_floor and first and at and a
                and keep and bkt and scale and fl and decays):
            raise MemoryError()
        for d in range(nsc * _DECAYS):
            decays[d] = -1  # (none known yet)
        for s in range(nsc):
            alpha = alphas[s]
            a[s], keep[s] = <float> alpha, <float> (1.0 - alpha)
            first[s] = k
            last_end = 0
            for run in runs[s]:
                end, run_bucket[k], correction, floor = run
                if not last_end <= end <= n:
                    raise ValueError("run ends must be non-decreasing, within the items")
                if 0 < end < n and not (by_post and post_of[end - 1] != post_of[end]):
                    raise ValueError("a run must end at a post boundary")
                run_end[k] = end
                run_scale[k], run_floor[k] = <float> (2.0 / correction), <float> floor
                last_end = end
                k += 1
            if last_end != n:
                raise ValueError("the last run must end at the number of items")
        first[nsc] = k
        out_a = np.empty((nsc, 4, n), dtype=np.float32)
        out = out_a
        with nogil:
            for s in range(nsc):
                at[s] = first[s]
            j0 = 0
            while j0 < n:
                j1 = n
                for s in range(nsc):  # each scale's run holding item j0 (empty runs skipped)
                    while run_end[at[s]] <= j0:
                        at[s] += 1
                    ri = at[s]
                    bkt[s], scale[s], fl[s] = run_bucket[ri], run_scale[ri], run_floor[ri]
                    if run_end[ri] < j1:
                        j1 = run_end[ri]
                if by_post:
                    j1 = j0 + 1
                    while j1 < n and post_of[j1] == post_of[j0]:
                        j1 += 1
                # the cells these items touch, asked for at once: the sketch is far larger
                # than the cache, and misses asked for together overlap (the first 64 items
                # at most, a post's worth)
                for r in range(depth):
                    for j in range(j0, min(j1, j0 + 64)):
                        __builtin_prefetch(&cells[idx[r, j], 0], 1, 3)
                        __builtin_prefetch(&cells[idx[r, j], nsc - 1], 1, 3)
                for r in range(depth):
                    for j in range(j0, j1):
                        for s in range(nsc):
                            cell = &cells[idx[r, j], s]
                            if cell.bucket < bkt[s]:  # first touch: up to date
                                _refresh(
                                    cell, bkt[s] - cell.bucket, a[s], keep[s],
                                    decays + s * _DECAYS,
                                )
                                cell.bucket = bkt[s]
                            cell.cur += weights[j]
                for j in range(j0, j1):
                    for s in range(nsc):
                        for r in range(depth):
                            cell = &cells[idx[r, j], s]
                            x = cell.prev + cell.cur
                            e = cell.mean * scale[s]
                            if e < fl[s]:  # np.maximum (a NaN stays NaN)
                                e = fl[s]
                            vv = cell.var * scale[s]
                            zz = (x - e) / (sqrtf(vv) + b)
                            if r == 0:
                                best_x, best_e, best_v, best_z = x, e, vv, zz
                            else:
                                if x < best_x:  # count-min
                                    best_x = x
                                # np.argmin: the first smallest, or the first NaN
                                if best_z == best_z and (zz < best_z or zz != zz):
                                    best_e, best_v, best_z = e, vv, zz
                        out[s, 0, j] = best_x
                        out[s, 1, j] = best_e
                        out[s, 2, j] = best_v
                        out[s, 3, j] = best_z
                j0 = j1
        return out_a
    finally:
        free(run_end)
        free(run_bucket)
        free(run_scale)
        free(run_floor)
        free(first)
        free(at)
        free(a)
        free(keep)
        free(bkt)
        free(scale)
        free(fl)
        free(decays)
