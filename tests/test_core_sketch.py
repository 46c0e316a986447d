"""The sketch's compiled twins (streams/_sketchcore.pyx) against the numpy reference:
the same cells, the same estimates and the same state, bit for bit, in float32."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.keyword import KeywordClassifier
from seismo.config import load_settings
from seismo.contracts import Alert, ClassifiedPost, Post
from seismo.watchlist import load_watchlist
from streams import _hashcore, _sketchcore
from streams.detector import BurstEngine
from streams.pipeline import detector_params
from streams.sketch import (
    Estimate,
    KeyedRates,
    RateSketch,
    Run,
    ScaleStack,
    fnv1a64,
    pow_f32,
)
from tests.helpers import pure_python, synthetic_stream

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf/NaN states on purpose

NOW = datetime(2026, 11, 23, tzinfo=UTC)
F32 = st.floats(min_value=0, max_value=2.0**100, width=32)
# few distinct items (so they repeat and collide), unicode included
ITEMS = st.lists(st.sampled_from(["a", "b", "ç", "日本", "", "#x", "w1", "w2", "🙂", "dom:x.io"]))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical (NaN, -0.0 and all)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def same_estimate(a: Estimate, b: Estimate) -> bool:
    return all(same(getattr(a, f), getattr(b, f)) for f in ("count", "expected", "var", "z"))


def same_cells(a: RateSketch, b: RateSketch) -> bool:
    return all(same(getattr(a, f), getattr(b, f)) for f in ("cur", "prev", "mean", "var", "bucket"))


@given(
    base=st.floats(min_value=0, max_value=2.0, width=32),
    exps=st.lists(st.integers(min_value=0, max_value=2**40), max_size=50),
)
def test_pow_f32_compiled_is_the_reference(base: float, exps: list[int]) -> None:
    """The decay factor: one square-and-multiply chain in both, so the same bits on any CPU."""
    n = np.array(exps, dtype=np.int64)
    assert same(_sketchcore.pow_f32_many(base, n), pow_f32(np.float32(base), n))


def test_pow_f32_is_close_to_the_true_power() -> None:
    """The chain runs in float64 and is rounded to float32 once: within one float32 ulp of the
    exact power (relative tolerance 1.2e-7, twice float32's unit roundoff)."""
    keep = np.float32(1.0 - 0.000343)
    n = np.arange(0, 3000, dtype=np.int64)
    want = np.float64(keep) ** n.astype(np.float64)
    np.testing.assert_allclose(pow_f32(keep, n), want, rtol=1.2e-7)


@st.composite
def sketches(draw: st.DrawFn) -> RateSketch:
    """A sketch in an arbitrary state: counts up to huge, any baseline, cells at any bucket."""
    width = draw(st.sampled_from([1, 3, 8, 61, 1 << 16]))
    depth = draw(st.integers(1, 4))
    alpha = draw(st.floats(1e-6, 0.9))
    beta = draw(st.floats(0, 3))
    return any_state(draw, RateSketch(width, depth, alpha, beta))


def any_state(draw: st.DrawFn, s: RateSketch) -> RateSketch:
    """``s`` with arbitrary counts, baselines and buckets in its first cells."""
    cells = min(s.width * s.depth, 64)  # (the rest stay zero)
    for name in ("cur", "prev"):
        counts = draw(st.lists(st.integers(0, 1 << 20), min_size=cells, max_size=cells))
        getattr(s, name)[:cells] = counts
    for name in ("mean", "var"):
        getattr(s, name)[:cells] = draw(st.lists(F32, min_size=cells, max_size=cells))
    s.bucket[:cells] = draw(st.lists(st.integers(0, 5000), min_size=cells, max_size=cells))
    return s


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Items, their 0/1 weights and their posts (non-decreasing, or None: one post)."""
    items = draw(ITEMS)
    weights = np.array(draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items))))
    post = None
    if draw(st.booleans()):
        steps = draw(st.lists(st.integers(0, 2), min_size=len(items), max_size=len(items)))
        post = np.cumsum(steps, dtype=np.int64)
    return items, weights.astype(np.float32), post


@settings(max_examples=300, deadline=None)
@given(
    sketches(),
    st.lists(st.tuples(batches(), st.integers(0, 3), st.floats(1e-4, 1), st.floats(0, 5))),
)
def test_observe_batch_is_the_reference(
    sketch: RateSketch,
    steps: list[tuple[tuple[list[str], np.ndarray, np.ndarray | None], int, float, float]],
) -> None:
    ref = copy.deepcopy(sketch)
    bucket = 5000
    for (items, weights, post), gap, correction, floor in steps:
        bucket += gap  # the same bucket again, the next, or a gap of empty buckets
        if not items:
            continue
        with pure_python():
            idx_ref = ref.locate(items)
            want = ref.observe_batch(idx_ref, weights, post, bucket, correction, floor)
        idx = sketch.locate(items)
        got = sketch.observe_batch(idx, weights, post, bucket, correction, floor)
        assert same(idx, idx_ref)
        assert same_estimate(got, want)
        assert same_cells(sketch, ref)


# one to five batches, each in the same bucket as the one before, the next or a later one
BUCKET_RUNS = st.lists(
    st.tuples(batches(), st.integers(0, 3), st.floats(1e-4, 1), st.floats(0, 5)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    sketches(),
    BUCKET_RUNS,
)
def test_observe_runs_is_one_observe_batch_per_bucket(
    sketch: RateSketch,
    steps: list[tuple[tuple[list[str], np.ndarray, np.ndarray | None], int, float, float]],
) -> None:
    """The posts of several buckets in one call (as the detector counts a batch spanning
    buckets): the same estimates and cells as one ``observe_batch`` per bucket, on the
    compiled core and on the reference."""
    per_bucket, ref = copy.deepcopy(sketch), copy.deepcopy(sketch)
    bucket, first_post = 5000, 0
    items: list[str] = []
    weights, posts, runs, want = [], [], [], []
    for (its, w, post), gap, correction, floor in steps:
        bucket += gap  # the same bucket again, the next, or a gap of empty buckets
        post = (np.zeros(len(its), np.int64) if post is None else post) + first_post
        if its:  # (a run may hold no items: its posts had none)
            want.append(
                per_bucket.observe_batch(per_bucket.locate(its), w, post, bucket, correction, floor)
            )
            first_post = int(post[-1]) + 1
        items += its
        weights.append(w)
        posts.append(post)
        runs.append(Run(len(items), bucket, correction, floor))
    if not items:
        return
    w_all, post_all = np.concatenate(weights), np.concatenate(posts)
    got = sketch.observe_runs(sketch.locate(items), w_all, post_all, runs)
    with pure_python():
        expected = ref.observe_runs(ref.locate(items), w_all, post_all, runs)
    for field in ("count", "expected", "var", "z"):
        joined = np.concatenate([getattr(e, field) for e in want])
        assert same(getattr(got, field), joined)
        assert same(getattr(expected, field), joined)
    assert same_cells(sketch, per_bucket) and same_cells(ref, per_bucket)


@st.composite
def stacked(draw: st.DrawFn) -> list[RateSketch]:
    """Sketches of one shape (one per time scale), each in an arbitrary state and with its
    own alpha."""
    width = draw(st.sampled_from([1, 3, 8, 61, 1 << 10]))
    depth = draw(st.integers(1, 4))
    beta = draw(st.floats(0, 3))
    alphas = draw(st.lists(st.floats(1e-6, 0.9), min_size=1, max_size=4))
    return [any_state(draw, RateSketch(width, depth, a, beta)) for a in alphas]


@settings(max_examples=300, deadline=None)
@given(
    stacked(),
    BUCKET_RUNS,
)
def test_observe_scales_is_one_observe_runs_per_scale(
    sketches: list[RateSketch],
    steps: list[tuple[tuple[list[str], np.ndarray, np.ndarray | None], int, float, float]],
) -> None:
    """All time scales in one compiled pass over their shared cells (each scale its own
    buckets, alpha, corrections and floors): the same estimates and cells as the reference's
    one ``observe_runs`` per scale."""
    refs = copy.deepcopy(sketches)
    stack = ScaleStack(sketches)
    bucket, first_post = 5000, 0
    items: list[str] = []
    weights, posts = [], []
    runs: list[list[Run]] = [[] for _ in sketches]
    for (its, w, post), gap, correction, floor in steps:
        bucket += gap
        post = (np.zeros(len(its), np.int64) if post is None else post) + first_post
        if its:
            first_post = int(post[-1]) + 1
        items += its
        weights.append(w)
        posts.append(post)
        for m, scale_runs in enumerate(runs, 1):  # scale m: buckets m times longer
            scale_runs.append(Run(len(items), bucket // m, correction / m, floor * m))
    if not items:
        return
    w_all, post_all = np.concatenate(weights), np.concatenate(posts)
    idx = sketches[0].locate(items)
    got = stack.observe_runs(idx, w_all, post_all, runs)
    with pure_python():
        want = [
            ref.observe_runs(ref.locate(items), w_all, post_all, scale_runs)
            for ref, scale_runs in zip(refs, runs, strict=True)
        ]
    for sketch, ref, g, e in zip(stack.sketches, refs, got, want, strict=True):
        assert same_estimate(g, e)
        assert same_cells(sketch, ref)


@pytest.mark.parametrize(
    ("post", "runs", "message"),
    [
        ([0, 1, 1], [Run(2, 1, 1.0, 0.0), Run(3, 2, 1.0, 0.0)], "post boundary"),
        ([0, 1, 2], [Run(2, 1, 1.0, 0.0), Run(1, 2, 1.0, 0.0)], "non-decreasing"),
        ([0, 1, 2], [Run(2, 1, 1.0, 0.0)], "last run"),
        ([0, 1, 2], [Run(4, 1, 1.0, 0.0)], "non-decreasing"),
        (None, [Run(1, 1, 1.0, 0.0), Run(3, 2, 1.0, 0.0)], "post boundary"),
    ],
)
def test_observe_runs_refuses_runs_that_do_not_fit(
    post: list[int] | None, runs: list[Run], message: str
) -> None:
    """The compiled pass trusts its runs, so they are checked first, with a clear error."""
    sketch = RateSketch(16, 2, 0.01, 0.5)
    before = sketch.cur.copy()
    with pytest.raises(ValueError, match=message):
        sketch.observe_runs(
            sketch.locate(["a", "b", "c"]),
            np.ones(3, np.float32),
            None if post is None else np.array(post, np.int64),
            runs,
        )
    assert same(sketch.cur, before)  # nothing counted


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=30), st.sampled_from([7, 1 << 10, 1 << 16]))
def test_locate_is_the_reference(items: list[str], width: int) -> None:
    sketch, ref = RateSketch(width, 4, 0.01, 0.5), RateSketch(width, 4, 0.01, 0.5)
    with pure_python():
        want = ref.locate(items)
    assert same(sketch.locate(items), want)


def test_locate_forgets_its_memo_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference's hash memo is cleared when full, in the middle of a batch too."""
    monkeypatch.setattr("streams.sketch._MEMO_SIZE", 5)
    ref = RateSketch(1 << 10, 4, 0.01, 0.5)
    with pure_python():
        for items in (["a", "b", "c"], ["a", "b", "d", "e", "f"], ["ç", "a"]):
            assert same(ref.locate(items), RateSketch(1 << 10, 4, 0.01, 0.5).locate(items))
            assert len(ref._cache) <= 5


@settings(max_examples=100, deadline=None)
@given(st.lists(batches(), max_size=6), st.integers(1, 5))
def test_keyed_rates_are_the_reference(
    steps: list[tuple[list[str], np.ndarray, np.ndarray | None]], capacity: int
) -> None:
    keyed, ref = KeyedRates(capacity, 0.001, 0.5), KeyedRates(capacity, 0.001, 0.5)
    for bucket, (items, weights, post) in enumerate(steps):
        if not items:
            continue
        got = keyed.observe_batch(keyed.locate(items), weights, post, bucket, 0.5, 0.01)
        with pure_python():
            want = ref.observe_batch(ref.locate(items), weights, post, bucket, 0.5, 0.01)
        assert same_estimate(got, want)
        assert same_cells(keyed, ref)
    assert keyed.slots == ref.slots


def classified(rows: list[dict[str, Any]]) -> list[ClassifiedPost]:
    clf = KeywordClassifier(load_watchlist())
    return [clf.classify(Post.model_validate(r)) for r in rows]


def observe(engine: BurstEngine, posts: list[ClassifiedPost], batch: int) -> list[Alert]:
    return [
        a for i in range(0, len(posts), batch) for a in engine.observe_many(posts[i : i + batch])
    ]


def same_engines(a: BurstEngine, b: BurstEngine) -> bool:
    return (
        all(
            same_cells(x.sketch, y.sketch)
            and same_cells(x.keyed, y.keyed)
            and x.keyed.slots == y.keyed.slots
            and x.stream_mean == y.stream_mean
            for x, y in zip(a.scales, b.scales, strict=True)
        )
        and same(a.authors.last, b.authors.last)
        and a.dups._index == b.dups._index
        and list(a.dups._queue) == list(b.dups._queue)
        and list(a.candidates) == list(b.candidates)
    )


@pytest.mark.parametrize("batch", [1, 64])
def test_engine_on_the_compiled_core_is_the_reference(batch: int) -> None:
    """Claims, stances, copies, repeat authors and a burst: the same alerts and the same
    state; a checkpoint written by the reference continues identically on the compiled core."""
    rows = synthetic_stream(hours=14, per_hour=120, burst_posts=60, burst_at_hour=9.0)
    rows += synthetic_stream(hours=14, per_hour=10, burst_at_hour=12.0, seed=3)  # copies
    rows.sort(key=lambda r: str(r["created_at"]))
    posts = classified(rows)
    cut = len(posts) // 2 + 5
    params = detector_params(load_settings())
    fast, slow = BurstEngine(params, lambda: NOW), BurstEngine(params, lambda: NOW)
    got = observe(fast, posts[:cut], batch)
    with pure_python():
        want = observe(slow, posts[:cut], batch)
    assert got == want
    assert same_engines(fast, slow)
    restored = BurstEngine.loads(slow.dumps())
    restored.set_clock(lambda: NOW)
    got += observe(restored, posts[cut:], batch)
    with pure_python():
        want += observe(slow, posts[cut:], batch)
    assert got == want and any(a.kind == "claim" for a in want)
    assert same_engines(restored, slow)


@given(st.binary(max_size=200))
def test_fnv1a64_compiled_is_the_reference(data: bytes) -> None:
    assert _hashcore.fnv1a64_of(data) == fnv1a64(data)


def test_fnv1a64_known_values() -> None:
    """The published FNV-1a 64 test vectors (empty string, "a", "foobar")."""
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8
