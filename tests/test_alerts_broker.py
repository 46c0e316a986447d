"""Alert delivery on the real broker: webhook down -> alerts.dlq.v1 -> redeliver, once."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import jsonschema
import pytest
from aiokafka import AIOKafkaProducer

from seismo.config import Settings
from seismo.contracts import Alert, FailedDelivery
from seismo.kafka import ensure_topics
from seismo.verify import verify_signature
from tests.helpers import (
    WRITER_SCHEMA,
    WebhookReceiver,
    WorkerProcess,
    make_alert,
    run_seismo,
    wait_until,
)
from tests.timeouts import RECORD_ARRIVES

pytestmark = pytest.mark.broker


def produce_records(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """(key, value) records, in order."""

    async def go() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await p.start()
        try:
            for key, value in records:
                await p.send_and_wait(topic, value, key=key)
        finally:
            await p.stop()

    asyncio.run(go())


def produce_alerts(bootstrap: str, topic: str, alerts: list[Alert]) -> None:
    produce_records(bootstrap, topic, [(a.id.encode(), a.to_bytes()) for a in alerts])


def wait_parked(env: dict[str, str], want: int) -> list[FailedDelivery]:
    """Records on alerts.dlq.v1, read with a dry run (which commits nothing)."""
    items: list[dict[str, str]] = []

    def parked() -> list[dict[str, str]] | None:
        nonlocal items
        res = run_seismo(env, "alerts", "redeliver", "--dry-run")
        assert res.returncode == 0, res.stderr[-2000:]
        items = [json.loads(x) for x in res.stdout.splitlines()[:-1]]
        return items if len(items) >= want else None

    got = wait_until(
        parked, lambda: f"{want} parked deliveries (have {len(items)})", RECORD_ARRIVES, 1.0
    )
    return got  # type: ignore[return-value]


def test_target_down_goes_to_dlq_then_redeliver_delivers_once(
    worker_env: dict[str, str], kafka: str, tmp_path: Path
) -> None:
    ns = worker_env["SEISMO_NAMESPACE"]
    alerts = [make_alert(1, "open"), make_alert(2, "update"), make_alert(1, id="other")]
    with WebhookReceiver(fail_first=10**6) as rx:
        env = {
            **worker_env,
            "SEISMO_WEBHOOK_URLS": json.dumps([rx.url]),
            "SEISMO_WEBHOOK_SECRETS": '["whsec-1"]',
            "SEISMO_DELIVERY__ATTEMPTS": "3",
            "SEISMO_DELIVERY__BACKOFF_SECONDS": "0.05",
            # also how often a sink that is down is probed: not during this test
            "SEISMO_DELIVERY__MAX_BACKOFF_SECONDS": "3600",
        }
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            produce_alerts(kafka, f"{ns}.alerts.v1", alerts)
            parked = wait_parked(env, len(alerts))
        finally:
            assert worker.stop() == 0, worker.log_text()[-3000:]
        # the first version spent the whole retry budget; the sink was down then, so the
        # others were parked at once, untried
        assert rx.attempts == 3 and rx.requests == []
        assert {p["request"] for p in parked} == {"abc123.v1", "abc123.v2", "other.v1"}
        assert {p["target"] for p in parked} == {rx.url}

        rx.fail_first = 0  # the target is back
        res = run_seismo(env, "alerts", "redeliver")
        assert res.returncode == 0, res.stderr[-3000:]
        summary = json.loads(res.stdout.splitlines()[-1])
        assert summary == {"read": 3, "sent": 3, "failed": 0, "skipped": 0}
        assert "[3/3]" in res.stderr  # progress
        keys = sorted(h["Idempotency-Key"] for h in rx.headers)
        assert keys == ["abc123.v1", "abc123.v2", "other.v1"]
        for body, h in zip(rx.raw, rx.headers, strict=True):
            verify_signature(body, h["Seismo-Signature"], ["whsec-1"])
            jsonschema.validate(json.loads(body), WRITER_SCHEMA)

        # a second run has nothing left: each alert version was received once
        again = run_seismo(env, "alerts", "redeliver")
        assert again.returncode == 0, again.stderr[-3000:]
        assert json.loads(again.stdout.splitlines()[-1])["read"] == 0
        assert len(rx.requests) == 3


def _topics_of(worker_env: dict[str, str], kafka: str) -> None:
    """Create the namespace's topics, as any seismo command would (the broker does not)."""
    settings = Settings(
        kafka_bootstrap=kafka,
        namespace=worker_env["SEISMO_NAMESPACE"],
        topic_partitions=int(worker_env["SEISMO_TOPIC_PARTITIONS"]),
    )
    asyncio.run(ensure_topics(settings))


