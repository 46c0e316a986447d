"""The worker stages' rules without a broker: plain dicts for the tables, fakes for the rest.

A copy of a post counted once (by detect), restore and catch-up, checkpoint-after-send
ordering, DLQ routing and delivery dedupe, each run in-process through the same stage
objects the agents call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from models.keyword import KeywordClassifier
from seismo.config import load_settings
from seismo.contracts import Alert, ClassifiedPost, FailedDelivery, Post, Progress, decode
from seismo.metrics import Metrics
from seismo.watchlist import load_watchlist
from streams.delivery import AlertSinks, FileSink, HttpSink, RetryPolicy, SinkFailed
from streams.detector import BurstEngine
from streams.params import DetectorParams
from streams.pipeline import OfflinePipeline, detector_params
from streams.stages import (
    DeliverStage,
    DetectStage,
    IngestStage,
    Record,
    Rejected,
)
from tests.helpers import make_alert, multi_burst_rows

RAW, CLASSIFIED, ALERTS = "posts.raw.v1", "posts.classified.v1", "alerts.v1"
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def new_metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process="all")


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def make_post(i: int | str, text: str = "nothing to see here") -> Post:
    return Post(id=str(i), source="x", text=text, created_at=T0)


def raw(post: Post, offset: int, partition: int = 0) -> Record:
    return Record(partition, offset, post.to_bytes(), post.key.encode(), RAW)


class CountingClassifier:
    """Classifies nothing (no dossier, no claim); counts the posts it was given and raises
    for a post whose text is ``poison``."""

    name = "counting-v1"

    def __init__(self) -> None:
        self.posts: list[str] = []

    def classify(self, post: Post) -> ClassifiedPost:
        return self.classify_batch([post])[0]

    def classify_batch(self, posts: Sequence[Post]) -> list[ClassifiedPost]:
        if any(p.text == "poison" for p in posts):
            raise ValueError("poison")
        self.posts += [p.key for p in posts]
        return [ClassifiedPost(post=p) for p in posts]


def ingest_stage(
    classifier: CountingClassifier | None = None, metrics: Metrics | None = None
) -> IngestStage:
    return IngestStage(classifier or CountingClassifier(), metrics or new_metrics())


def keys(out: Any) -> list[str]:
    return [cp.post.key for _, cp in out.posts]


# --- ingest: stateless ----------------------------------------------------------------


def test_ingest_keeps_no_state_a_copy_is_classified_and_sent_again() -> None:
    """Ingest remembers nothing: a copy (within a batch, in a later batch, at the same or
    another offset) goes on to posts.classified.v1; detect counts it once (below)."""
    clf, metrics = CountingClassifier(), new_metrics()
    stage = ingest_stage(clf, metrics=metrics)
    a, b = make_post("a"), make_post("b")
    out = stage.handle([raw(a, 0), raw(b, 1), raw(a, 2)])
    out2 = stage.handle([raw(b, 3), raw(b, 3)])
    assert keys(out) == ["x:a", "x:b", "x:a"] and keys(out2) == ["x:b", "x:b"]
    assert clf.posts == ["x:a", "x:b", "x:a", "x:b", "x:b"]
    assert sample(metrics, "seismo_posts_in_total", stage="ingest", source="x") == 5
    assert sample(metrics, "seismo_duplicates_skipped_total", stage="ingest") == 0


# --- ingest: DLQ -----------------------------------------------------------------------


def test_a_bad_raw_record_is_rejected_with_its_reason_and_the_batch_goes_on() -> None:
    metrics = new_metrics()
    stage = ingest_stage(metrics=metrics)
    bad = Record(0, 1, b"{broken", b"bad", RAW)
    out = stage.handle([raw(make_post("a"), 0), bad, raw(make_post("b"), 2)])
    assert keys(out) == ["x:a", "x:b"]
    assert [(r.stage, r.record.offset) for r in out.rejected] == [("ingest", 1)]
    assert "Post" in out.rejected[0].reason or "JSON" in out.rejected[0].reason
    assert sample(metrics, "seismo_dlq_total", stage="ingest") == 1


def test_a_failed_classifier_batch_falls_back_to_one_by_one() -> None:
    clf, metrics = CountingClassifier(), new_metrics()
    stage = ingest_stage(clf, metrics=metrics)
    batch = [raw(make_post("a"), 0), raw(make_post("p", "poison"), 1), raw(make_post("b"), 2)]
    out = stage.handle(batch)
    assert keys(out) == ["x:a", "x:b"]
    assert [(r.record.offset, r.reason) for r in out.rejected] == [(1, "ValueError: poison")]
    assert sample(metrics, "seismo_dlq_total", stage="ingest") == 1


# --- detect ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classified() -> list[Record]:
    """The multi-burst stream, classified: one posts.classified.v1 partition."""
    clf = KeywordClassifier(load_watchlist())
    posts = [Post.model_validate(r) for r in multi_burst_rows()]
    return [
        Record(0, i, cp.to_bytes(), cp.post.key.encode(), CLASSIFIED)
        for i, cp in enumerate(clf.classify_batch(posts))
    ]


class Log(list[tuple[str, Any]]):
    """What happened, in order: sends, flushes and checkpoint-table writes."""


class ListSend:
    """A DetectSend that keeps what it is given."""

    def __init__(self, log: Log | None = None) -> None:
        self.log = Log() if log is None else log
        self.sent: list[Alert] = []
        self.rejected_records: list[Rejected] = []

    async def alerts(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            self.log.append(("alerts", len(alerts)))
        self.sent += alerts

    async def rejected(self, rejected: Sequence[Rejected]) -> None:
        self.rejected_records += rejected

    async def flush(self) -> None:
        self.log.append(("flush", None))


class LoggedTable(dict[str, Any]):
    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log

    def __setitem__(self, key: str, value: Any) -> None:
        self.log.append(("write", key))
        super().__setitem__(key, value)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def detect_stage(
    table: dict[str, Any],
    gap: list[Record] | None = None,
    clock: Clock | None = None,
    checkpoint_seconds: float = math.inf,
    metrics: Metrics | None = None,
    sources: int = 1,
    params: DetectorParams | None = None,
) -> tuple[DetectStage, list[tuple[int, int, int]]]:
    """A detect stage on ``table``; its catch-up reader serves ``gap`` and logs its calls."""
    reads: list[tuple[int, int, int]] = []

    async def catch_up(partition: int, start: int, end: int) -> list[tuple[int, bytes | None]]:
        reads.append((partition, start, end))
        out = []
        for r in gap or []:
            if r.partition == partition and start <= r.offset < end:
                assert isinstance(r.value, bytes)
                out.append((r.offset, r.value))
        return out

    stage = DetectStage(
        params or detector_params_default(),
        table,
        metrics or new_metrics(),
        catch_up=catch_up,
        checkpoint_seconds=checkpoint_seconds,
        catch_up_batch=64,
        clock=clock or Clock(),
        now=lambda: T0,
        wall=lambda: T0,
        sources=sources,
    )
    return stage, reads


def detector_params_default() -> DetectorParams:
    return detector_params(load_settings())


def batches(records: list[Record], size: int = 50) -> Iterator[list[Record]]:
    for i in range(0, len(records), size):
        yield records[i : i + size]


def versions(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    """The alerts without their wall-clock field."""
    return [a.model_dump(exclude={"detected_at"}) for a in alerts]


async def run_all(stage: DetectStage, records: list[Record], send: ListSend) -> None:
    for batch in batches(records):
        await stage.handle(batch, send)


async def uninterrupted(records: list[Record]) -> tuple[DetectStage, ListSend]:
    """A fresh stage run over ``records`` in batches of 50, and what it sent."""
    stage, _ = detect_stage({})
    send = ListSend()
    await run_all(stage, records, send)
    return stage, send


async def test_a_restored_engine_caught_up_through_the_reader_matches_an_uninterrupted_run(
    classified: list[Record],
) -> None:
    whole, whole_send = await uninterrupted(classified)
    assert len(classified) > 350 and whole_send.sent  # the stream raises alerts

    # a worker checkpoints after its first 100 records, counts 200 more, then crashes
    table: dict[str, Any] = {}
    clock = Clock()
    first, _ = detect_stage(table, clock=clock, checkpoint_seconds=10)
    send1 = ListSend()
    await first.handle(classified[:50], send1)
    clock.t = 10.0
    await first.handle(classified[50:100], send1)  # due: checkpoint at offset 99
    await run_all(first, classified[100:300], send1)  # not due: not in the checkpoint
    assert table["0:meta"]["offset"] == 99

    # the next one resumes at the committed offset 250 (the consumer's, not the checkpoint's)
    second, reads = detect_stage(table, gap=classified)
    send2 = ListSend()
    await second.handle(classified[250:300], send2)
    await run_all(second, classified[300:], send2)
    assert reads == [(0, 100, 250)]  # what came after the checkpoint, up to the batch
    engine, expected = second.engines[0], whole.engines[0]
    assert engine.offset == expected.offset == len(classified) - 1
    assert_same_state(engine, expected)
    # the versions raised after the checkpoint are sent again, the same ones; nothing else
    sent1 = {(a.id, a.version): a for a in send1.sent}
    again = [a for a in send2.sent if (a.id, a.version) in sent1]
    assert again and versions(again) == versions([sent1[(a.id, a.version)] for a in again])
    union = {(a.id, a.version): a for a in send1.sent + send2.sent}
    assert sorted(union) == sorted((a.id, a.version) for a in whole_send.sent)
    assert versions(sorted(union.values(), key=_order)) == versions(
        sorted(whole_send.sent, key=_order)
    )


async def test_the_detect_stage_exports_the_event_time_its_detector_watched(
    classified: list[Record],
) -> None:
    """``seismo_detector_watched_seconds``: from the first post to the start of the
    detector's current bucket (what a replay's ``why_no_alerts`` compares with the warm-up)."""
    metrics = new_metrics()
    stage, _ = detect_stage({}, metrics=metrics)
    await stage.handle(classified[:100], ListSend())
    posts = [decode(ClassifiedPost, r.value) for r in classified[:100]]
    first, last = (posts[i].post.created_at.timestamp() for i in (0, -1))
    watched = sample(metrics, "seismo_detector_watched_seconds", partition="0")
    assert last - first - 300 < watched <= last - first and watched > 0


async def test_a_restored_engine_follows_the_settings_of_the_stage_that_restores_it(
    classified: list[Record],
) -> None:
    """The settings a worker starts with apply to the detector it restores (a changed
    threshold or update pace is not ignored until the checkpoints are wiped)."""
    table: dict[str, Any] = {}
    clock = Clock()
    first, _ = detect_stage(table, clock=clock, checkpoint_seconds=10)
    await first.handle(classified[:50], ListSend())
    clock.t = 10.0
    await first.handle(classified[50:100], ListSend())
    assert table["0:meta"]["offset"] == 99
    changed = dataclasses.replace(
        detector_params_default(), min_score=5.5, story_update_seconds=600
    )
    second, _ = detect_stage(table, gap=classified, params=changed)
    await second.handle(classified[100:150], ListSend())
    engine = second.engines[0]
    assert engine.offset == 149 and engine.p == changed != first.engines[0].p
    assert engine.book.throttle.update_seconds == 600


def assert_same_state(a: BurstEngine, b: BurstEngine) -> None:
    """Equal field by field, arrays included (a checkpoint's pickle is not byte-stable)."""
    assert_same(a.__getstate__(), b.__getstate__(), "engine")


def assert_same(x: Any, y: Any, path: str) -> None:
    assert type(x) is type(y), path
    if isinstance(x, np.ndarray):
        assert np.array_equal(x, y), path
    elif isinstance(x, dict):  # (an object's attributes may be set in another order)
        assert (list(x) if isinstance(x, OrderedDict) else set(x)) == (
            list(y) if isinstance(y, OrderedDict) else set(y)
        ), path
        for k in x:
            assert_same(x[k], y[k], f"{path}.{k}")
    elif isinstance(x, list | tuple | deque):
        assert len(x) == len(y), path
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            assert_same(u, v, f"{path}[{i}]")
    elif hasattr(x, "__dict__") or hasattr(x, "__slots__"):
        assert_same(_fields(x), _fields(y), path)
    else:
        assert x == y, path


def _fields(obj: Any) -> dict[str, Any]:
    """What an object saves (its own ``__getstate__``: a cache left out), else its fields."""
    if type(obj).__getstate__ is not object.__getstate__:
        state = obj.__getstate__()
        if isinstance(state, dict):
            return state
    names = [*getattr(obj, "__dict__", {}), *getattr(type(obj), "__slots__", ())]
    return {n: getattr(obj, n) for n in names if hasattr(obj, n)}


def _order(alert: Alert) -> tuple[str, int]:
    return (alert.id, alert.version)


async def test_records_at_or_below_the_engines_offset_are_skipped(
    classified: list[Record],
) -> None:
    stage, _ = detect_stage({})
    send = ListSend()
    await stage.handle(classified[:100], send)
    await stage.handle(classified[50:120], send)  # redelivered after a rebalance
    assert sample(stage.metrics, "seismo_duplicates_skipped_total", stage="detect") == 50
    assert stage.engines[0].repeats == 0  # by offset, before the engine (not by post key)
    assert stage.engines[0].offset == 119


def _copies(records: list[Record], every: int = 7) -> list[Record]:
    """``records`` with a copy of every ``every``-th one right after it (at the next offset,
    the offsets after it shifted: a post sent twice), and the number of copies."""
    out: list[Record] = []
    for r in records:
        out.append(Record(r.partition, len(out), r.value, r.key, r.topic))
        if r.offset % every == 0:
            out.append(Record(r.partition, len(out), r.value, r.key, r.topic))
    return out


async def test_a_copy_of_a_post_at_another_offset_is_skipped_by_detect(
    classified: list[Record],
) -> None:
    """Ingest sends every copy on; detect counts each post once (its memory of recent post
    keys), so the alerts are those of the stream without copies, and a later re-run of the
    whole stream raises nothing: its old posts are too late, its recent ones remembered."""
    _, plain = await uninterrupted(classified)
    stage, _ = detect_stage({})
    send = ListSend()
    doubled = _copies(classified)
    await run_all(stage, doubled, send)
    copies = len(doubled) - len(classified)
    assert versions(send.sent) == versions(plain.sent)
    assert stage.engines[0].repeats == copies
    assert sample(stage.metrics, "seismo_duplicates_skipped_total", stage="detect") == copies
    per_dossier = Counter(
        d for r in classified for d in ClassifiedPost.model_validate_json(r.value).dossiers
    )
    dossier, want = per_dossier.most_common(1)[0]

    def trend() -> float:
        return sample(stage.metrics, "seismo_dossier_posts_total", dossier=dossier)

    assert want > 0 and trend() == want  # the trend series count each post once too

    rerun = [Record(0, len(doubled) + r.offset, r.value, r.key, r.topic) for r in classified]
    again = ListSend()
    await run_all(stage, rerun, again)
    engine = stage.engines[0]
    assert again.sent == []
    assert engine.repeats + engine.too_late == copies + len(classified)
    assert engine.repeats > copies  # the recent ones by key
    assert trend() == want  # every re-run post is remembered: none counted again


async def test_a_checkpoint_is_written_only_after_its_alerts_were_sent_and_flushed(
    classified: list[Record],
) -> None:
    log = Log()
    clock = Clock()
    stage, _ = detect_stage(LoggedTable(log), clock=clock, checkpoint_seconds=5)
    send = ListSend(log)
    await stage.handle(classified[:100], send)  # the engine starts its checkpoint clock
    checked = 0
    for batch in batches(classified[100:], 100):
        start = len(log)
        clock.t += 5  # due every batch
        await stage.handle(batch, send)
        step = log[start:]
        writes = [i for i, (what, _) in enumerate(step) if what == "write"]
        assert writes, "a due checkpoint was written"
        sends = [i for i, (what, _) in enumerate(step) if what == "alerts"]
        flush = step.index(("flush", None))
        assert all(i < flush for i in sends) and flush < writes[0]
        assert step[writes[-1]] == ("write", "0:meta")  # the meta entry last
        assert stage.checkpoints.offset(0) == batch[-1].offset
        checked += bool(sends)
    assert checked  # some batches raised alerts before their checkpoint


async def test_no_checkpoint_and_no_flush_before_it_is_due(classified: list[Record]) -> None:
    log = Log()
    stage, _ = detect_stage(LoggedTable(log), clock=Clock(), checkpoint_seconds=5)
    await stage.handle(classified[:300], ListSend(log))
    assert [what for what, _ in log if what in ("write", "flush")] == []


async def test_a_bad_classified_record_is_rejected_and_the_rest_is_counted(
    classified: list[Record],
) -> None:
    _, good_send = await uninterrupted(classified)

    metrics = new_metrics()
    stage, _ = detect_stage({}, metrics=metrics)
    send = ListSend()
    bad = Record(0, 100, b'{"post": 1}', b"bad", CLASSIFIED)
    with_bad = [*classified[:100], bad, *(_shift(r, 1) for r in classified[100:])]
    await run_all(stage, with_bad, send)
    assert [(r.stage, r.record.offset) for r in send.rejected_records] == [("detect", 100)]
    assert "ClassifiedPost" in send.rejected_records[0].reason
    assert sample(metrics, "seismo_dlq_total", stage="detect") == 1
    assert versions(send.sent) == versions(good_send.sent)


def _shift(record: Record, by: int) -> Record:
    return Record(record.partition, record.offset + by, record.value, record.key, record.topic)


async def test_a_partition_that_cannot_be_restored_rejects_its_records(
    classified: list[Record],
) -> None:
    metrics = new_metrics()
    stage, _ = detect_stage({}, metrics=metrics)

    async def broken(partition: int, start: int, end: int) -> list[tuple[int, bytes | None]]:
        raise ConnectionError("broker away")

    stage.catch_up = broken
    send = ListSend()
    await stage.handle(classified[10:20], send)  # 0..9 not counted: a catch-up is needed
    assert [r.record.offset for r in send.rejected_records] == list(range(10, 20))
    assert send.rejected_records[0].reason == "ConnectionError: broker away"
    assert sample(metrics, "seismo_dlq_total", stage="detect") == 10


# --- offline pipeline ------------------------------------------------------------------


def test_the_offline_pipeline_skips_a_post_fed_twice() -> None:
    posts = [Post.model_validate(r) for r in multi_burst_rows()]
    clf = KeywordClassifier(load_watchlist())
    once = OfflinePipeline(clf, detector_params_default(), clock=lambda: T0)
    twice = OfflinePipeline(clf, detector_params_default(), clock=lambda: T0)
    a = once.feed_many(posts)
    b = twice.feed_many(posts[:300]) + twice.feed_many(posts[250:300] + posts[300:])
    assert a and versions(a) == versions(b)
    assert sample(twice.metrics, "seismo_duplicates_skipped_total", stage="detect") == 50
    assert twice.engine.repeats == 50
    assert isinstance(once.engine, BurstEngine) and once.engine is once.detect.engines[0]


# --- deliver ---------------------------------------------------------------------------


class RecordingSink(HttpSink):
    """A webhook that takes (or refuses) every version without HTTP."""

    kind = "webhook"

    def __init__(self, url: str, fail: bool = False) -> None:
        super().__init__(url, RetryPolicy(attempts=1))
        self.got: list[tuple[str, int]] = []
        self.fail = fail

    async def send(
        self,
        session: aiohttp.ClientSession,
        alert: Alert,
        raw: dict[str, Any],
        tried: Any = None,
        attempts: int | None = None,
    ) -> int:
        if self.fail:
            raise SinkFailed(f"{self.url} refused", 1, down=False)
        self.got.append((alert.id, alert.version))
        return 1


class DeliverRun:
    """A deliver stage on real sink lanes; ``finished`` records the records acked."""

    def __init__(self, tmp_path: Path, delivered: dict[str, Any], fail: bool = False) -> None:
        self.metrics = new_metrics()
        self.sink = RecordingSink("http://writer.invalid/hook", fail=fail)
        self.file = FileSink(tmp_path / "alerts.jsonl")
        self.sinks = AlertSinks(self.metrics, webhooks=[self.sink], file=self.file)
        self.parked: list[FailedDelivery] = []
        self.acked: list[int] = []
        self.stage = DeliverStage(self.sinks, delivered, self.metrics, park=self.park)

    async def park(self, failed: FailedDelivery) -> None:
        self.parked.append(failed)

    async def finished(self, record: Record) -> None:
        self.acked.append(record.offset)

    async def deliver(self, records: list[Record]) -> Any:
        out = self.stage.handle(records, self.finished)
        for _ in range(200):
            if len(self.acked) >= len(out.held):
                break
            await asyncio.sleep(0.01)
        return out


def alert_record(alert: Alert, offset: int) -> Record:
    return Record(0, offset, alert.to_bytes(), alert.id.encode(), ALERTS)


async def test_an_alert_version_is_delivered_once_per_sink_across_a_replay(
    tmp_path: Path,
) -> None:
    delivered: dict[str, Any] = {}
    run = DeliverRun(tmp_path, delivered)
    v1 = alert_record(make_alert(1), 0)
    try:
        out = await run.deliver([v1])
        assert out.held == [v1] and run.acked == [0]
        # the record read again (a crash before its offset was committed): no sink lacks it
        again = await run.deliver([v1])
        assert again.held == [] and run.acked == [0]
        assert sample(run.metrics, "seismo_duplicates_skipped_total", stage="deliver") == 1
    finally:
        await run.sinks.close()
    assert run.sink.got == [("abc123", 1)]
    assert len(run.file.path.read_text().splitlines()) == 1
    assert set(delivered.values()) == {1} and len(delivered) == 2  # one key per sink

    # after a restart with only the file sink's record kept: the webhook alone gets it
    del delivered[next(k for k in delivered if "@webhook:" in k)]
    run2 = DeliverRun(tmp_path, delivered)
    try:
        assert (await run2.deliver([v1])).held == [v1]
    finally:
        await run2.sinks.close()
    assert run2.sink.got == [("abc123", 1)]
    assert len(run2.file.path.read_text().splitlines()) == 1  # not written again
    # a newer version goes to both
    run3 = DeliverRun(tmp_path, delivered)
    try:
        await run3.deliver([alert_record(make_alert(2, "update"), 1)])
    finally:
        await run3.sinks.close()
    assert run3.sink.got == [("abc123", 2)]
    assert len(run3.file.path.read_text().splitlines()) == 2


async def test_a_refused_version_is_parked_recorded_and_acked(tmp_path: Path) -> None:
    delivered: dict[str, Any] = {}
    run = DeliverRun(tmp_path, delivered, fail=True)
    try:
        out = await run.deliver([alert_record(make_alert(1), 7)])
    finally:
        await run.sinks.close()
    assert out.held and run.acked == [7]
    assert [(f.alert_id, f.alert_version, f.sink) for f in run.parked] == [("abc123", 1, "webhook")]
    assert sample(run.metrics, "seismo_dlq_total", stage="deliver") == 1
    assert len(delivered) == 2  # parked counts as done for that sink


async def test_a_bad_alert_record_is_rejected_with_its_reason(tmp_path: Path) -> None:
    run = DeliverRun(tmp_path, {})
    try:
        good = alert_record(make_alert(1), 1)
        out = await run.deliver([Record(0, 0, b"[]", b"x", ALERTS), good])
    finally:
        await run.sinks.close()
    assert [(r.stage, r.record.offset) for r in out.rejected] == [("deliver", 0)]
    assert out.held == [good]
    assert sample(run.metrics, "seismo_dlq_total", stage="deliver") == 1


# --- detect: the merge of several raw partitions -----------------------------------------


def spread(records: list[Record], sources: int, seed: int) -> list[Record]:
    """The classified stream as ``sources`` raw partitions would give it: each post stamped
    (``ingested_at``, in stream order) and placed in a raw partition by its key, the
    partitions' records interleaved at random in the one classified partition, then a
    progress marker per raw partition (every one classified to its end)."""
    rng = random.Random(seed)
    queues: list[list[ClassifiedPost]] = [[] for _ in range(sources)]
    for i, r in enumerate(records):
        assert isinstance(r.value, bytes)
        cp = decode(ClassifiedPost, r.value)
        part = zlib.crc32(cp.post.key.encode()) % sources
        post = cp.post.model_copy(update={"ingested_at": T0 + timedelta(milliseconds=i)})
        placed = cp.model_copy(
            update={"post": post, "raw_partition": part, "raw_offset": len(queues[part])}
        )
        queues[part].append(placed)
    values: list[bytes] = []
    while any(queues):
        part = rng.choice([p for p in range(sources) if queues[p]])
        for _ in range(rng.randint(1, 40)):
            if queues[part]:
                values.append(queues[part].pop(0).to_bytes())
    ends = T0 + timedelta(days=1)
    for part in range(sources):
        values.append(Progress(raw_partition=part, raw_offset=10**6, not_before=ends).to_bytes())
    return [Record(0, i, v, None, CLASSIFIED) for i, v in enumerate(values)]


async def test_any_number_of_raw_partitions_in_any_interleaving_gives_the_same_alerts(
    classified: list[Record],
) -> None:
    """1, 2 or 4 raw partitions, their records interleaved differently each time (one worker
    faster than another): the merge gives the detector one order, so the same alerts."""
    one = spread(classified, 1, 0)
    _, want = await uninterrupted(one)
    assert len(want.sent) >= 3
    for sources, seed in [(2, 1), (4, 2), (4, 3)]:
        stage, _ = detect_stage({}, sources=sources)
        send = ListSend()
        await run_all(stage, spread(classified, sources, seed), send)
        assert versions(send.sent) == versions(want.sent), (sources, seed)
        assert stage.merges[0].buffered == 0 and stage.waiting_from(0) is None
        assert stage.merges[0].late == 0


async def test_a_restart_mid_merge_restores_the_waiting_posts_and_gives_the_same_alerts(
    classified: list[Record],
) -> None:
    records = spread(classified, 4, 5)
    _, whole = await uninterrupted(spread(classified, 1, 0))
    table: dict[str, Any] = {}
    clock = Clock()
    first, _ = detect_stage(table, clock=clock, checkpoint_seconds=10, sources=4)
    send1 = ListSend()
    await run_all(first, records[:150], send1)
    clock.t = 10.0
    await first.handle(records[150:200], send1)  # a checkpoint, posts waiting in the merge
    assert first.merges[0].buffered > 0 and table["0:meta"]["offset"] == 199
    await run_all(first, records[200:260], send1)  # then a crash

    second, reads = detect_stage(table, gap=records, sources=4)
    send2 = ListSend()
    await run_all(second, records[240:], send2)  # the consumer resumes at 240
    assert reads == [(0, 200, 240)]
    union = {(a.id, a.version): a for a in send1.sent + send2.sent}
    assert versions(sorted(union.values(), key=_order)) == versions(sorted(whole.sent, key=_order))


def test_progress_markers_only_for_silent_raw_partitions_classified_to_their_end() -> None:
    stage, _ = detect_stage({}, sources=3)
    assert stage.progress(0, {}, 5.0) == []  # nothing waits
    early = make_post("a").model_copy(update={"ingested_at": T0 - timedelta(minutes=1)})
    post = ClassifiedPost(post=early, raw_partition=0, raw_offset=0)
    stage.count(0, [Record(0, 0, post.to_bytes(), None, CLASSIFIED)])
    assert stage.waiting_from(0) == 0
    # raw 1: committed to its end; raw 2: 3 records not committed yet
    marks = stage.progress(0, {0: (1, 1), 1: (40, 40), 2: (9, 6)}, 5.0)
    assert [(m.raw_partition, m.raw_offset) for m in marks] == [(1, 40)]
    assert marks[0].not_before == T0 - timedelta(seconds=5)
    assert stage.count(0, [Record(0, 1, marks[0].to_bytes(), None, CLASSIFIED)]).alerts == []
    assert stage.waiting_from(0) == 0  # raw 2 still silent
    assert [m.raw_partition for m in stage.progress(0, {2: (9, 9)}, 5.0)] == [2]


async def test_one_hop_the_detect_stage_takes_raw_records_and_moves_past_rejected_ones(
    classified: list[Record],
) -> None:
    """With one raw partition the worker's ingest agent hands its batch to the detect stage
    by raw offset; a record ingest rejected comes as None and only moves the offset (no
    catch-up read for it), and the alerts are those of the classified stream."""
    _, want = await uninterrupted(classified)
    stage, reads = detect_stage({})
    send = ListSend()
    raw: list[Record] = []
    offset = 0
    for i, r in enumerate(classified):
        assert isinstance(r.value, bytes)
        if i % 50 == 0:  # a record ingest rejected, first in its batch
            raw.append(Record(0, offset, None))
            offset += 1
        raw.append(Record(0, offset, decode(ClassifiedPost, r.value)))
        offset += 1
    await run_all(stage, raw, send)
    assert reads == [] and stage.engines[0].offset == offset - 1
    assert versions(send.sent) == versions(want.sent)
    assert sample(stage.metrics, "seismo_dlq_total", stage="detect") == 0


async def test_one_hop_catch_up_reads_raw_records_and_classifies_them_again() -> None:
    """The one-hop worker's catch-up reader: raw records read again, classified again,
    given by raw offset, not counted again; a record that is not a post (it went to the DLQ)
    is left out, and so is a post that fails to classify."""
    from streams.agents import _classified_again

    calls: list[tuple[str, int, int, int]] = []

    async def read(topic: str, partition: int, start: int, end: int) -> list[Any]:
        calls.append((topic, partition, start, end))
        return [
            (5, make_post("a").to_bytes()),
            (6, b"{not a post"),
            (7, make_post("b").to_bytes()),
            (8, make_post("c", "poison").to_bytes()),
        ]

    clf, metrics = CountingClassifier(), new_metrics()
    got = await _classified_again(read, RAW, ingest_stage(clf, metrics), 0, 5, 9)
    assert calls == [(RAW, 0, 5, 9)] and clf.posts == ["x:a", "x:b"]
    # counted when first read: no record in, no DLQ record again
    assert sample(metrics, "seismo_dlq_total", stage="ingest") == 0
    assert sample(metrics, "seismo_posts_in_total", stage="ingest", source="x") == 0
    assert [o for o, _ in got] == [5, 7]
    cps = [decode(ClassifiedPost, v or b"") for _, v in got]
    assert [(c.post.key, c.raw_partition, c.raw_offset) for c in cps] == [
        ("x:a", 0, 5),
        ("x:b", 0, 7),
    ]
