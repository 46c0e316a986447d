# cython: language_level=3
"""Compiled twins of :func:`streams.stories.centrality` and
:func:`~streams.stories.centrality_of_counts` (how central each of a story's posts is: what a
version's headline is chosen by, over up to 400 posts at every version), of
:func:`~streams.stories.headline_order` (those posts best first), and of
:func:`~streams.stories.cosine` (a burst's words against each story's, at every join).

The same floats as the reference: each post's sum is taken in the same order, in double, and
divided by the correctly rounded square root of its term count. A term the story does not
weigh adds nothing (the reference adds 0.0 to a sum that is never negative: the same bits).
Checked against the reference in tests/test_stories.py.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.long cimport PyLong_AsLongAndOverflow, PyLong_CheckExact
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.number cimport PyNumber_Power
from cpython.object cimport PyObject
from libc.math cimport INFINITY, log1p, pow, sqrt
from libc.stdlib cimport qsort


# log1p of the small counts, taken once (the same doubles: log1p of the count as a double)
cdef enum:
    _LOGGED = 1024
cdef double _LOG1P[_LOGGED]
for _k in range(_LOGGED):
    _LOG1P[_k] = log1p(<double> _k)


cdef inline double _log1p_of(object x, long less) except? -1.0:
    """``math.log1p(max(x - less, 0))`` of a count (``less`` 1: a story's count of a term
    in its posts other than the one weighed; 0: the count itself), from the table for a
    small int, else libm's."""
    cdef long k
    cdef int overflow
    if PyLong_CheckExact(x):
        k = PyLong_AsLongAndOverflow(x, &overflow)
        if overflow == 0 and less <= k < _LOGGED + less:
            return _LOG1P[k - less]
    return log1p(max(<double> x - less, 0.0))


cdef list _centrality(list terms, object weights, bint logs):
    """Both centralities: per post, the sum of its terms' weights (when ``logs``, ``log1p``
    of a count less the post's own, from the table for a small int) over the square root
    of its number of terms.
    ``weights``: a dict or a subclass of one (a ``Counter``), read as a plain dict."""
    cdef list out = []
    cdef tuple post
    cdef double total
    cdef Py_ssize_t n
    cdef PyObject* c
    for post in terms:
        n = len(post)
        if n == 0:
            out.append(0.0)
            continue
        total = 0.0
        for term in post:
            c = PyDict_GetItem(weights, term)
            if c is NULL:
                continue
            total += _log1p_of(<object> c, 1) if logs else <double> (<object> c)
        out.append(total / sqrt(<double> n))
    return out


def centrality(list terms, dict weights):
    """``streams.stories.centrality``: per post (a tuple of its terms), the sum of its terms'
    ``weights`` over the square root of its number of terms (0.0 for a post without)."""
    return _centrality(terms, weights, False)


def centrality_of_counts(list terms, counts):
    """``streams.stories.centrality_of_counts``: :func:`centrality` with each term weighing
    ``log1p`` of its count in ``counts`` less one (libm's ``log1p``, which ``math.log1p`` calls: the
    same double), taken where a post uses the term instead of for every counted term."""
    if not isinstance(counts, dict):
        raise TypeError("counts must be a dict")
    return _centrality(terms, counts, True)


# libm's ``pow``, called through a pointer: a compiler would replace ``pow(v, 2.0)`` by
# ``v * v``, which may round differently
cdef double (*_libm_pow)(double, double) noexcept nogil
_libm_pow = pow

# the squares of the table's logs, as :func:`_norm` takes them (libm's ``pow(v, 2.0)``)
cdef double _LOG1P_SQUARED[_LOGGED]
for _k in range(_LOGGED):
    _LOG1P_SQUARED[_k] = _libm_pow(_LOG1P[_k], 2.0)


cdef double _norm(object counts) except? -1.0:
    """The reference's ``math.sqrt(sum(math.log1p(x) ** 2 for x in counts.values()))``: the
    square taken as Python takes ``float ** 2`` (for a finite ``v`` >= 0, CPython's
    ``float_pow`` returns libm's ``pow(v, 2.0)``; ``log1p`` of a count is one), summed in
    order from 0.0."""
    cdef double total = 0.0, v
    cdef long k
    cdef int overflow
    for x in (<dict> counts).values():
        if PyLong_CheckExact(x):  # (a small count: its square from the table)
            k = PyLong_AsLongAndOverflow(x, &overflow)
            if overflow == 0 and 0 <= k < _LOGGED:
                total += _LOG1P_SQUARED[k]
                continue
        v = log1p(<double> x)
        if v >= 0.0 and v < INFINITY:
            total += _libm_pow(v, 2.0)
        else:  # (not a count: Python's own power, whatever it does there)
            total += <double> PyNumber_Power(v, 2, None)
    return sqrt(total)


def cosine(a, b):
    """``streams.stories.cosine`` of two dicts (or ``Counter`` s) of counts: the same
    double (each sum taken in the reference's order, in double, from 0.0)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise TypeError("a and b must be dicts")
    if len(a) > len(b):
        a, b = b, a
    cdef double dot = 0.0
    cdef PyObject* y
    for k, x in (<dict> a).items():
        y = PyDict_GetItem(b, k)
        if y is not NULL:
            dot += _log1p_of(x, 0) * _log1p_of(<object> y, 0)
    if dot == 0.0:
        return 0.0
    return dot / (_norm(a) * _norm(b))


cdef struct _Ranked:
    double weight  # the weight, 0.8 of it for a copy
    double ts
    Py_ssize_t at  # its position among the candidates


cdef int _best_first(const void* a, const void* b) noexcept nogil:
    """The reference's order: the higher weight, then the older, then the earlier given."""
    cdef const _Ranked* x = <const _Ranked*> a
    cdef const _Ranked* y = <const _Ranked*> b
    if x.weight != y.weight:
        return -1 if x.weight > y.weight else 1
    if x.ts != y.ts:
        return -1 if x.ts < y.ts else 1
    return -1 if x.at < y.at else (1 if x.at > y.at else 0)


def headline_order(list weights, list originals, list ts):
    """``streams.stories.headline_order``: the candidates' positions, the most central
    first (a copy's weight times 0.8: the same double), then the oldest, then as given
    (which is what the reference's stable sort keeps)."""
    cdef Py_ssize_t n = len(weights), i
    if len(originals) != n or len(ts) != n:
        raise ValueError("weights, originals and ts must be as long")
    cdef _Ranked* ranked = <_Ranked*> PyMem_Malloc(max(n, 1) * sizeof(_Ranked))
    if ranked is NULL:
        raise MemoryError()
    try:
        for i in range(n):
            ranked[i].weight = <double> weights[i] * (1.0 if originals[i] else 0.8)
            ranked[i].ts = <double> ts[i]
            ranked[i].at = i
        qsort(ranked, n, sizeof(_Ranked), _best_first)
        return [ranked[i].at for i in range(n)]
    finally:
        PyMem_Free(ranked)

