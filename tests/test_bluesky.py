"""Bluesky connector: record mapping, and the real SDK clients against loopback servers."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from atproto_subscription.frames import Frame

from connectors.base import Checkpoint, ConnectorRunner, CursorStore, Emit, Source
from connectors.bluesky import (
    FirehoseSource,
    JetstreamSource,
    build,
    post_from_record,
    to_time_us,
)
from connectors.cli import build_source
from seismo.config import Settings, load_settings
from seismo.contracts import Post, decode
from seismo.metrics import Metrics
from tests.fakes.bluesky import (
    T0_US,
    FakeFirehose,
    FakeJetstream,
    Faults,
    RepoEvent,
    _LogServer,
    commit_frame,
    post_events,
    tid,
)
from tests.fakes.kit import (
    MemorySink,
    SlowSink,
    connect_to_kafka,
    make_runner,
    outcomes,
    run_until,
)
from tests.helpers import finishes

NOW = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
SEEN = datetime(2026, 1, 15, 7, 59, 59, tzinfo=UTC)


# --- mapping ------------------------------------------------------------------------------


def test_post_record_maps_to_post_with_refs() -> None:
    record = {
        "$type": "app.bsky.feed.post",
        "text": "the bridge is closed",
        "createdAt": "2026-01-15T07:59:58.123Z",
        "langs": ["de", "en"],
        "reply": {
            "root": {"uri": "at://did:plc:r/app.bsky.feed.post/1", "cid": "x"},
            "parent": {"uri": "at://did:plc:p/app.bsky.feed.post/2", "cid": "y"},
        },
        "embed": {
            "$type": "app.bsky.embed.recordWithMedia",
            "record": {"record": {"uri": "at://did:plc:q/app.bsky.feed.post/3", "cid": "z"}},
        },
    }
    p = post_from_record(record, did="did:plc:a", rkey="3kabc", seen_at=SEEN, now=NOW, cid="c1")
    assert p is not None
    assert p.id == "at://did:plc:a/app.bsky.feed.post/3kabc"
    assert p.author == "did:plc:a"
    assert p.url == "https://bsky.app/profile/did:plc:a/post/3kabc"
    assert p.created_at == datetime(2026, 1, 15, 7, 59, 58, 123000, tzinfo=UTC)
    assert p.lang == "de" and p.metadata["langs"] == ["de", "en"]
    assert p.reply_to == "at://did:plc:p/app.bsky.feed.post/2"
    assert p.metadata["reply_root"] == "at://did:plc:r/app.bsky.feed.post/1"
    assert p.quote_of == "at://did:plc:q/app.bsky.feed.post/3"
    assert p.ingested_at == NOW


def test_plain_quote_and_untrusted_created_at() -> None:
    record = {
        "text": "look",
        "createdAt": "2099-01-01T00:00:00Z",  # far future: the relay's time wins
        "embed": {"$type": "app.bsky.embed.record", "record": {"uri": "at://q", "cid": "z"}},
    }
    p = post_from_record(record, did="did:plc:a", rkey="k", seen_at=SEEN, now=NOW)
    assert p is not None and p.quote_of == "at://q" and p.created_at == SEEN
    assert p.lang is None and p.reply_to is None
    naive = post_from_record(
        {"text": "x", "createdAt": "2026-01-15T07:00:00"}, did="d", rkey="k", seen_at=SEEN, now=NOW
    )
    assert naive is not None and naive.created_at == SEEN


def test_image_only_post_is_none_and_bad_record_raises() -> None:
    assert post_from_record({"text": "  "}, did="d", rkey="k", seen_at=SEEN, now=NOW) is None
    with pytest.raises(ValueError):
        post_from_record({"createdAt": "x"}, did="d", rkey="k", seen_at=SEEN, now=NOW)


def test_build_picks_the_mode() -> None:
    assert isinstance(build(load_settings()), JetstreamSource)
    assert isinstance(build(load_settings(bluesky_mode="firehose")), FirehoseSource)
    assert isinstance(build_source("bluesky", load_settings()), JetstreamSource)


# --- the SDK clients against the fake servers ---------------------------------------------


def settings_for(server: _LogServer, tmp_path: Path, **kw: Any) -> Settings:
    mode = "firehose" if isinstance(server, FakeFirehose) else "jetstream"
    return load_settings(
        bluesky_mode=mode,
        bluesky_jetstream_url=server.base_uri,
        bluesky_firehose_url=server.base_uri,
        bluesky_stall_seconds=kw.pop("stall", 5.0),
        data_dir=tmp_path,
        **kw,
    )


def runner_for(source: Source, sink: MemorySink, tmp_path: Path) -> tuple[ConnectorRunner, Metrics]:
    return make_runner(source, sink, CursorStore(tmp_path / "bluesky.json"))


def start_cursor(server: _LogServer) -> dict[str, Any]:
    """A cursor just before the server's first event, so the whole log is replayed."""
    if isinstance(server, FakeFirehose):
        return {"seq": server.events[0].seq - 1}
    return {"time_us": server.events[0].time_us, "seq": server.events[0].seq - 1}


