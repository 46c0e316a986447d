# cython: language_level=3
"""Compiled helpers shared by the detector's parts: CRC-32 exactly as ``zlib.crc32``.

Own table (no zlib headers needed at build time); checked against ``zlib.crc32`` in
tests/test_core.py. ``crc32_bytes`` is declared in _hashcore.pxd: the other compiled modules
cimport it.
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


cdef uint64_t packed_hash(const uint8_t* data, Py_ssize_t n) noexcept nogil:
    """The sketch's two hashes packed: h1 = crc32 in the low 32 bits, h2 (odd) above."""
    cdef uint64_t h2 = crc32_bytes(data, n, 0x5BD1E995) | 1
    return crc32_bytes(data, n, 0) | (h2 << 32)


def crc32(bytes data, uint32_t value=0):
    """``zlib.crc32(data, value)``."""
    return crc32_bytes(<const uint8_t*> data, len(data), value)

