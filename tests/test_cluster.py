"""seismo on a real three-broker KRaft cluster: topics replicated 3 times with
min.insync.replicas=2; the leaders of posts.raw.v1 and alerts.v1 are killed (-9) mid-run.
Every post is once on the raw topic, every alert version is delivered once, and nothing is
dead-lettered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from seismo.broker import EmbeddedKafka, KafkaCluster
from seismo.contracts import ALERTS, ALERTS_DLQ, DLQ, POSTS_RAW, Post
from tests.helpers import (
    DRAIN_WAIT,
    WebhookReceiver,
    WorkerProcess,
    expected_ids,
    multi_burst_rows,
    offline_alerts,
    read_to_end,
    spawn_seismo,
    wait_until,
    worker_env_for,
    write_jsonl,
)
from tests.timeouts import BROKER_START, COMMAND_FINISHES, RECORD_ARRIVES

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def describe(bootstrap: str, topic: str) -> dict[int, dict[str, Any]]:
    """Partition -> {"leader": node id, "isr": [node ids]} of ``topic``."""

    async def go() -> dict[int, dict[str, Any]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (desc,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        return {
            p["partition"]: {"leader": p["leader"], "isr": sorted(p["isr"])}
            for p in desc["partitions"]
        }

    return asyncio.run(go())


def records(bootstrap: str, topic: str) -> list[Any]:
    return asyncio.run(read_to_end(bootstrap, topic))


def kill_leader(cluster: KafkaCluster, topic: str) -> EmbeddedKafka:
    """kill -9 the node leading partition 0 of ``topic``; returns it (stopped)."""
    node = cluster.node(describe(cluster.bootstrap, topic)[0]["leader"])
    assert node.pid is not None
    os.kill(node.pid, signal.SIGKILL)
    node.stop()  # reaps the JVM, releases its data dir
    return node


def fully_replicated(cluster: KafkaCluster, topic: str) -> bool:
    return all(len(p["isr"]) == 3 for p in describe(cluster.bootstrap, topic).values())


def test_three_brokers_lose_two_leaders_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    rows = multi_burst_rows()
    want = expected_ids(rows)  # the versions the webhook gets (the story throttle's)
    every = len(offline_alerts(Post.model_validate(r) for r in rows))  # all, on alerts.v1
    ns = "cluster"
    replay_file = write_jsonl(tmp_path / "posts.jsonl", rows)
    with KafkaCluster(tmp_path / "kafka", 3, heap="256m") as cluster:
        boot = cluster.bootstrap
        env = {
            **worker_env_for(boot, ns, tmp_path),
            "SEISMO_TOPIC_REPLICATION_FACTOR": "3",
            "SEISMO_TOPIC_MIN_INSYNC_REPLICAS": "2",
        }
        topic = {name: f"{ns}.{name}" for name in (POSTS_RAW, ALERTS, DLQ, ALERTS_DLQ)}
        with WebhookReceiver() as rx:
            env["SEISMO_WEBHOOK_URLS"] = json.dumps([rx.url])
            worker = WorkerProcess(env, tmp_path / "worker.log").start()
            try:
                assert describe(boot, topic[ALERTS])[0]["isr"] == [1, 2, 3]
                # 12 h of event time at 1440x: the replay produces for about 30 s
                replay = spawn_seismo(
                    env,
                    tmp_path / "replay.log",
                    "replay",
                    str(replay_file),
                    "--speed",
                    "1440",
                    *DRAIN_WAIT,
                    "--alerts-out",
                    str(tmp_path / "alerts.jsonl"),
                )
                wait_until(
                    lambda: len(records(boot, topic[POSTS_RAW])) >= 30,
                    "the replay producing",
                    RECORD_ARRIVES,
                )
                first = kill_leader(cluster, topic[POSTS_RAW])
                print(f"killed node {first.node_id}, leader of {topic[POSTS_RAW]}")
                first.start(BROKER_START)  # back, and in sync again before the next kill
                wait_until(
                    lambda: (
                        fully_replicated(cluster, topic[ALERTS])
                        and fully_replicated(cluster, topic[POSTS_RAW])
                    ),
                    "the restarted broker in sync",
                    BROKER_START,
                )
                rx.wait_for(lambda a: True, "a first alert")
                second = kill_leader(cluster, topic[ALERTS])  # stays down: 2 of 3 remain
                print(
                    f"killed node {second.node_id}, leader of {topic[ALERTS]}, with "
                    f"{len(rx.requests)} of {len(want)} alert versions delivered, the replay "
                    f"{'running' if replay.poll() is None else 'done'}"
                )
                assert replay.wait(COMMAND_FINISHES) == 0, (tmp_path / "replay.log").read_text()
                summary = json.loads((tmp_path / "replay.log").read_text().splitlines()[-1])
                rx.wait_for(lambda a: len(rx.requests) >= len(want), "every alert version")
            finally:
                assert worker.stop() == 0, worker.log_text()[-3000:]
        print("replay summary:", summary)
        raw = Counter(json.loads(r.value)["id"] for r in records(boot, topic[POSTS_RAW]))
        assert raw == Counter(r["id"] for r in rows)  # every post once
        keys = Counter(h["Idempotency-Key"] for h in rx.headers)
        assert keys == Counter(f"{i}.v{v}" for i, v in want)  # every version once
        assert records(boot, topic[DLQ]) == [] and records(boot, topic[ALERTS_DLQ]) == []
        assert summary["alerts"] == every and summary["dead_lettered"] == 0