@dataclass
class Scenario:
    name: str
    faults: Faults = field(default_factory=Faults)
    sink_delay: float = 0.0
    skipped: int = 0
    min_reconnects: int = 0
    refuse_first: bool = False


SCENARIOS = [
    Scenario("normal"),
    Scenario("disconnect mid-stream", Faults(drop_after={0: 7}), min_reconnects=1),
    Scenario("garbage frame", Faults(garbage_after={0: 5}), skipped=1),
    Scenario("frame with a bad schema", Faults(invalid_after={0: 5}), skipped=1),
    Scenario("5xx then 429 at connect", Faults(refuse={0: 503, 1: 429}), min_reconnects=2),
    Scenario(
        "slow consumer dropped by the server",
        Faults(too_slow_after={0: 6}),
        sink_delay=0.01,
        min_reconnects=1,
    ),
]


SERVERS = [FakeJetstream, functools.partial(FakeJetstream, compress=True), FakeFirehose]


@pytest.mark.parametrize("server_cls", SERVERS, ids=["jetstream", "jetstream-zstd", "firehose"])
@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_scenarios(sc: Scenario, server_cls: type[_LogServer], tmp_path: Path) -> None:
    events = post_events(1, 20)
    # noise the filter or the mapping must drop: a like, a delete, an image-only post
    events[3] = RepoEvent(
        4,
        events[3].time_us,
        "did:plc:x",
        tid(4),
        collection="app.bsky.feed.like",
        record={"$type": "app.bsky.feed.like"},
    )
    events[8] = RepoEvent(9, events[8].time_us, "did:plc:author1", tid(2), operation="delete")
    events[12].record = {"$type": "app.bsky.feed.post", "text": "", "createdAt": "x"}
    parent, quoted = events[0].uri, events[1].uri
    ref = {"cid": "bafyreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lzegsiqe"}
    reply = {"root": {"uri": parent, **ref}, "parent": {"uri": parent, **ref}}
    assert events[5].record is not None and events[6].record is not None
    events[5].record["reply"] = reply
    events[6].record["embed"] = {"$type": "app.bsky.embed.record", "record": {"uri": quoted, **ref}}
    expected = [
        e.uri
        for e in events
        if e.collection.endswith("post")
        and e.operation == "create"
        and e.record
        and e.record["text"]
    ]
    async with server_cls(events, sc.faults) as server:
        source = build(settings_for(server, tmp_path))
        sink = SlowSink(sc.sink_delay)
        CursorStore(tmp_path / "bluesky.json").save(start_cursor(server))
        runner, metrics = runner_for(source, sink, tmp_path)
        await run_until(runner, lambda: len(sink.acked) >= len(expected))
    assert [p.id for p in sink.acked] == expected  # in order, none lost, none doubled
    if isinstance(server, FakeJetstream) and server.zstd is not None:
        assert server.compressed  # the SDK took the dictionary and asked for zstd frames
    by_id = {p.id: p for p in sink.acked}
    assert by_id[events[5].uri].reply_to == parent and by_id[events[6].uri].quote_of == quoted
    assert by_id[events[0].uri].lang == "en" and by_id[events[0].uri].author == events[0].did
    assert runner.stats.skipped == sc.skipped
    assert runner.stats.gaps == 0
    assert runner.stats.reconnects >= sc.min_reconnects
    assert outcomes(metrics, "bluesky", "deleted", "ignored") == [1, 1]
    saved = CursorStore(tmp_path / "bluesky.json").load()
    assert saved is not None and saved["seq"] == 20
    assert metrics.registry.get_sample_value(
        "seismo_connector_events_total", {"source": "bluesky", "outcome": "produced"}
    ) == len(expected)


