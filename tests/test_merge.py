"""The detector's merge of the raw partitions (streams/merge.py): one order whatever the
number of partitions and however their records interleave; copies dropped; waits ended by
progress markers; bounded; saved and restored mid-stream."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from streams.merge import Entry, Merge

Item = tuple[str, int]  # (a record kind, a number): ("post", post index) or ("mark", source)


def posts(n: int, sources: int, seed: int) -> list[Entry[int]]:
    """``n`` posts stamped in increasing order (some share a stamp), spread over
    ``sources`` raw partitions at random, numbered by raw offset within each."""
    rng = random.Random(seed)
    next_offset = [0] * sources
    out = []
    stamp = 1_000_000
    for i in range(n):
        stamp += rng.choice([0, 0, 1, 5, 1000])  # ties too
        s = rng.randrange(sources)
        out.append(Entry(stamp, f"x:{i:05d}", s, next_offset[s], -1, i))
        next_offset[s] += 1
    return out


def interleave(entries: list[Entry[int]], sources: int, seed: int) -> Iterator[Entry[int]]:
    """The posts as the single classified partition might get them: each source's posts in
    their order, the sources interleaved at random (one worker faster than another)."""
    rng = random.Random(seed)
    queues = [[e for e in entries if e.source == s] for s in range(sources)]
    while any(queues):
        s = rng.choice([s for s in range(sources) if queues[s]])
        for _ in range(rng.randint(1, 30)):
            if queues[s]:
                yield queues[s].pop(0)


def run(merge: Merge[int], feed: Iterator[Entry[int]], end_stamp: int) -> list[int]:
    """Push every post (classified offsets in feed order), then end with a marker per
    source past the last stamp, as the detector writes when every partition is done."""
    out: list[int] = []
    for offset, entry in enumerate(feed):
        merge.push(
            Entry(entry.stamp, entry.key, entry.source, entry.raw_offset, offset, entry.item)
        )
        out += [e.item for e in merge.pop()]
    for s in range(merge.sources):
        merge.progress(s, 10**9, end_stamp)
    out += [e.item for e in merge.pop()]
    return out


def sort_key(e: Entry[int]) -> tuple[int, str]:
    return (e.stamp, e.key)


@pytest.mark.parametrize("sources", [1, 2, 4, 7])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_order_is_the_stamp_order_whatever_the_partitions_and_their_interleaving(
    sources: int, seed: int
) -> None:
    entries = posts(3000, sources, seed)
    want = [e.item for e in sorted(entries, key=sort_key)]
    end = entries[-1].stamp + 1
    got = run(Merge(sources), interleave(entries, sources, seed * 10), end)
    assert got == want
    again = run(Merge(sources), interleave(entries, sources, seed * 10 + 1), end)
    assert again == want


def test_one_source_releases_each_post_as_it_comes_in_its_own_order() -> None:
    merge: Merge[int] = Merge(1)
    out = []
    for i, stamp in enumerate([5, 3, 9, 1]):  # not in stamp order: kept as it came
        merge.push(Entry(stamp, f"k{i}", 0, i, i, i))
        out.append([e.item for e in merge.pop()])
    assert out == [[0], [1], [2], [3]]
    assert merge.buffered == 0 and merge.late == 2  # 3 after 5, 1 after 9


def test_a_copy_classified_again_is_dropped_and_counted() -> None:
    merge: Merge[int] = Merge(2)
    merge.progress(1, 0, 10**9)  # source 1 has nothing before 10**9
    for raw_offset in [0, 1, 2, 1, 2, 3]:  # a rebalance: ingest read 1 and 2 again
        merge.push(Entry(100 + raw_offset, f"k{raw_offset}", 0, raw_offset, 0, raw_offset))
    assert [e.item for e in merge.pop()] == [0, 1, 2, 3]
    assert merge.copies == 2
    merge.progress(0, 10, 0)  # a marker: posts before raw offset 10 are all ahead of it
    assert not merge.push(Entry(500, "k9", 0, 9, 0, 9)) and merge.copies == 3


def test_a_silent_partition_holds_the_merge_until_a_marker_vouches_for_it() -> None:
    merge: Merge[int] = Merge(2)
    merge.push(Entry(100, "a", 0, 0, 0, 1))
    merge.push(Entry(200, "b", 0, 1, 1, 2))
    assert merge.pop() == [] and merge.blocking() == [1] and merge.first_offset() == 0
    merge.progress(1, 0, 100)  # nothing before 100: a post stamped 100 may still come
    assert merge.pop() == [] and merge.blocking() == [1]
    merge.progress(1, 0, 150)
    assert merge.blocking() == []
    assert [e.item for e in merge.pop()] == [1]
    assert merge.first_offset() == 1
    merge.push(Entry(180, "c", 1, 0, 2, 3))  # source 1's next post: before b
    assert [e.item for e in merge.pop()] == [3]
    assert merge.pop() == []  # b waits: source 1 silent again, its bound 150 < 200
    merge.progress(1, 1, 201)
    assert [e.item for e in merge.pop()] == [2] and merge.first_offset() is None


def test_a_post_stamped_before_a_marker_s_bound_is_released_late_not_dropped() -> None:
    merge: Merge[int] = Merge(2)
    merge.progress(1, 0, 1000)
    merge.push(Entry(900, "a", 0, 0, 0, 1))
    assert [e.item for e in merge.pop()] == [1]
    merge.progress(0, 1, 2000)
    merge.push(Entry(800, "b", 1, 0, 1, 2))  # the marker promised too much
    assert [e.item for e in merge.pop()] == [2]
    assert merge.late == 1


def test_past_max_buffered_the_first_head_goes_without_waiting() -> None:
    merge: Merge[int] = Merge(2, max_buffered=3)
    for i in range(5):
        merge.push(Entry(100 + i, f"k{i}", 0, i, i, i))
    assert [e.item for e in merge.pop()] == [0, 1]  # 5 waiting, 3 may: two go
    assert merge.forced == 2 and merge.buffered == 3


@pytest.mark.parametrize("cut", [0, 1, 500, 1777, 2999])
def test_saved_and_restored_at_any_point_it_releases_the_same_order(cut: int) -> None:
    sources = 4
    entries = posts(3000, sources, 7)
    feed = list(interleave(entries, sources, 8))
    end = entries[-1].stamp + 1
    want = run(Merge(sources), iter(feed), end)

    first: Merge[int] = Merge(sources)
    got: list[int] = []
    for offset, e in enumerate(feed[:cut]):
        first.push(Entry(e.stamp, e.key, e.source, e.raw_offset, offset, e.item))
        got += [x.item for x in first.pop()]
    data = first.dumps(lambda item: str(item).encode())
    restored = Merge.loads(data, sources, 50_000, lambda b: int(b))
    assert restored.first_offset() == first.first_offset()
    for offset, e in enumerate(feed[cut:], cut):
        restored.push(Entry(e.stamp, e.key, e.source, e.raw_offset, offset, e.item))
        got += [x.item for x in restored.pop()]
    for s in range(sources):
        restored.progress(s, 10**9, end)
    got += [x.item for x in restored.pop()]
    assert got == want


def test_a_checkpoint_of_more_partitions_than_now_is_refused() -> None:
    data = Merge[int](4).dumps(lambda item: b"")
    with pytest.raises(ValueError, match="merges 4 raw partitions, not 2"):
        Merge.loads(data, 2, 100, lambda b: 0)
    grown = Merge.loads(data, 6, 100, lambda b: 0)
    assert grown.sources == 6 and grown.blocking() == []  # nothing waits