def test_redeliver_parks_again_what_still_fails(worker_env: dict[str, str], kafka: str) -> None:
    ns = worker_env["SEISMO_NAMESPACE"]
    _topics_of(worker_env, kafka)
    with WebhookReceiver(fail_first=10**6, fail_status=410) as rx:
        env = {**worker_env, "SEISMO_WEBHOOK_URLS": json.dumps([rx.url])}
        alert = make_alert(1)
        dead = FailedDelivery(
            alert_id=alert.id,
            alert_version=1,
            sink="webhook",
            target=rx.url,
            reason="HTTP 503",
            attempts=5,
            failed_at=alert.detected_at,
            alert=alert.model_dump(mode="json"),
        )

        async def park() -> None:
            p = AIOKafkaProducer(bootstrap_servers=kafka)
            await p.start()
            try:
                await p.send_and_wait(f"{ns}.alerts.dlq.v1", dead.to_bytes(), key=b"abc123")
                await p.send_and_wait(f"{ns}.alerts.dlq.v1", b"not json", key=b"x")
            finally:
                await p.stop()

        asyncio.run(park())
        res = run_seismo(env, "alerts", "redeliver")
        assert res.returncode == 1, res.stderr[-3000:]
        summary = json.loads(res.stdout.splitlines()[-1])
        assert summary == {"read": 2, "sent": 0, "failed": 1, "skipped": 1}
        assert rx.attempts == 1  # a 410 is not retried
        # it is parked again with its count, and the next run finds only that record
        rx.fail_first = 0
        res = run_seismo(env, "alerts", "redeliver")
        assert res.returncode == 0, res.stderr[-3000:]
        assert json.loads(res.stdout.splitlines()[-1]) == {
            "read": 1,
            "sent": 1,
            "failed": 0,
            "skipped": 0,
        }
        assert [h["Idempotency-Key"] for h in rx.headers] == ["abc123.v1"]


def test_a_dry_run_tells_what_a_real_run_would_do(worker_env: dict[str, str], kafka: str) -> None:
    ns = worker_env["SEISMO_NAMESPACE"]
    _topics_of(worker_env, kafka)
    with WebhookReceiver() as rx:
        env = {**worker_env, "SEISMO_WEBHOOK_URLS": json.dumps([rx.url])}
        alert = make_alert(1)
        gone = "http://127.0.0.1:9/removed-from-settings"
        parked = [
            FailedDelivery(
                alert_id=alert.id,
                alert_version=1,
                sink="webhook",
                target=target,
                reason="HTTP 503",
                attempts=5,
                failed_at=alert.detected_at,
                alert=alert.model_dump(mode="json"),
            )
            for target in (rx.url, gone)
        ]
        produce_records(kafka, f"{ns}.alerts.dlq.v1", [(b"abc123", p.to_bytes()) for p in parked])

        dry = run_seismo(env, "alerts", "redeliver", "--dry-run")
        assert dry.returncode == 0, dry.stderr[-3000:]
        *items, summary = [json.loads(x) for x in dry.stdout.splitlines()]
        assert [(i["target"], i["outcome"]) for i in items] == [
            (rx.url, "would_send"),
            (gone, "would_fail"),
        ]
        assert items[1]["reason"] == f"webhook {gone} is not configured any more"
        assert "would fail (webhook" in dry.stderr
        assert summary == {
            **{"read": 2, "sent": 0, "failed": 0, "skipped": 0},
            **{"would_send": 1, "would_fail": 1},
        }
        assert rx.attempts == 0

        # the real run does what the dry run said
        res = run_seismo(env, "alerts", "redeliver")
        *items, summary = [json.loads(x) for x in res.stdout.splitlines()]
        assert [i["outcome"] for i in items] == ["sent", "failed"]
        assert items[1]["reason"] == f"webhook {gone} is not configured any more"
        assert summary == {"read": 2, "sent": 1, "failed": 1, "skipped": 0}


def test_a_dead_and_a_hanging_webhook_do_not_hold_up_a_healthy_one(
    worker_env: dict[str, str], kafka: str, tmp_path: Path
) -> None:
    """One webhook refuses connections, one accepts and never answers (its tries time out
    only after an hour): the healthy webhook gets every alert version meanwhile, once."""
    ns = worker_env["SEISMO_NAMESPACE"]
    alerts = [make_alert(1, "open"), make_alert(2, "update"), make_alert(1, id="other")]
    alerts += [make_alert(3, "update"), make_alert(2, "update", id="other")]
    with WebhookReceiver() as gone:
        refused = gone.url  # closed after this block: the port refuses
    with WebhookReceiver() as rx, socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(8)
        env = {
            **worker_env,
            "SEISMO_WEBHOOK_URLS": json.dumps(
                [refused, f"http://127.0.0.1:{hanging.getsockname()[1]}/hook", rx.url]
            ),
            "SEISMO_DELIVERY__TIMEOUT_SECONDS": "3600",
            "SEISMO_DELIVERY__BACKOFF_SECONDS": "3600",
            "SEISMO_DELIVERY__MAX_BACKOFF_SECONDS": "3600",
        }
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            produce_alerts(kafka, f"{ns}.alerts.v1", alerts)
            rx.wait_for(lambda r: len(rx.requests) >= len(alerts), "every alert version")
        finally:
            assert worker.stop() == 0, worker.log_text()[-3000:]
        keys = sorted(h["Idempotency-Key"] for h in rx.headers)
        assert keys == sorted(f"{a.id}.v{a.version}" for a in alerts)
