# cython: language_level=3
"""Compiled twin of :func:`streams.detector.touch_candidates` (every post runs it over its
items and tracked keys, most of which are no candidate). Same effect as the reference: the
same calls on the same objects in the same order. Checked in tests/test_detector.py.
"""

from collections import deque

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject

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
