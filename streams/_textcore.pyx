# cython: language_level=3
r"""Compiled twin of :func:`streams.features.analyse` (a post's burst items and content words).

Same output as the reference for every text. The steps that depend on Unicode rules stay
Python and run exactly as in :func:`models.text.tokens`: ``str.lower``, a typographic
apostrophe read as "'", and the URL substitution (only when the text has "http"). What is
compiled is the @mention substitution (``models.text._MENTION``, only when the text has
"@"), the token scan (``_TOKEN``), the token's word (``models.text.word_of``), the word test
(``models.text.wordlike``) and the stop-word test, the items (``features._items``), and
``features.entities`` (its two regexes, ``_CAP_RUN`` with its backtracking, and
``_WORDISH``). Where those regexes say ``\w``, ``\s`` or ``\b``, and ``isdigit`` is
asked, they mean CPython's own tests of a code point (alphanumeric or "_"; white space; a
digit), which are what the compiled scans call; ASCII is tested without a call. A text
with Chinese, Japanese or Korean characters is the reference's to analyse (its tokens become
``models.text.cjk_pieces``). ``domains`` stays the reference's. Both are called only when
they can return something: a link needs "http" in the lowered text, a capitalised run an
upper-case ASCII letter (a text that ``lower`` leaves unchanged has none).
"""

from cpython.unicode cimport (
    Py_UNICODE_ISALNUM,
    Py_UNICODE_ISDIGIT,
    Py_UNICODE_ISSPACE,
    PyUnicode_DATA,
    PyUnicode_KIND,
    PyUnicode_New,
    PyUnicode_READ,
)
from libc.string cimport memcpy

from models.text import _CJK, _URL, STOP_WORDS, domains
from streams.features import analyse as _reference_analyse

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)

cdef frozenset _STOP = STOP_WORDS
cdef object _url_sub = _URL.sub
cdef object _cjk_search = _CJK.search


cdef inline bint _alnum(Py_UCS4 c) noexcept:  # [^\W_]: a letter or digit of any script
    if c < 128:
        return (97 <= c <= 122) or (48 <= c <= 57) or (65 <= c <= 90)
    return Py_UNICODE_ISALNUM(c)


cdef inline bint _inner(Py_UCS4 c) noexcept:  # [\w'+.%-]
    return _uword(c) or c == 39 or c == 43 or c == 46 or c == 37 or c == 45


cdef inline bint _last(Py_UCS4 c) noexcept:  # [^\W_] or [+%]
    return _alnum(c) or c == 43 or c == 37


cdef inline bint _stripped(Py_UCS4 c) noexcept:  # the characters of "'.-_%"
    return c == 39 or c == 46 or c == 45 or c == 95 or c == 37


cdef inline bint _uword(Py_UCS4 c) noexcept:  # \w in a str pattern: [^\W] in any script
    if c < 128:  # (ASCII, most text: [A-Za-z0-9_] without a call)
        return (97 <= c <= 122) or (65 <= c <= 90) or (48 <= c <= 57) or c == 95
    return Py_UNICODE_ISALNUM(c)


def drop_mentions(str t):
    """``models.text._MENTION.sub(" ", t)``: each "@" that no word character precedes, with
    the word characters after it (one at least), becomes a space."""
    cdef Py_ssize_t n = len(t), i = 0, j, last = 0
    cdef int kind = PyUnicode_KIND(t)
    cdef void* data = PyUnicode_DATA(t)
    cdef list parts = []
    while i < n:
        if PyUnicode_READ(kind, data, i) == 64 and (
            i == 0 or not _uword(PyUnicode_READ(kind, data, i - 1))
        ):
            j = i + 1
            while j < n and _uword(PyUnicode_READ(kind, data, j)):
                j += 1
            if j > i + 1:
                parts.append(t[last:i])
                parts.append(" ")
                i = last = j
                continue
        i += 1
    if not parts:
        return t
    parts.append(t[last:])
    return "".join(parts)


cdef inline str _pair(const char* a, Py_ssize_t la, str b):
    """``a + " " + b`` for ASCII ``a`` and ``b``."""
    cdef Py_ssize_t lb = len(b)
    cdef str out = PyUnicode_New(la + 1 + lb, 127)
    cdef char* dst = <char*> PyUnicode_DATA(out)
    memcpy(dst, a, la)
    dst[la] = 32
    memcpy(dst + la + 1, PyUnicode_DATA(b), lb)
    return out


cdef inline bint _cap_char(Py_UCS4 c) noexcept:  # [\w'-]
    return _uword(c) or c == 39 or c == 45


cdef inline bint _space(Py_UCS4 c) noexcept:  # \s in a str pattern (str.split's whitespace)
    if c < 128:  # (ASCII: " ", \t-\r and \x1c-\x1f)
        return c == 32 or (9 <= c <= 13) or (28 <= c <= 31)
    return Py_UNICODE_ISSPACE(c)


cdef Py_ssize_t _cap_word(int kind, void* data, Py_ssize_t n, Py_ssize_t p) noexcept:
    """End of the longest ``[A-Z][\w'-]+`` at ``p``, or -1 (``[A-Z]{2,}`` adds nothing:
    every match of it is one of this, tried first)."""
    if p + 1 >= n or not (65 <= PyUnicode_READ(kind, data, p) <= 90):
        return -1
    if not _cap_char(PyUnicode_READ(kind, data, p + 1)):
        return -1
    cdef Py_ssize_t e = p + 2
    while e < n and _cap_char(PyUnicode_READ(kind, data, e)):
        e += 1
    return e


