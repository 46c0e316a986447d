# The C-level part of streams/_hashcore.pyx that the other compiled modules share.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef uint32_t crc32_bytes(const uint8_t* data, Py_ssize_t n, uint32_t value) noexcept nogil
cdef uint64_t packed_hash(const uint8_t* data, Py_ssize_t n) noexcept nogil