@pytest.mark.parametrize("server_cls", [FakeJetstream, FakeFirehose], ids=["jetstream", "firehose"])
async def test_restart_resumes_without_gap_or_duplicate(
    server_cls: type[_LogServer], tmp_path: Path
) -> None:
    async with server_cls(post_events(1, 10)) as server:
        settings = settings_for(server, tmp_path)
        CursorStore(tmp_path / "bluesky.json").save(start_cursor(server))
        first_sink = MemorySink()
        first, _ = runner_for(build(settings), first_sink, tmp_path)
        await run_until(first, lambda: len(first_sink.acked) == 10)
        # while we are down, more is posted
        server.add(post_events(11, 10))
        second_sink = MemorySink()
        second, _ = runner_for(build(settings), second_sink, tmp_path)
        await run_until(second, lambda: len(second_sink.acked) >= 10)
    ids = [p.id for p in first_sink.acked + second_sink.acked]
    assert ids == [e.uri for e in post_events(1, 20)]
    # the second connection resumed at the cursor of post 10
    resumed = server.connections[-1]["cursor"][0]
    ten = post_events(10, 1)[0]
    assert int(resumed) == (10 if server_cls is FakeFirehose else ten.time_us)
    assert second.stats.gaps == 0 and second.stats.duplicates == 0


@pytest.mark.parametrize(
    "server_cls,reject",
    [(FakeJetstream, False), (FakeJetstream, True), (FakeFirehose, False)],
    ids=["jetstream-clamped", "jetstream-rejected", "firehose"],
)
async def test_cursor_too_old_is_reported_as_a_gap(
    server_cls: type[_LogServer], reject: bool, tmp_path: Path
) -> None:
    kwargs = {"reject_old_cursor": reject} if reject else {}
    async with server_cls(post_events(1, 10), **kwargs) as server:
        CursorStore(tmp_path / "bluesky.json").save(start_cursor(server))
        server.trim(5)  # retention dropped posts 1..5 while we were away
        sink = MemorySink()
        runner, metrics = runner_for(build(settings_for(server, tmp_path)), sink, tmp_path)
        if reject:  # refused cursor: we go on from now, so post something new
            later = post_events(11, 3, t0_us=to_time_us(datetime.now(UTC)) + 10**6)
            server.add(later)
            want = [e.uri for e in later]
        else:
            want = [e.uri for e in post_events(6, 5)]
        await run_until(runner, lambda: len(sink.acked) >= len(want))
    assert runner.stats.gaps == 1
    assert (
        metrics.registry.get_sample_value("seismo_connector_gaps_total", {"source": "bluesky"}) == 1
    )
    assert [p.id for p in sink.acked] == want


async def test_jetstream_late_first_event_after_resume_is_a_gap(tmp_path: Path) -> None:
    events = post_events(1, 3)
    async with FakeJetstream(events) as server:
        # our cursor is a minute before anything the server has: silently missing data
        early = {"time_us": events[0].time_us - 60_000_000, "seq": 0}
        CursorStore(tmp_path / "bluesky.json").save(early)
        sink = MemorySink()
        settings = settings_for(server, tmp_path, bluesky_gap_tolerance_seconds=10)
        runner, _ = runner_for(build(settings), sink, tmp_path)
        await run_until(runner, lambda: len(sink.acked) == 3)
    assert runner.stats.gaps == 1


async def test_stall_reconnects(tmp_path: Path) -> None:
    async with FakeJetstream(post_events(1, 2)) as server:
        CursorStore(tmp_path / "bluesky.json").save(start_cursor(server))
        sink = MemorySink()
        runner, _ = runner_for(build(settings_for(server, tmp_path, stall=0.3)), sink, tmp_path)
        await run_until(runner, lambda: len(server.connections) >= 3)
    assert runner.stats.reconnects >= 2
    assert [p.id for p in sink.acked] == [e.uri for e in post_events(1, 2)]


