"""Webhook and file sinks against a real loopback HTTP receiver."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from seismo.contracts import Alert, Evidence
from seismo.metrics import Metrics
from streams.delivery import AlertSinks, FileSink, WebhookSink
from tests.helpers import WebhookReceiver

T = datetime(2026, 5, 1, 10, tzinfo=UTC)


def make_alert() -> Alert:
    return Alert(
        id="abc123",
        kind="claim",
        key="claim:glm5",
        label="glm5",
        terms=["glm-5", "ascend"],
        dossier="china-ai-rising",
        claim="glm5",
        window_start=T,
        window_seconds=3600,
        raised_at=T,
        first_seen=T,
        observed=6,
        expected=0.3,
        score=5.1,
        evidence=[Evidence(post_id="bluesky:1", source="bluesky", created_at=T, text="GLM-5")],
        detected_at=T,
    )


def deliver(sinks: AlertSinks, alert: Alert) -> list[str]:
    async def go() -> list[str]:
        try:
            return await sinks.deliver(alert)
        finally:
            await sinks.close()

    return asyncio.run(go())


def test_webhook_retries_5xx_then_delivers_once(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    with WebhookReceiver(fail_first=2) as rx:
        sinks = AlertSinks(
            metrics,
            webhooks=[WebhookSink(rx.url, token="tok", backoff=0.01)],
            file=FileSink(tmp_path / "alerts.jsonl"),
        )
        assert deliver(sinks, make_alert()) == []
        assert rx.attempts == 3 and len(rx.requests) == 1
        assert rx.requests[0]["id"] == "abc123"
        assert rx.headers[0]["Idempotency-Key"] == "abc123.v1"
        assert rx.headers[0]["Authorization"] == "Bearer tok"
    line = json.loads((tmp_path / "alerts.jsonl").read_text())
    assert line["evidence"][0]["post_id"] == "bluesky:1"
    assert (
        metrics.registry.get_sample_value(
            "seismo_alert_deliveries_total", {"sink": "webhook", "outcome": "ok"}
        )
        == 1
    )


def test_webhook_4xx_is_not_retried() -> None:
    metrics = Metrics(CollectorRegistry())
    with WebhookReceiver(fail_first=10, fail_status=400) as rx:
        sinks = AlertSinks(metrics, webhooks=[WebhookSink(rx.url, backoff=0.01)])
        failures = deliver(sinks, make_alert())
        assert rx.attempts == 1
        assert len(failures) == 1 and "HTTP 400" in failures[0]


def test_webhook_down_reports_failure_after_all_tries() -> None:
    metrics = Metrics(CollectorRegistry())
    with WebhookReceiver(fail_first=100) as rx:
        sinks = AlertSinks(metrics, webhooks=[WebhookSink(rx.url, attempts=3, backoff=0.01)])
        failures = deliver(sinks, make_alert())
        assert rx.attempts == 3 and "failed after 3 tries: HTTP 503" in failures[0]
    assert (
        metrics.registry.get_sample_value(
            "seismo_alert_deliveries_total", {"sink": "webhook", "outcome": "failed"}
        )
        == 1
    )
