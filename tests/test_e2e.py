"""End to end on the real broker: replay in, alert out through a webhook; DLQ on bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.helpers import (
    WebhookReceiver,
    WorkerProcess,
    http_get,
    read_topic,
    replay_summary,
    synthetic_stream,
    wait_until,
    write_jsonl,
)
from tests.timeouts import RECORD_ARRIVES

pytestmark = pytest.mark.broker


def test_replay_to_webhook_alert(worker_env: dict[str, str], tmp_path: Path) -> None:
    rows = synthetic_stream()
    replay_file = write_jsonl(
        tmp_path / "stream.jsonl", rows, iter(["{not json", '{"id": "n1", "source": "x"}'])
    )
    with WebhookReceiver() as rx:
        env = {
            **worker_env,
            "SEISMO_WEBHOOK_URLS": json.dumps([rx.url]),
            # one record at a time (the other broker tests batch, the default)
            "SEISMO_CLASSIFY_BATCH_SIZE": "1",
            "SEISMO_DETECTOR__BATCH_SIZE": "1",
        }
        worker = WorkerProcess(
            env, tmp_path / "worker.log", "--alerts-out", str(tmp_path / "worker-alerts.jsonl")
        ).start()
        try:
            out = tmp_path / "alerts.jsonl"
            summary = replay_summary(env, replay_file, "--alerts-out", str(out))
            assert summary["sent"] == len(rows) and summary["dead_lettered"] == 2

            claim_alerts = rx.wait_for(
                lambda a: a["key"] == "claim:glm5-trained-on-ascend", "the claim's alert"
            )
            a = claim_alerts[0]
            assert a["dossier"] == "china-ai-rising" and a["kind"] == "claim"
            assert a["raised_at"] >= "2026-05-01T10:00:00Z"
            assert a["raised_at"] <= "2026-05-01T10:20:00Z"
            assert a["observed"] >= 3 and a["score"] >= 4.5
            assert all(e["url"].startswith("https://bsky.app/") for e in a["evidence"])
            assert set(a["stance_mix"]) <= {"support", "deny", "query", "comment"}
            assert a["sources"] == {"bluesky": a["posts_seen"]}
            assert 1 <= len(a["evidence"]) <= a["posts_seen"]
            assert (
                a["lead_source"] == "bluesky"
                and "claim:glm5-trained-on-ascend" in a["related_keys"]
            )
            # no alert for the background chatter
            assert all("burst" in e["post_id"] for al in rx.requests for e in al["evidence"][:3])

            # every version is on alerts.v1 and in the worker's file; the webhook gets those
            # the story throttle lets through (issue 17)
            written = [json.loads(x) for x in out.read_text().splitlines()]
            assert {(w["id"], w["version"]) for w in written if w.get("deliver", True)} == {
                (r["id"], r["version"]) for r in rx.requests
            }
            worker_file = (tmp_path / "worker-alerts.jsonl").read_text().splitlines()
            assert len(worker_file) == len(written)
            # each alert version delivered exactly once
            assert len({(r["id"], r["version"]) for r in rx.requests}) == len(rx.requests)

            port = env["SEISMO_WEB_PORT"]
            metrics = http_get(f"http://127.0.0.1:{port}/metrics").decode()
            assert 'seismo_posts_in_total{source="x",stage="ingest"}' in metrics
            assert "seismo_alerts_total{" in metrics
            assert 'seismo_alerts_open{dossier="china-ai-rising",severity=' in metrics
            assert 'seismo_delivery_attempts_total{result="2xx",sink="webhook"}' in metrics
            assert 'seismo_delivery_latency_seconds_count{sink="webhook"}' in metrics
            assert "seismo_processing_latency_seconds_bucket" in metrics
        finally:
            assert worker.stop() == 0, worker.log_text()[-3000:]


def test_malformed_record_goes_to_dlq_and_worker_keeps_going(
    worker_env: dict[str, str], kafka: str, tmp_path: Path
) -> None:
    ns = worker_env["SEISMO_NAMESPACE"]
    # two raw partitions: the detect stage reads posts.classified.v1 (with one, ingest
    # counts the posts itself and nothing reads that topic)
    worker_env = {**worker_env, "SEISMO_RAW_PARTITIONS": "2"}
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:

        async def produce() -> None:
            p = AIOKafkaProducer(bootstrap_servers=kafka)
            await p.start()
            try:
                await p.send_and_wait(f"{ns}.posts.raw.v1", b"\x00\xffnot a post", key=b"bad")
                await p.send_and_wait(
                    f"{ns}.posts.raw.v1",
                    b'{"id":"n1","source":"x","text":"missing time"}',
                    key=b"bad2",
                )
                good = {
                    "id": "ok1",
                    "source": "x",
                    "text": "Huawei Ascend chips for GLM-5",
                    "created_at": "2026-05-01T10:00:00Z",
                }
                await p.send_and_wait(f"{ns}.posts.raw.v1", json.dumps(good).encode(), key=b"x:ok1")
                # a record the detect stage cannot read, in the middle of its batch
                await p.send_and_wait(f"{ns}.posts.classified.v1", b"{garbage", key=b"badc")
            finally:
                await p.stop()

        asyncio.run(produce())
        dlq = [json.loads(v) for v in asyncio.run(read_topic(kafka, f"{ns}.dlq.v1", 3))]
        assert len(dlq) == 3
        by_key = {d["key"]: d for d in dlq}
        assert {k: d["stage"] for k, d in by_key.items()} == {
            "bad": "ingest",
            "bad2": "ingest",
            "badc": "detect",
        }
        assert "invalid Post" in by_key["bad"]["reason"] and "not a post" in by_key["bad"]["value"]
        assert "created_at: Field required" in by_key["bad2"]["reason"]
        assert "invalid ClassifiedPost" in by_key["badc"]["reason"]
        classified = asyncio.run(read_topic(kafka, f"{ns}.posts.classified.v1", 2))
        posts = [v for v in classified if v.startswith(b'{"post"')]  # not garbage, not markers
        assert [json.loads(v)["post"]["id"] for v in posts] == ["ok1"]
        port = worker_env["SEISMO_WEB_PORT"]
        counted = 'seismo_posts_in_total{source="x",stage="detect"}'
        wait_until(lambda: metric_value(port, counted) >= 1, counted, RECORD_ARRIVES)
        metrics = http_get(f"http://127.0.0.1:{port}/metrics").decode()
        assert 'seismo_dlq_total{stage="ingest"} 2.0' in metrics
        assert 'seismo_dlq_total{stage="detect"} 1.0' in metrics
        assert worker.proc is not None and worker.proc.poll() is None  # still running
    finally:
        assert worker.stop() == 0


def metric_value(port: str, series: str) -> float:
    text = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def metric_sum(port: str, name: str) -> float:
    """The sum of every series of ``name`` (all label values)."""
    text = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_copies_reach_detect_and_are_counted_once(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    """Ingest keeps no state: every copy of a post reaches detect. A copy whose key the
    detector still remembers (the last ``detector.seen_posts`` posts) is skipped as a
    duplicate; an older one, forgotten there, is too far behind the detector's event time
    to count (``detector.max_lateness_seconds``). Nothing is counted twice."""
    rows = synthetic_stream(hours=12, per_hour=200)  # 2,415 posts
    env = {**worker_env, "SEISMO_DETECTOR__SEEN_POSTS": "1000"}
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    port = env["SEISMO_WEB_PORT"]
    detect = 'seismo_duplicates_skipped_total{stage="detect"}'
    late = "seismo_detector_too_late_total"

    def skipped() -> tuple[float, float, float]:
        return (
            metric_value(port, 'seismo_duplicates_skipped_total{stage="ingest"}'),
            metric_value(port, detect),
            metric_sum(port, late),
        )

    try:
        replay_summary(env, write_jsonl(tmp_path / "all.jsonl", rows))
        replay_summary(env, write_jsonl(tmp_path / "new.jsonl", rows[-40:]))
        replay_summary(env, write_jsonl(tmp_path / "old.jsonl", rows[:30]))
        wait_until(
            lambda: skipped() == (0, 40, 30),
            lambda: f"no ingest skips, {detect} 40 and {late} 30; at {skipped()}",
            RECORD_ARRIVES,
        )
        counted = {
            source: metric_value(port, f'seismo_posts_in_total{{source="{source}",stage="detect"}}')
            for source in {r["source"] for r in rows}
        }
        assert sum(counted.values()) == len(rows) + 70, counted  # every copy reaches detect
    finally:
        worker.stop()