cdef Py_ssize_t _cap_run(int kind, void* data, Py_ssize_t n, Py_ssize_t p) noexcept:
    """End of the ``features._CAP_RUN`` match starting at ``p``, or -1.

    The regex, backtracking: a word that another follows ends where its characters do
    (whitespace must come next), so the chain of 2-4 words is fixed; only the last word
    may end early, at the first word boundary from its end, and with fewer words when
    no such boundary exists."""
    cdef Py_ssize_t starts[4]
    cdef Py_ssize_t ends[4]
    cdef Py_ssize_t m = 1, s, e, q, last
    if p > 0 and _uword(PyUnicode_READ(kind, data, p - 1)):
        return -1  # (no \b before)
    e = _cap_word(kind, data, n, p)
    if e < 0:
        return -1
    starts[0] = p
    ends[0] = e
    while m < 4:
        s = ends[m - 1]
        if s >= n or not _space(PyUnicode_READ(kind, data, s)):
            break
        while s < n and _space(PyUnicode_READ(kind, data, s)):
            s += 1
        e = _cap_word(kind, data, n, s)
        if e < 0:
            break
        starts[m] = s
        ends[m] = e
        m += 1
    for last in range(m - 1, 0, -1):
        q = ends[last]
        while q >= starts[last] + 2:  # a word boundary at q
            if _uword(PyUnicode_READ(kind, data, q - 1)) != (
                q < n and _uword(PyUnicode_READ(kind, data, q))
            ):
                return q
            q -= 1
    return -1


def cap_runs(str text):
    """``features._CAP_RUN.findall(text)``."""
    cdef Py_ssize_t n = len(text), p = 0, q
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef list runs = []
    while p < n:
        q = _cap_run(kind, data, n, p)
        if q < 0:
            p += 1
        else:
            runs.append(text[p:q])
            p = q
    return runs


cdef list _cap_entities(str text, frozenset stop):
    """``features.entities(text, stop)`` for a text with an upper-case letter."""
    cdef Py_ssize_t n = len(text), p = 0, words = 0, capitalised = 0
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_UCS4 c
    cdef list runs = cap_runs(text)
    if not runs:
        return []
    while p < n:  # _WORDISH.findall: [A-Za-z][\w'-]*, counting the capitalised
        c = PyUnicode_READ(kind, data, p)
        if (97 <= c <= 122) or (65 <= c <= 90):
            words += 1
            capitalised += c <= 90
            p += 1
            while p < n and _cap_char(PyUnicode_READ(kind, data, p)):
                p += 1
        else:
            p += 1
    if 2 * capitalised > words:  # a headline in title case
        return []
    cdef list out = []
    for run in runs:
        parts = [w for w in run.split() if w.lower() not in stop]
        if len(parts) >= 2:
            ent = "ent:" + " ".join([w.lower() for w in parts])
            if ent not in out:
                out.append(ent)
    return out


cdef list _entities(str text, str low, frozenset stop):
    """``features.entities(text, stop)``, ``low`` being ``text.lower()``: none when lowering
    changes nothing (no upper-case letter, so no capitalised run)."""
    if low == text:
        return []
    return _cap_entities(text, stop)


def entities(str text, frozenset stop=_STOP):
    """``features.entities(text, stop)``."""
    return _entities(text, text.lower(), stop)


def analyse(str text, Py_ssize_t limit=48, frozenset stop=_STOP):
    """``streams.features.analyse(text, limit, stop)``: (burst items, content words)."""
    if not PyUnicode_IS_ASCII(text) and _cjk_search(text) is not None:
        return _reference_analyse(text, limit, stop)
    cdef str low = text.lower()
    cdef str t = low
    if "\u2019" in t:  # (a typographic apostrophe reads as "'", as in models.text.tokens)
        t = t.replace("\u2019", "'")
    cdef bint has_http = "http" in low
    if has_http:
        t = _url_sub(" ", t)
    if "@" in t:
        t = drop_mentions(t)
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
    cdef bint all_ascii = PyUnicode_IS_ASCII(t)  # (every word is, so a bigram is built bytewise)
    while i < n:
        c = PyUnicode_READ(kind, data, i)
        if c == 35 and i + 1 < n and _alnum(PyUnicode_READ(kind, data, i + 1)):  # '#' before [^\W_]
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
        numeric = True  # only digits and dots, and a digit (str.isdigit: of any script)
        digit = False
        for k in range(ws, we):
            c = PyUnicode_READ(kind, data, k)
            if (48 <= c <= 57) or (c >= 128 and Py_UNICODE_ISDIGIT(c)):
                digit = True
            elif c != 46:
                numeric = False
                break
        if numeric and digit:
            prev = None
            continue
        word = t[ws:we]
        if word in stop:
            prev = None
            continue
        content.append(word)
        if len(seen) >= limit:
            continue
        seen.setdefault(word, None)
        if tag:
            seen.setdefault("#" + word, None)
        if prev is not None and prev != word:
            if all_ascii:
                seen.setdefault(_pair(<const char*> PyUnicode_DATA(prev), len(prev), word), None)
            else:
                seen.setdefault(f"{prev} {word}", None)
        prev = word
    if has_http:
        for d in domains(text):
            seen.setdefault("domain:" + d, None)
    for ent in _entities(text, low, stop):
        seen.setdefault(ent, None)
    return list(seen)[: limit + 8], content
