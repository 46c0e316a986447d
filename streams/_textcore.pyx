# cython: language_level=3
"""Compiled twin of :func:`streams.features.analyse` (a post's burst items and content words).

Same output as the reference for every text. The steps that depend on Unicode rules stay
Python and run exactly as in :func:`models.text.tokens`: ``str.lower`` and the URL and
@mention substitutions (only when the text has "http" / "@"). What is compiled is the
token scan, which only ever matches ASCII (``_TOKEN``: any other code point ends a token),
the token's word (``features._word``), the content test (``features._content``) and the
items (``features._items``). ``domains`` and ``entities`` are called as in the reference,
but only when they can return something: a link needs "http" in the lowered text, a
capitalised run an upper-case ASCII letter (a text that ``lower`` leaves unchanged has none).
"""

from cpython.unicode cimport PyUnicode_DATA, PyUnicode_KIND, PyUnicode_New, PyUnicode_READ
from libc.string cimport memcpy

from models.text import _MENTION, _URL, STOP_WORDS, domains
from streams.features import entities

cdef frozenset _STOP = STOP_WORDS
cdef object _url_sub = _URL.sub
cdef object _mention_sub = _MENTION.sub


cdef inline bint _alnum(Py_UCS4 c) noexcept:
    return (c >= 97 and c <= 122) or (c >= 48 and c <= 57)  # [a-z0-9]


cdef inline bint _inner(Py_UCS4 c) noexcept:  # [a-z0-9'+._%-]
    return _alnum(c) or c == 39 or c == 43 or c == 46 or c == 95 or c == 37 or c == 45


cdef inline bint _last(Py_UCS4 c) noexcept:  # [a-z0-9+%]
    return _alnum(c) or c == 43 or c == 37


cdef inline bint _stripped(Py_UCS4 c) noexcept:  # the characters of "'.-_%"
    return c == 39 or c == 46 or c == 45 or c == 95 or c == 37


cdef inline str _pair(const char* a, Py_ssize_t la, str b):
    """``a + " " + b`` for ASCII ``a`` and ``b`` (words are: tokens are ASCII)."""
    cdef Py_ssize_t lb = len(b)
    cdef str out = PyUnicode_New(la + 1 + lb, 127)
    cdef char* dst = <char*> PyUnicode_DATA(out)
    memcpy(dst, a, la)
    dst[la] = 32
    memcpy(dst + la + 1, PyUnicode_DATA(b), lb)
    return out


def analyse(str text, Py_ssize_t limit=48):
    """``streams.features.analyse(text, limit)``: (burst items, content words)."""
    cdef str low = text.lower()
    cdef str t = low
    cdef bint has_http = "http" in low
    if has_http:
        t = _url_sub(" ", t)
    if "@" in t:
        t = _mention_sub(" ", t)
    cdef Py_ssize_t n = len(t)
    cdef int kind = PyUnicode_KIND(t)
    cdef void* data = PyUnicode_DATA(t)
    cdef Py_ssize_t i = 0, start, j, m, e, ws, we, k
    cdef Py_UCS4 c
    cdef bint tag, numeric, digit
    cdef dict seen = {}
    cdef list content = []
    cdef str word
    cdef object prev = None  # the previous token's content word (None: it had none)
    while i < n:
        c = PyUnicode_READ(kind, data, i)
        if c == 35 and i + 1 < n and _alnum(PyUnicode_READ(kind, data, i + 1)):  # '#' before [a-z0-9]
            start = i
            j = i + 1
        elif _alnum(c):
            start = i
            j = i
        else:
            i += 1
            continue
        # the longest run of inner characters, cut back to one that may end a token
        m = j + 1
        while m < n and _inner(PyUnicode_READ(kind, data, m)):
            m += 1
        e = m - 1
        while e > j and not _last(PyUnicode_READ(kind, data, e)):
            e -= 1
        i = e + 1  # the token is t[start:i]
        tag = start != j
        # its word: "#" and trailing "'.-_%" stripped, then a final "'s" cut
        ws = j
        we = i
        while we > ws and _stripped(PyUnicode_READ(kind, data, we - 1)):
            we -= 1
        if we - ws >= 2 and PyUnicode_READ(kind, data, we - 1) == 115 and PyUnicode_READ(kind, data, we - 2) == 39:  # "'s"
            we -= 2
        if we - ws < 3:
            prev = None
            continue
        numeric = True  # only digits and dots, and a digit
        digit = False
        for k in range(ws, we):
            c = PyUnicode_READ(kind, data, k)
            if c >= 48 and c <= 57:
                digit = True
            elif c != 46:
                numeric = False
                break
        if numeric and digit:
            prev = None
            continue
        word = t[ws:we]
        if word in _STOP:
            prev = None
            continue
        content.append(word)
        if len(seen) >= limit:
            continue
        seen.setdefault(word, None)
        if tag:
            seen.setdefault("#" + word, None)
        if prev is not None and prev != word:
            seen.setdefault(_pair(<const char*> PyUnicode_DATA(prev), len(prev), word), None)
        prev = word
    if has_http:
        for d in domains(text):
            seen.setdefault("domain:" + d, None)
    if low != text:  # (an upper-case letter, maybe: else no entity)
        for ent in entities(text):
            seen.setdefault(ent, None)
    return list(seen)[: limit + 8], content
