"""Scale-out: two workers in one consumer group share the partitions and raise the same
alerts as the pipeline in one process, each delivered once (real broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seismo.broker import free_port
from tests.helpers import (
    WebhookReceiver,
    WorkerProcess,
    expected_ids,
    multi_burst_rows,
    replay_summary,
    write_jsonl,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def held_partitions(worker: WorkerProcess, topic: str) -> set[int]:
    """Partitions of ``topic`` the worker holds now (its /healthz)."""
    health = worker.healthz()
    assert health is not None, "the worker's /healthz does not answer"
    return set(health["partitions"].get(topic, []))


def test_two_workers_share_partitions_and_raise_the_same_alerts(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    rows = multi_burst_rows()
    want = expected_ids(rows)
    assert len(want) >= 3
    stream = write_jsonl(tmp_path / "stream.jsonl", rows)
    env = {**worker_env, "SEISMO_TOPIC_PARTITIONS": "4"}
    with WebhookReceiver() as rx:
        env["SEISMO_WEBHOOK_URLS"] = json.dumps([rx.url])
        workers = []
        for name in ("a", "b"):
            # same namespace = same consumer group; own web port and local state
            own = {
                "SEISMO_WEB_PORT": str(free_port()),
                "SEISMO_DATA_DIR": str(tmp_path / f"seismo-{name}"),
            }
            workers.append(WorkerProcess(env | own, tmp_path / f"worker-{name}.log"))
        try:
            for w in workers:
                w.start()
            summary = replay_summary(env, stream, "--alerts-out", str(tmp_path / "alerts.jsonl"))
            assert summary["sent"] == len(rows)
            rx.wait_for(lambda a: (a["id"], a["version"]) in want, "an expected alert")
            got = [(a["id"], a["version"]) for a in rx.requests]
            assert set(got) == want
            assert len(got) == len(set(got)), "an alert version was delivered twice"
            written = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
            assert {(a["id"], a["version"]) for a in written if a.get("deliver", True)} == want

            # deliver runs on alerts.v1 (4 partitions): the two workers split them
            alerts = f"{env['SEISMO_NAMESPACE']}.alerts.v1"
            parts = [held_partitions(w, alerts) for w in workers]
            assert all(parts), f"a worker holds no alerts partition: {parts}"
            assert not parts[0] & parts[1], f"a partition held by both: {parts}"
            assert parts[0] | parts[1] == {0, 1, 2, 3}
        finally:
            for w in workers:
                assert w.stop() == 0, w.log_text()[-3000:]