async def test_rotated_zstd_dictionary_reconnects(tmp_path: Path) -> None:
    events = post_events(1, 3)
    async with FakeJetstream(
        events, Faults(refuse={0: (400, "UnknownZstdDictionary")}), compress=True
    ) as server:
        CursorStore(tmp_path / "bluesky.json").save(start_cursor(server))
        sink = MemorySink()
        runner, _ = runner_for(build(settings_for(server, tmp_path)), sink, tmp_path)
        await run_until(runner, lambda: len(sink.acked) == 3)
    assert runner.stats.reconnects == 1 and server.compressed
    assert [p.id for p in sink.acked] == [e.uri for e in events]


async def test_forbidden_stops_the_connector(tmp_path: Path) -> None:
    async with FakeJetstream([], Faults(refuse={0: 403})) as server:
        runner, _ = runner_for(build(settings_for(server, tmp_path)), MemorySink(), tmp_path)
        with pytest.raises(Exception, match="403"):
            await finishes(runner.run(asyncio.Event()), "a refused connector")


def test_firehose_commit_with_several_ops_carries_its_seq_on_the_last_item() -> None:
    post = {"$type": "app.bsky.feed.post", "text": "a", "createdAt": "2026-01-01T00:00:00Z"}
    ops = [
        ("create", "app.bsky.feed.post/aaa", post),
        ("create", "app.bsky.feed.like/bbb", {"$type": "app.bsky.feed.like"}),
        ("create", "app.bsky.feed.post/ccc", {**post, "text": "c"}),
        ("delete", "app.bsky.feed.post/ddd", None),
    ]
    raw = commit_frame(42, T0_US, "did:plc:z", ops)
    items = FirehoseSource(load_settings())._items(Frame.from_bytes(raw))
    assert [type(i).__name__ for i in items] == ["Emit", "Emit", "Checkpoint"]
    assert [i.post.id for i in items if isinstance(i, Emit)] == [
        "at://did:plc:z/app.bsky.feed.post/aaa",
        "at://did:plc:z/app.bsky.feed.post/ccc",
    ]
    assert [i.cursor for i in items] == [None, None, {"seq": 42}]
    assert isinstance(items[-1], Checkpoint) and items[-1].outcome == "deleted"


async def test_firehose_future_cursor_is_a_gap_then_the_live_tip(tmp_path: Path) -> None:
    async with FakeFirehose(post_events(1, 5)) as server:
        CursorStore(tmp_path / "bluesky.json").save({"seq": 99})  # a relay that was reset
        sink = MemorySink()
        runner, _ = runner_for(build(settings_for(server, tmp_path)), sink, tmp_path)

        def later_posts() -> bool:
            if len(server.connections) >= 2 and len(server.events) == 5:
                server.add(post_events(6, 2))
            return len(sink.acked) >= 2

        await run_until(runner, later_posts)
    assert runner.stats.gaps == 1
    assert [p.id for p in sink.acked] == [e.uri for e in post_events(6, 2)]
    assert server.connections[1] == {}  # no cursor: the live tip
    assert CursorStore(tmp_path / "bluesky.json").load() == {"seq": 7}


@pytest.mark.broker
async def test_jetstream_to_kafka(kafka: str, namespace: str, tmp_path: Path) -> None:
    async with FakeJetstream(post_events(1, 5)) as server:
        settings = settings_for(server, tmp_path, kafka_bootstrap=kafka, namespace=namespace)
        source = build_source("bluesky", settings)
        CursorStore.for_source(settings, "bluesky").save(start_cursor(server))
        got = await connect_to_kafka(source, settings, 5)
    posts = [decode(Post, r.value) for r in got]
    assert [p.id for p in posts] == [e.uri for e in post_events(1, 5)]
    assert got[0].key == f"bluesky:{posts[0].id}".encode()
    assert got[0].timestamp == int(posts[0].created_at.timestamp() * 1000)
    saved = CursorStore.for_source(settings, "bluesky").load()
    assert saved is not None and saved["time_us"] == to_time_us(
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=post_events(5, 1)[0].time_us)
    )
