# cython: language_level=3
"""Compiled twin of :func:`streams.stories.centrality` (how central each of a story's posts
is: what a version's headline is chosen by, over up to 400 posts at every version).

The same floats as the reference: each post's sum is taken in the same order, in double, and
divided by the correctly rounded square root of its term count. A term the story does not
weigh adds nothing (the reference adds 0.0 to a sum that is never negative: the same bits).
Checked against the reference in tests/test_stories.py.
"""

from libc.math cimport sqrt


def centrality(list terms, dict weights):
    """``streams.stories.centrality``: per post (a tuple of its terms), the sum of its terms'
    ``weights`` over the square root of its number of terms (0.0 for a post without)."""
    cdef list out = []
    cdef tuple post
    cdef double total
    cdef Py_ssize_t n
    for post in terms:
        n = len(post)
        if n == 0:
            out.append(0.0)
            continue
        total = 0.0
        for term in post:
            w = weights.get(term)
            if w is not None:
                total += <double> w
        out.append(total / sqrt(<double> n))
    return out
