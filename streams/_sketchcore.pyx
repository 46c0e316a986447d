# cython: language_level=3
# distutils: extra_compile_args = -ffp-contract=off
"""Compiled twins of :class:`streams.sketch.RateSketch`'s hot path: ``locate`` and
``observe_batch`` (bring cells up to date, add, read, the least significant row).

Bit-identical to the numpy reference in float32: every operation is the one numpy does,
in the same order, on float32 operands (a Python float meeting a float32 array is cast to
float32 first; ``np.power`` on float32 is ``powf``), and gcc must not fuse a multiply and an
add (``-ffp-contract=off`` above). Checked against the reference in tests/test_core_sketch.py.
"""

import numpy as np

from libc.math cimport powf, sqrtf
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

from streams._hashcore cimport packed_hash, utf8


def locate(list items, Py_ssize_t depth, Py_ssize_t width):
    """``RateSketch.locate``: cell indices, shape (depth, len(items)); row r's column is
    (h1 + r * h2) mod width, h1 and h2 the item's two hashes (``RateSketch._hashes``)."""
    cdef Py_ssize_t n = len(items), j, r, size
    out = np.empty((depth, n), dtype=np.int64)
    cdef int64_t[:, ::1] idx = out
    cdef const uint8_t* raw
    cdef uint64_t h, h1, h2
    for j in range(n):
        raw = utf8(<str?> items[j], &size)
        h = packed_hash(raw, size)
        h1 = h & 0xFFFFFFFFu
        h2 = h >> 32
        for r in range(depth):
            idx[r, j] = <int64_t> ((h1 + <uint64_t> r * h2) % <uint64_t> width) + r * width
    return out


cdef inline void _refresh(
    float* cur, float* prev, float* mean, float* var, int64_t c, float k, float a, float keep
) noexcept nogil:
    """``RateSketch._bring_up_to_date`` of cell c, ``k`` buckets behind (k - 1 of them
    empty, folded in closed form). ``a`` is alpha and ``keep`` 1 - alpha, as float32."""
    cdef float one = 1.0  # (a float32 1: a bare 1.0 would make the arithmetic double)
    cdef float x = cur[c], m = mean[c], diff, v, rk
    diff = x - m
    m = m + a * diff
    v = keep * (var[c] + a * diff * diff)
    rk = powf(keep, k - one)
    v = rk * (v + m * m * (one - rk))
    m = m * rk
    prev[c] = x if k == one else 0
    cur[c] = 0
    mean[c] = m
    var[c] = v


def observe_batch(
    float[::1] cur,
    float[::1] prev,
    float[::1] mean,
    float[::1] var,
    int32_t[::1] cell_bucket,
    const int64_t[:, ::1] idx,
    const float[::1] weights,
    post,
    int32_t bucket,
    double alpha,
    double beta,
    double correction,
    double floor,
):
    """``RateSketch.observe_batch`` on the sketch's arrays (changed in place): returns
    rows count, expected, var and z (float32, shape (4, items)).

    Walks the items post by post (``post``: each item's post, non-decreasing, or None for
    one post): brings a cell up to date when first touched, adds a post's weights, then
    reads its items, so an item's count holds its own post and the earlier ones (one pass:
    a cell is still in cache when read). Counts are sums of 0/1 weights (exact below 2**24).
    """
    cdef Py_ssize_t depth = idx.shape[0], n = idx.shape[1]
    cdef Py_ssize_t r, j, j0, j1, cells = cur.shape[0]
    cdef int64_t c
    cdef const int64_t[::1] post_of
    cdef bint by_post = post is not None and n > 0
    # (no bounds checks below: the inputs are checked here)
    if not (prev.shape[0] == mean.shape[0] == var.shape[0] == cell_bucket.shape[0] == cells):
        raise ValueError("the sketch's arrays differ in size")
    if weights.shape[0] != n:
        raise ValueError("one weight per item")
    for r in range(depth):
        for j in range(n):
            if not 0 <= idx[r, j] < cells:
                raise IndexError("cell index out of range")
    if by_post:
        post_of = post
        if post_of.shape[0] != n:
            raise ValueError("one post per item")
        by_post = post_of[0] != post_of[n - 1]
    out_a = np.empty((4, n), dtype=np.float32)  # (one array: a call costs less)
    cdef float[:, ::1] out = out_a
    # float32 operands, as numpy casts a Python float meeting a float32 array
    cdef float a = <float> alpha
    cdef float keep = <float> (1.0 - alpha)
    cdef float scale = <float> (2.0 / correction)
    cdef float fl = <float> floor
    cdef float b = <float> beta
    cdef float k, x, e, vv, zz
    cdef float best_z = 0, best_x = 0, best_e = 0, best_v = 0
    cdef float* cur_p = &cur[0]
    cdef float* prev_p = &prev[0]
    cdef float* mean_p = &mean[0]
    cdef float* var_p = &var[0]
    with nogil:
        j0 = 0
        while j0 < n:
            j1 = n
            if by_post:
                j1 = j0 + 1
                while j1 < n and post_of[j1] == post_of[j0]:
                    j1 += 1
            for r in range(depth):
                for j in range(j0, j1):
                    c = idx[r, j]
                    if cell_bucket[c] < bucket:  # first touch: up to date (see _refresh)
                        k = <float> (bucket - cell_bucket[c])
                        _refresh(cur_p, prev_p, mean_p, var_p, c, k, a, keep)
                        cell_bucket[c] = bucket
                    cur[c] += weights[j]
            for j in range(j0, j1):
                for r in range(depth):
                    c = idx[r, j]
                    x = prev[c] + cur[c]
                    e = mean[c] * scale
                    if e < fl:  # np.maximum (a NaN stays NaN)
                        e = fl
                    vv = var[c] * scale
                    zz = (x - e) / (sqrtf(vv) + b)
                    if r == 0:
                        best_x, best_e, best_v, best_z = x, e, vv, zz
                    else:
                        if x < best_x:  # count-min
                            best_x = x
                        # np.argmin: the first smallest, or the first NaN
                        if best_z == best_z and (zz < best_z or zz != zz):
                            best_e, best_v, best_z = e, vv, zz
                out[0, j] = best_x
                out[1, j] = best_e
                out[2, j] = best_v
                out[3, j] = best_z
            j0 = j1
    return out_a
