"""The compiled core (streams/_*.pyx) against its pure-Python reference."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from streams import _hashcore


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_crc32_is_zlibs(data: bytes, value: int) -> None:
    assert _hashcore.crc32(data, value) == zlib.crc32(data, value)


def test_tune_gc_collects_less_often_and_freezes_the_startup_heap() -> None:
    import gc

    from streams import core

    before = gc.get_threshold()
    try:
        core.tune_gc()
        assert gc.get_threshold() == core.GC_THRESHOLD
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()  # cycles are still collected, only less often
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
