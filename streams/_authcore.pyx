# cython: language_level=3
"""Compiled twins of :mod:`streams.authenticity`'s hot paths: ``AuthorRepeats.fresh_many``,
``NearDuplicates`` band keys (MinHash signatures cut into LSH bands) and their joining.

Identical to the Python reference (checked in tests/test_core_authenticity.py).
"""

import numpy as np

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from streams._hashcore cimport crc32_bytes, utf8


def fresh_many(int32_t[::1] last, list posts, bucket, post):
    """``AuthorRepeats.fresh_many`` on its ``last`` array (changed in place).

    Item m's cell is crc32(item, crc32(author + "\\0")) mod len(last); it is fresh when its
    cell was last counted before the bucket before its own (``bucket``: one for all, or an
    array of one per item), by an earlier post of the batch (by ``post``, default each unit's index) or
    before the batch."""
    cdef Py_ssize_t size = last.shape[0], n = 0, m, u, length, i, g, t
    cdef uint32_t seed
    cdef const uint8_t* raw
    cdef uint8_t zero = 0
    for _, items in posts:
        n += len(<list> items)
    cell_a = np.empty(n, dtype=np.int64)
    place_a = np.empty(n, dtype=np.int64)
    fresh_a = np.empty(n, dtype=np.uint8)
    cdef int64_t[::1] cell = cell_a, place = place_a, order
    cdef uint8_t[::1] fresh = fresh_a
    cdef int32_t[::1] bkt
    m = 0
    for u in range(len(posts)):
        author, items = posts[u]
        raw = utf8(author, &length)
        seed = crc32_bytes(raw, length, 0)
        seed = crc32_bytes(&zero, 1, seed)
        for item in <list> items:
            raw = utf8(item, &length)
            cell[m] = crc32_bytes(raw, length, seed) % size
            place[m] = u
            m += 1
    cdef bint one_bucket = not isinstance(bucket, np.ndarray)
    cdef int32_t b = 0
    if one_bucket:
        b = bucket
        bkt = np.empty(0, dtype=np.int32)  # (not read)
    else:
        bkt = np.ascontiguousarray(bucket, dtype=np.int32)
        if bkt.shape[0] != n:
            raise ValueError("one bucket per item")
    if post is not None:
        place_a = np.asarray(post, dtype=np.int64)
        if place_a.shape != (n,):
            raise ValueError("one post place per item")
        place = place_a
        order = np.argsort(place_a, kind="stable")
    else:  # (the units' order is the places')
        order = np.arange(n, dtype=np.int64)
    with nogil:
        # place by place: its items read ``last`` (before any of them marks it), then mark
        i = 0
        while i < n:
            g = i + 1
            while g < n and place[order[g]] == place[order[i]]:
                g += 1
            for t in range(i, g):
                m = order[t]
                if not one_bucket:
                    b = bkt[m]
                fresh[m] = <int64_t> last[cell[m]] < <int64_t> b - 1
            for t in range(i, g):
                m = order[t]
                if not one_bucket:
                    b = bkt[m]
                last[cell[m]] = b
            i = g
    return fresh_a.view(bool)


def post_keys(
    list contents,
    const uint64_t[::1] a,
    const uint64_t[::1] b,
    Py_ssize_t bands,
    Py_ssize_t min_words,
):
    """``NearDuplicates.post_keys``: per post's words, None when fewer than ``min_words``,
    else its MinHash signature -- min over its words of (crc32(word) * a + b) >> 32 (uint64,
    wrapping; the min of the distinct words in any order) -- cut into ``bands`` keys: the
    band's number, then its rows' bytes (native order)."""
    cdef Py_ssize_t perms = a.shape[0], rows = perms // bands
    cdef Py_ssize_t size = 1 + 8 * rows, p, i, length
    cdef uint64_t h, v
    cdef const uint8_t* raw
    cdef list out = [], keys
    if perms == 0 or b.shape[0] != perms or rows * bands != perms:
        raise ValueError("a and b: one per permutation, a whole number of rows per band")
    cdef const uint64_t* a_p = &a[0]
    cdef const uint64_t* b_p = &b[0]
    cdef uint64_t* sig = <uint64_t*> malloc(perms * sizeof(uint64_t))
    cdef uint8_t* key = <uint8_t*> malloc(size)
    if sig == NULL or key == NULL:
        free(sig)
        free(key)
        raise MemoryError()
    try:
        for words in contents:
            if len(<list> words) < min_words or not words:
                out.append(None)
                continue
            for p in range(perms):
                sig[p] = 0xFFFFFFFFFFFFFFFFu
            for word in <list> words:
                raw = utf8(word, &length)
                h = crc32_bytes(raw, length, 0)
                for p in range(perms):
                    v = (h * a_p[p] + b_p[p]) >> 32
                    if v < sig[p]:
                        sig[p] = v
            keys = []
            for i in range(bands):
                key[0] = <uint8_t> i
                memcpy(key + 1, sig + i * rows, 8 * rows)
                keys.append(PyBytes_FromStringAndSize(<char*> key, size))
            out.append(keys)
    finally:
        free(sig)
        free(key)
    return out


def join_many(
    dict index, queue, double window, Py_ssize_t max_posts, list post_ids, list keys, list ts
):
    """``NearDuplicates.join_keys`` for each post in order (``index``: band key -> cluster;
    ``queue``: the expiry deque of (ts, keys)): the cluster each post joins, or None."""
    cdef list out = []
    cdef list ks
    cdef double t
    cdef Py_ssize_t j
    if not len(post_ids) == len(keys) == len(ts):
        raise ValueError("one post id, key list and time per post")
    for j in range(len(post_ids)):
        t = ts[j]
        while queue and (queue[0][0] < t - window or len(queue) > max_posts):
            for k in queue.popleft()[1]:
                index.pop(k, None)
        if keys[j] is None:
            out.append(None)
            continue
        ks = keys[j]
        found = None
        for k in ks:
            found = index.get(k)
            if found is not None:
                break
        cluster = found or post_ids[j]
        for k in ks:
            index[k] = cluster
        queue.append((ts[j], ks))
        out.append(found)
    return out
