# The C-level part of streams/_hashcore.pyx that the other compiled modules share.
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef uint32_t crc32_bytes(const uint8_t* data, Py_ssize_t n, uint32_t value) noexcept nogil
cdef uint64_t fnv1a64(const uint8_t* data, Py_ssize_t n) noexcept nogil


cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    """SplitMix64's finalizer (Steele, Lea, Flood 2014): a bijection whose output bits each
    depend on every input bit; ``streams.sketch.mix64``."""
    z = (z ^ (z >> 30)) * <uint64_t> 0xBF58476D1CE4E5B9u
    z = (z ^ (z >> 27)) * <uint64_t> 0x94D049BB133111EBu
    return z ^ (z >> 31)


cdef inline const uint8_t* utf8(str s, Py_ssize_t* n) except NULL:
    """``s.encode()``'s bytes without a copy (CPython keeps a str's UTF-8; ASCII is the str)."""
    return <const uint8_t*> PyUnicode_AsUTF8AndSize(s, n)
