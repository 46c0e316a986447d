"""Kafka plumbing: topic creation (concurrent creators, refusals in Kafka's words) and the
per-stage lag a replay waits on."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from seismo.collect import pending_line
from seismo.config import Settings
from seismo.contracts import ALERTS, ALL_TOPICS, DLQ, POSTS_CLASSIFIED, POSTS_RAW
from seismo.errors import SeismoError
from seismo.kafka import bootstrap_of, created_topics, ensure_topics, group_lag, pipeline_topics
from tests.timeouts import COMMAND_FINISHES, PIPELINE_DRAINS


def test_created_topics_counts_only_the_topics_this_call_made() -> None:
    errors = [("a", 0, None), ("b", 36, "Topic 'b' already exists."), ("c", 0, "")]
    assert created_topics(errors) == ["a", "c"]


def test_created_topics_stops_on_any_other_error_with_the_brokers_words() -> None:
    with pytest.raises(SeismoError, match=r"'c'.*InvalidConfigurationError: bad retention"):
        created_topics([("a", 0, None), ("c", 40, "bad retention")])
    with pytest.raises(SeismoError, match=r"'d' \(InvalidPartitionsError\)$"):
        created_topics([("d", 37)])  # v0 responses carry no message


@pytest.mark.broker
def test_two_creators_at_once_each_report_only_their_own_topics(kafka: str, namespace: str) -> None:
    settings = Settings(kafka_bootstrap=kafka, namespace=namespace)

    async def both() -> tuple[list[str], list[str]]:
        a, b = await asyncio.gather(ensure_topics(settings), ensure_topics(settings))
        return a, b

    a, b = asyncio.run(both())
    wanted = {settings.topic(t) for t in ALL_TOPICS}
    assert not set(a) & set(b)
    assert set(a) | set(b) == wanted
    assert asyncio.run(ensure_topics(settings)) == []


@pytest.mark.broker
def test_a_topic_kafka_refuses_is_a_clear_error(kafka: str, namespace: str) -> None:
    # Settings would refuse 0 partitions itself; bypass it to see what the broker says
    settings = Settings(kafka_bootstrap=kafka, namespace=namespace).model_copy(
        update={"raw_partitions": 0}
    )
    with pytest.raises(SeismoError, match=r"refused to create topic .*posts\.raw\.v1"):
        asyncio.run(ensure_topics(settings))


def test_pending_line_names_each_stage() -> None:
    line = pending_line({"raw": 12000, "classified": 345, "alerts": 0})
    assert line == "12,345 records pending (raw 12,000, classified 345, alerts 0)"


@pytest.mark.broker
def test_group_lag_is_per_topic(kafka: str, namespace: str) -> None:
    from aiokafka import AIOKafkaProducer

    settings = Settings(kafka_bootstrap=kafka, namespace=namespace)
    raw, classified, alerts = (settings.topic(t) for t in (POSTS_RAW, POSTS_CLASSIFIED, ALERTS))

    async def go() -> dict[str, int]:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(raw, b"{}", key=str(i).encode())
            await producer.send_and_wait(classified, b"{}", key=b"k")
        finally:
            await producer.stop()
        return await group_lag(bootstrap_of(settings), settings.group_id, [raw, classified, alerts])

    assert asyncio.run(go()) == {raw: 3, classified: 1, alerts: 0}


def test_the_worker_creates_faust_s_topics_as_faust_would() -> None:
    from streams.worker import build_worker, faust_topics

    settings = Settings(namespace="ns", topic_partitions=3, raw_partitions=2, classifier="keyword")
    app, _, _ = build_worker(settings)
    got = {t.name: (t.partitions, t.configs) for t in faust_topics(app)}
    compact = {"cleanup.policy": "compact"}
    assert got == {
        "ns.seismo-detector-checkpoints-changelog": (1, compact),  # one classified partition
        "ns.seismo-delivered-changelog": (3, compact),
        "ns.seismo-__assignor-__leader": (1, {}),
    }


@pytest.mark.broker
def test_a_topic_made_by_someone_else_with_other_partitions_stops_with_a_clear_error(
    kafka: str, namespace: str
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    settings = Settings(kafka_bootstrap=kafka, namespace=namespace)

    async def go() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(settings.topic(ALERTS), 1, 1)])
        finally:
            await admin.close()
        await ensure_topics(settings)

    with pytest.raises(
        SeismoError, match=r"alerts\.v1' has 1 partition\(s\), seismo creates it with 4"
    ):
        asyncio.run(go())


async def _partitions(kafka: str, prefix: str) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
    finally:
        await admin.close()


@pytest.mark.broker
@pytest.mark.slow
def test_fresh_namespaces_get_only_the_topics_and_partitions_seismo_chose(
    kafka: str, tmp_path: Path
) -> None:
    """20 fresh namespaces, in half of them `replay --alerts-out` started before the worker.

    Once the broker auto-created alerts.v1 with 1 partition for the replay's first metadata
    request (then every alert was POSTed *and* dead-lettered, the dedupe table never
    written), and a worker that started before a table's changelog was visible
    dead-lettered every post (PartitionsMismatch)."""
    from seismo.broker import free_port
    from streams.worker import build_worker, faust_topics
    from tests.helpers import (
        spawn_seismo,
        stop_process,
        synthetic_stream,
        wait_until,
        write_jsonl,
    )

    stream = write_jsonl(tmp_path / "s.jsonl", synthetic_stream())
    n_posts = sum(1 for _ in stream.open())
    base = {"SEISMO_KAFKA_BOOTSTRAP": kafka, "SEISMO_TOPIC_PARTITIONS": "2"}
    base["SEISMO_CLASSIFIER"] = "keyword"

    def want(ns: str) -> dict[str, int]:
        settings = Settings(namespace=ns, topic_partitions=2, classifier="keyword")
        app, _, _ = build_worker(settings)
        specs = [*pipeline_topics(settings), *faust_topics(app)]
        return {s.name: s.partitions for s in specs}

    def start(i: int) -> tuple[str, Any, Any, Path]:
        ns = f"fresh{uuid.uuid4().hex[:8]}"
        d = tmp_path / ns
        d.mkdir()
        env = {**base, "SEISMO_NAMESPACE": ns, "SEISMO_DATA_DIR": str(d)}
        env["SEISMO_WEB_PORT"] = str(free_port())
        replay_args = ["replay", str(stream), "--alerts-out", str(d / "a.jsonl")]
        replay_args += ["--wait-timeout", f"{PIPELINE_DRAINS:g}"]
        if i % 2 == 0:  # the replay first: it asks for alerts.v1's offsets before any worker
            replay = spawn_seismo(env, d / "replay.log", *replay_args)
            log = d / "replay.log"

            def waiting() -> bool:
                assert replay.poll() is None, log.read_text()[-3000:]
                return "waiting for the pipeline" in log.read_text()

            wait_until(waiting, "the replay waiting for the pipeline", COMMAND_FINISHES)
            worker = spawn_seismo(env, d / "worker.log", "worker")
        else:
            worker = spawn_seismo(env, d / "worker.log", "worker")
            replay = spawn_seismo(env, d / "replay.log", *replay_args)
        return ns, worker, replay, d

    at_once = 4
    for first in range(0, 20, at_once):
        runs = [start(i) for i in range(first, first + at_once)]
        try:
            for _, _, replay, d in runs:
                code = replay.wait(timeout=COMMAND_FINISHES)
                assert code == 0, (d / "replay.log").read_text()[-3000:]
                summary = json.loads((d / "replay.log").read_text().strip().splitlines()[-1])
                assert summary["sent"] == n_posts and summary["alerts"] > 0, summary
        finally:
            for _, worker, _, _ in runs:
                stop_process(worker)
        for ns, _, _, d in runs:
            log = (d / "worker.log").read_text()
            assert "PartitionsMismatch" not in log and "to DLQ" not in log, log[-3000:]
            dlq = asyncio.run(group_lag(kafka, "nobody", [f"{ns}.{DLQ}"]))
            assert dlq == {f"{ns}.{DLQ}": 0}  # nothing dead-lettered, by any stage
            assert asyncio.run(_partitions(kafka, f"{ns}.")) == want(ns)
