"""The compiled core (streams/_*.pyx) against its pure-Python reference."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from streams import _hashcore
from streams.sketch import RateSketch


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_crc32_is_zlibs(data: bytes, value: int) -> None:
    assert _hashcore.crc32(data, value) == zlib.crc32(data, value)


@given(st.lists(st.text(max_size=20), max_size=20))
def test_packed_hashes_are_the_sketchs(items: list[str]) -> None:
    assert _hashcore.packed_hashes(items) == [RateSketch._hashes(i) for i in items]
