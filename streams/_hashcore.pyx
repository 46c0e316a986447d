# cython: language_level=3
"""Compiled helpers shared by the detector's parts: CRC-32 exactly as ``zlib.crc32``, and
the sketch's 64-bit item hash (FNV-1a) and row mixer (SplitMix64's finalizer), exactly as
``streams.sketch.fnv1a64`` and ``streams.sketch.mix64``.

Own table (no zlib headers needed at build time); checked against ``zlib.crc32`` and the
Python references in tests/test_core.py and tests/test_core_sketch.py. The cdef functions
are declared in _hashcore.pxd: the other compiled modules cimport them.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef uint32_t _TABLE[256]


cdef void _fill_table() noexcept:
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = n
        for k in range(8):
            c = (<uint32_t> 0xEDB88320u ^ (c >> 1)) if (c & 1) else (c >> 1)
        _TABLE[n] = c


_fill_table()


cdef uint32_t crc32_bytes(const uint8_t* data, Py_ssize_t n, uint32_t value) noexcept nogil:
    cdef uint32_t c = value ^ <uint32_t> 0xFFFFFFFFu
    cdef Py_ssize_t i
    for i in range(n):
        c = _TABLE[(c ^ data[i]) & 0xFF] ^ (c >> 8)
    return c ^ <uint32_t> 0xFFFFFFFFu


cdef uint64_t fnv1a64(const uint8_t* data, Py_ssize_t n) noexcept nogil:
    """FNV-1a, 64 bits, of the bytes."""
    cdef uint64_t h = 0xCBF29CE484222325u
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ data[i]) * <uint64_t> 0x100000001B3u
    return h


def fnv1a64_of(bytes data):
    """``fnv1a64`` of ``data`` (for the tests)."""
    return fnv1a64(<const uint8_t*> data, len(data))


def crc32(bytes data, uint32_t value=0):
    """``zlib.crc32(data, value)``."""
    return crc32_bytes(<const uint8_t*> data, len(data), value)

