# The C-level part of streams/_hashcore.pyx that the other compiled modules share.
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef uint32_t crc32_bytes(const uint8_t* data, Py_ssize_t n, uint32_t value) noexcept nogil
cdef uint64_t packed_hash(const uint8_t* data, Py_ssize_t n) noexcept nogil


cdef inline const uint8_t* utf8(str s, Py_ssize_t* n) except NULL:
    """``s.encode()``'s bytes without a copy (CPython keeps a str's UTF-8; ASCII is the str)."""
    return <const uint8_t*> PyUnicode_AsUTF8AndSize(s, n)
