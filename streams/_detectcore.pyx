# cython: language_level=3
# distutils: extra_compile_args = -ffp-contract=off
"""Compiled twins of :func:`streams.detector.touch_candidates` (every post runs it over its
items and tracked keys, most of which are no candidate) and of the Poisson tail
:func:`streams.detector.poisson_tail_score` (a burst's score at each scale where it may
fire). Same effect as the reference: the same calls on the same objects in the same order,
and the same double: the same IEEE-754 operations in the same order (no multiply-add
contraction, above), libm's ``log`` and ``exp`` as ``math.log`` and ``math.exp`` call them,
and ``math.lgamma`` itself (CPython's own, not libm's). Checked in tests/test_detector.py.
"""

import math
from collections import deque

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.math cimport exp, log

cdef object _append = deque.append  # (unbound: no bound method made per post)


def touch_candidates(cands, list names, ref):
    """``streams.detector.touch_candidates``: each candidate among ``names``, in order,
    becomes the most recently used and gets ``ref`` as its newest post (once). A candidate's
    posts are a ``deque``, as the detector keeps them."""
    if not isinstance(cands, dict):
        raise TypeError("cands must be a dict (an OrderedDict)")
    cdef PyObject* found
    cdef object held
    cdef Py_ssize_t n
    move_to_end = cands.move_to_end
    for name in names:
        found = PyDict_GetItem(cands, name)
        if found is NULL:
            continue
        held = <object> found
        move_to_end(name)
        n = len(held)
        if n == 0 or held[n - 1] is not ref:  # (no negative index: built without wraparound)
            _append(held, ref)


cdef object _lgamma = math.lgamma
cdef double _LOG10 = log(10.0)  # (math.log(10): the int converted, then libm's log)


def poisson_tail_score(long observed, double expected):
    """``streams.detector.poisson_tail_score``: -log10 P(X >= observed), X ~ Poisson(expected),
    the tail summed in log space from ``observed`` on, until a term past the mean is 40
    (natural log) below the first, or is more than 10,000 terms past it."""
    if observed <= 0:
        return 0.0
    cdef double lam = expected
    if 1e-9 > lam:  # (max(expected, 1e-9): a NaN stays)
        lam = 1e-9
    cdef double log_lam = log(lam), lp, first = 0.0, top, total = 0.0, log_tail, score
    cdef list logs = []
    cdef long i = observed
    while True:
        lp = -lam + <double> i * log_lam - <double> _lgamma(i + 1)
        if not logs:
            first = lp
        logs.append(lp)
        if (<double> i > lam and lp < first - 40) or i - observed > 10_000:
            break
        i += 1
    top = logs[0]
    for x in logs:  # (max: the first of the largest)
        if <double> x > top:
            top = x
    for x in logs:  # (summed in order from 0.0, as sum() does floats)
        total += exp(<double> x - top)
    log_tail = top + log(total)
    score = -log_tail / _LOG10
    return score if score > 0.0 else 0.0
