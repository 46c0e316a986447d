"""The authenticity twins (streams/_authcore.pyx) against the Python reference: repeat
authors, MinHash band keys and LSH joining give the same answers and the same state."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import core
from streams.authenticity import AuthorRepeats, NearDuplicates
from streams.sketch import RateSketch
from tests.helpers import pure_python

NAMES = st.sampled_from(["", "a", "b", "ç", "日本", "🙂", "x" * 40, "a\x00"])
# the author-repeat array: its size (tiny ones collide), its first cells' buckets, and
# (author, items) units
SIZES = st.sampled_from([1, 2, 5, 64, 1 << 18])
LAST = st.lists(st.integers(-1, 12), max_size=64)
UNITS = st.lists(st.tuples(NAMES, st.lists(NAMES, max_size=6)), max_size=6)
WORDS = st.lists(
    st.sampled_from(["a", "b", "", "ç", "日本", "🙂", "word"]) | st.text(max_size=8), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(SIZES, LAST, st.lists(st.tuples(UNITS, st.data()), max_size=4))
def test_fresh_many_is_the_reference(
    size: int,
    last: list[int],
    batches: list[tuple[list[tuple[str, list[str]]], st.DataObject]],
) -> None:
    got, want = AuthorRepeats(size), AuthorRepeats(size)
    got.last[: len(last)] = want.last[: len(last)] = last[:size]
    for bucket, (units, data) in enumerate(batches, start=10):
        post = None
        if data.draw(st.booleans()):  # units in another order than the batch's (see _count)
            places = data.draw(st.lists(st.integers(0, 5), min_size=len(units)))
            post = np.repeat(
                np.array(places[: len(units)], dtype=np.int64), [len(i) for _, i in units]
            )
        fresh = got.fresh_many(units, bucket, post)
        with pure_python():
            expected = want.fresh_many(units, bucket, post)
        assert fresh.dtype == expected.dtype == np.bool_
        assert fresh.tolist() == expected.tolist()
        assert np.array_equal(got.last, want.last)


@settings(max_examples=300, deadline=None)
@given(SIZES, LAST, st.lists(st.tuples(UNITS, st.data()), max_size=5))
def test_fresh_many_over_several_buckets_is_one_call_per_bucket(
    size: int,
    last: list[int],
    batches: list[tuple[list[tuple[str, list[str]]], st.DataObject]],
) -> None:
    """One bucket per item (the detector's batch spanning buckets): the same as one call per
    bucket, on the compiled core and on the reference."""
    per_bucket, got, want = AuthorRepeats(size), AuthorRepeats(size), AuthorRepeats(size)
    for a in (per_bucket, got, want):
        a.last[: len(last)] = last[:size]
    bucket = 10
    units: list[tuple[str, list[str]]] = []
    buckets: list[int] = []
    expected: list[bool] = []
    for batch, data in batches:
        bucket += data.draw(st.integers(0, 3))  # the same bucket, the next, or a gap
        expected += per_bucket.fresh_many(batch, bucket).tolist()
        units += batch
        buckets += [bucket] * sum(len(items) for _, items in batch)
    each = np.array(buckets, dtype=np.int32)
    fresh = got.fresh_many(units, each)
    with pure_python():
        reference = want.fresh_many(units, each)
    assert fresh.tolist() == reference.tolist() == expected
    assert np.array_equal(got.last, per_bucket.last) and np.array_equal(want.last, per_bucket.last)


@pytest.mark.parametrize("pure", [False, True])
def test_fresh_many_takes_a_numpy_scalar_bucket_as_one_bucket(pure: bool) -> None:
    units = [("ann", ["x", "y"]), ("bob", ["x"]), ("ann", ["y", "z"])]
    as_int, as_numpy = AuthorRepeats(64), AuthorRepeats(64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(core, "PURE_PYTHON", pure)
        for bucket in (5, 6, 9):
            want = as_int.fresh_many(units, bucket).tolist()
            assert as_numpy.fresh_many(units, np.int32(bucket)).tolist() == want
    assert np.array_equal(as_int.last, as_numpy.last)


@settings(max_examples=200, deadline=None)
@given(st.lists(WORDS, max_size=12), st.sampled_from([(64, 8), (16, 4), (12, 12), (8, 1)]))
def test_post_keys_are_the_reference(contents: list[list[str]], shape: tuple[int, int]) -> None:
    num_perm, bands = shape
    dups = NearDuplicates(3600, num_perm=num_perm, bands=bands)
    got = dups.post_keys(contents)
    with pure_python():
        assert got == dups.post_keys(contents)
    assert [k is None for k in got] == [len(ws) < 3 for ws in contents]
    assert all(len(keys) == bands for keys in got if keys is not None)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2", "p3", "", "p4"]),
            st.none() | st.lists(st.sampled_from([b"k1", b"k2", b"k3", b"k4", b"k5"]), max_size=3),
            st.floats(0, 50),
        ),
        max_size=20,
    ),
    st.floats(1, 100),
    st.integers(1, 6),
)
def test_join_many_is_the_reference(
    posts: list[tuple[str, list[bytes] | None, float]], window: float, max_posts: int
) -> None:
    dups = NearDuplicates(window, max_posts=max_posts)
    ref = copy.deepcopy(dups)
    ids, keys, gaps = (list(x) for x in zip(*posts, strict=True)) if posts else ([], [], [])
    ts = np.cumsum(gaps).tolist()  # event time moves forward
    half = len(ids) // 2  # two calls: the state carries over
    got = dups.join_many(ids[:half], keys[:half], ts[:half])
    got += dups.join_many(ids[half:], keys[half:], ts[half:])
    with pure_python():
        want = ref.join_many(ids[:half], keys[:half], ts[:half])
        want += ref.join_many(ids[half:], keys[half:], ts[half:])
    assert got == want
    assert dups._index == ref._index
    assert list(dups._queue) == list(ref._queue)


def test_twins_refuse_inputs_of_the_wrong_length() -> None:
    """(The twins index without bounds checks: they check their inputs first.)"""
    dups = NearDuplicates(60)
    with pytest.raises(ValueError):
        dups.join_many(["p1", "p2"], [[b"k"]], [1.0, 2.0])
    with pytest.raises(ValueError):
        AuthorRepeats(8).fresh_many([("a", ["x", "y"])], 3, np.zeros(1, dtype=np.int64))
    with pytest.raises(ValueError, match="one bucket per item"):
        AuthorRepeats(8).fresh_many([("a", ["x", "y"])], np.zeros(3, dtype=np.int32))
    sketch = RateSketch(8, 2, 0.1, 0.5)
    idx = sketch.locate(["x", "y"])
    with pytest.raises(ValueError):
        sketch.observe_batch(idx, np.ones(1, np.float32), None, 1, 1.0, 0.0)
    with pytest.raises(ValueError):
        sketch.observe_batch(idx, np.ones(2, np.float32), np.zeros(3, np.int64), 1, 1.0, 0.0)
    with pytest.raises(IndexError):
        sketch.observe_batch(idx + 16, np.ones(2, np.float32), None, 1, 1.0, 0.0)
