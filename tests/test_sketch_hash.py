"""The sketch's rows are independent hash functions: column occupancy and cross-row collisions
measured on a real stream's vocabulary (and on a synthetic one when ../shared is absent).

Independence is what count-min needs: an item that shares a cell with a frequent item in one
row should be no likelier to share one in the next. The CRC double hashing used before
(``h1 + r * h2``, h2 a CRC-32 with another seed) failed this: CRC is affine over GF(2), so
h2 XOR h1 depends only on the item's length, and a row folded most of a vocabulary into a
few thousand columns. ``crc_double_hashing`` keeps it here to show the checks catch it.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streams import features
from streams.sketch import RateSketch
from tests.helpers import pure_python

WIDTH, DEPTH = 1 << 16, 4


def vocabulary(path: Path, limit: int = 7000) -> list[str]:
    """The distinct items (terms, bigrams, hashtags, domains, entities) of a stream's posts."""
    items: dict[str, None] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n >= limit:
                break
            found, _ = features.analyse(json.loads(line)["text"], 48)
            items.update(dict.fromkeys(found))
    return list(items)


def occupancy_ratios(cols: np.ndarray) -> list[float]:
    """Per row: distinct columns used / the number n uniform random draws would use."""
    n = cols.shape[1]
    expected = WIDTH * (1 - (1 - 1 / WIDTH) ** n)
    return [len(np.unique(row)) / expected for row in cols]


def cross_row_collisions(cols: np.ndarray) -> tuple[int, float]:
    """Pairs of items sharing a column in row 0 that also share one in row 1, and how many
    independent rows would give (pairs in row 0 / width)."""
    by_col: dict[int, list[int]] = {}
    for j, c in enumerate(cols[0].tolist()):
        by_col.setdefault(c, []).append(j)
    pairs = [(a, b) for js in by_col.values() for i, a in enumerate(js) for b in js[i + 1 :]]
    both = sum(1 for a, b in pairs if cols[1, a] == cols[1, b])
    return both, len(pairs) / WIDTH


def columns(items: list[str]) -> np.ndarray:
    sketch = RateSketch(WIDTH, DEPTH, 0.01, 0.5)
    return sketch.locate(items) - (np.arange(DEPTH) * WIDTH)[:, None]


def crc_double_hashing(items: list[str]) -> np.ndarray:
    h1 = np.array([zlib.crc32(i.encode()) for i in items], dtype=np.int64)
    h2 = np.array([zlib.crc32(i.encode(), 0x5BD1E995) | 1 for i in items], dtype=np.int64)
    return (h1[None, :] + np.arange(DEPTH)[:, None] * h2[None, :]) % WIDTH


def check_independent(cols: np.ndarray) -> None:
    # occupancy: a uniform hash fills within a few percent of the expectation
    assert all(0.97 <= r <= 1.03 for r in occupancy_ratios(cols))
    # cross-row: Poisson around pairs/width; 5 standard deviations and a small slack
    both, expected = cross_row_collisions(cols)
    assert both <= expected + 5 * expected**0.5 + 3


@pytest.mark.parametrize("pure", [False, True])
def test_rows_are_independent_on_a_real_vocabulary(shared_data: Path, pure: bool) -> None:
    items = vocabulary(shared_data / "replay" / "crisislex_2012_Sandy_Hurricane.jsonl")
    assert len(items) > 20_000
    if pure:
        with pure_python():
            check_independent(columns(items))
    else:
        check_independent(columns(items))


def same_length_words() -> list[str]:
    rng = np.random.default_rng(7)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return list(dict.fromkeys("".join(rng.choice(letters, 6)) for _ in range(30_000)))


def test_rows_are_independent_on_same_length_words() -> None:
    """Words of one length: the case CRC double hashing folded."""
    words = same_length_words()
    assert Counter(map(len, words)) == {6: len(words)}
    check_independent(columns(words))


def test_the_checks_catch_crc_double_hashing() -> None:
    """The old family fails the same checks on the same words (the test can fail)."""
    with pytest.raises(AssertionError):
        check_independent(crc_double_hashing(same_length_words()))
