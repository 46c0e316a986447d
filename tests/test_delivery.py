"""Sinks against a real loopback HTTP receiver; signatures; the writer contract."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client import CollectorRegistry

from seismo.broker import free_port
from seismo.contracts import Alert, Changes, StanceShift
from seismo.metrics import Metrics
from seismo.verify import SignatureError, sign, verify_signature
from seismo.watchlist import load_watchlist
from streams.delivery import (
    AlertSinks,
    ChatSink,
    DeliveryFailure,
    FileSink,
    Handoff,
    RetryPolicy,
    WebhookSink,
    chat_target,
    retryable,
)
from streams.payloads import dossier_update, slack_message
from tests.helpers import (
    REPO,
    WRITER_SCHEMA,
    WebhookReceiver,
    finishes,
    make_alert,
    wait_until,
    wait_until_async,
)
from tests.timeouts import HTTP_REQUEST, PROCESS_STOPS, RECORD_ARRIVES, SERVICE_READY

FAST = RetryPolicy(attempts=4, backoff_seconds=0.01, max_backoff_seconds=0.05, timeout_seconds=2.0)


def deliver(sinks: AlertSinks, *alerts: Alert) -> list[DeliveryFailure]:
    async def go() -> list[DeliveryFailure]:
        out: list[DeliveryFailure] = []
        try:
            for a in alerts:
                out += await sinks.deliver(a)
        finally:
            await sinks.close()
        return out

    return asyncio.run(go())


def sample(metrics: Metrics, sink: str, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(
        "seismo_alert_deliveries_total", {"sink": sink, "outcome": outcome}
    )


def tries(metrics: Metrics, sink: str) -> dict[str, float]:
    """seismo_delivery_attempts_total of ``sink`` by result (results never seen left out)."""
    out = {}
    for result in ["2xx", "4xx", "5xx", "timeout", "error"]:
        v = metrics.registry.get_sample_value(
            "seismo_delivery_attempts_total", {"sink": sink, "result": result}
        )
        if v is not None:
            out[result] = v
    return out


# --- signatures ---------------------------------------------------------------------------


def test_signature_round_trip_and_rotation() -> None:
    body = b'{"a":1}'
    header = sign(body, ["old", "new"], timestamp=1_000)
    assert header.startswith("t=1000,v1=") and header.count("v1=") == 2
    assert verify_signature(body, header, ["new"], now=1_100) == 1_000
    assert verify_signature(body, header, ["other", "old"], now=900) == 1_000


@pytest.mark.parametrize(
    ("body", "header", "secrets", "now", "why"),
    [
        (b'{"a":2}', sign(b'{"a":1}', ["s"], 1_000), ["s"], 1_000, "no signature matches"),
        (b'{"a":1}', sign(b'{"a":1}', ["s"], 1_000), ["wrong"], 1_000, "no signature matches"),
        (b'{"a":1}', sign(b'{"a":1}', ["s"], 1_000), ["s"], 1_301, "outside the 300s"),
        (b'{"a":1}', sign(b'{"a":1}', ["s"], 1_000), ["s"], 699, "outside the 300s"),
        (b'{"a":1}', None, ["s"], 1_000, "missing"),
        (b'{"a":1}', "t=abc,v1=00", ["s"], 1_000, "not an integer"),
        (b'{"a":1}', "v1=00", ["s"], 1_000, "needs t="),
    ],
)
def test_signature_rejects(
    body: bytes, header: str | None, secrets: list[str], now: float, why: str
) -> None:
    with pytest.raises(SignatureError, match=why):
        verify_signature(body, header, secrets, now=now)


# --- webhook retries ----------------------------------------------------------------------


def test_webhook_retries_5xx_then_delivers_once_signed(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    with WebhookReceiver(fail_first=2) as rx:
        sinks = AlertSinks(
            metrics,
            webhooks=[WebhookSink(rx.url, FAST, secrets=["s3cret"], token="tok")],
            file=FileSink(tmp_path / "alerts.jsonl"),
        )
        assert deliver(sinks, make_alert()) == []
        assert rx.attempts == 3 and len(rx.requests) == 1
        assert rx.requests[0]["id"] == "abc123"
        h = rx.headers[0]
        assert h["Idempotency-Key"] == "abc123.v1" and h["Authorization"] == "Bearer tok"
        verify_signature(rx.raw[0], h["Seismo-Signature"], ["s3cret"])
        jsonschema.validate(rx.bodies[0], WRITER_SCHEMA)
    line = json.loads((tmp_path / "alerts.jsonl").read_text())
    assert line["evidence"][0]["post_id"] == "bluesky:2"
    assert sample(metrics, "webhook", "ok") == 1 and sample(metrics, "file", "ok") == 1
    assert tries(metrics, "webhook") == {"5xx": 2, "2xx": 1} and tries(metrics, "file") == {}
    latency = "seismo_delivery_latency_seconds_count"
    assert metrics.registry.get_sample_value(latency, {"sink": "webhook"}) == 1


def test_flaky_receiver_accepts_exactly_one_delivery_per_alert_version() -> None:
    metrics = Metrics(CollectorRegistry())
    versions = [make_alert(1, "open"), make_alert(2, "update"), make_alert(3, "resolved")]
    with WebhookReceiver(fail_first_per_key=2) as rx:
        sinks = AlertSinks(metrics, webhooks=[WebhookSink(rx.url, FAST, secrets=["k"])])
        assert deliver(sinks, *versions) == []
        assert rx.attempts == 9  # two failures and one success per version
        keys = [h["Idempotency-Key"] for h in rx.headers]
        assert keys == ["abc123.v1", "abc123.v2", "abc123.v3"]
        assert [b["alert"]["status"] for b in rx.bodies] == ["open", "update", "resolved"]


def test_webhook_4xx_is_not_retried_but_429_is() -> None:
    metrics = Metrics(CollectorRegistry())
    with WebhookReceiver(fail_first=10, fail_status=400) as rx:
        sinks = AlertSinks(metrics, webhooks=[WebhookSink(rx.url, FAST)])
        failures = deliver(sinks, make_alert())
        assert rx.attempts == 1
        assert len(failures) == 1 and "HTTP 400" in failures[0].reason
        assert failures[0].attempts == 1 and failures[0].target == rx.url
    with WebhookReceiver(fail_first=2, fail_status=429) as rx:
        sinks = AlertSinks(metrics, webhooks=[WebhookSink(rx.url, FAST)])
        assert deliver(sinks, make_alert()) == [] and rx.attempts == 3
    assert tries(metrics, "webhook") == {"4xx": 3, "2xx": 1}
    assert [s for s in range(400, 600) if retryable(s)] == [429, *range(500, 600)]


def test_webhook_down_reports_failure_after_all_tries() -> None:
    metrics = Metrics(CollectorRegistry())
    policy = RetryPolicy(attempts=3, backoff_seconds=0.01, timeout_seconds=2.0)
    with WebhookReceiver(fail_first=100) as rx:
        sinks = AlertSinks(metrics, webhooks=[WebhookSink(rx.url, policy)])
        failures = deliver(sinks, make_alert())
        assert rx.attempts == 3 and "failed after 3 tries: HTTP 503" in failures[0].reason
        assert failures[0].attempts == 3
    assert sample(metrics, "webhook", "failed") == 1


def test_connection_refused_is_retried_then_reported() -> None:
    with WebhookReceiver() as rx:
        url = rx.url  # the server is gone after this block: the port refuses
    sinks = AlertSinks(Metrics(CollectorRegistry()), webhooks=[WebhookSink(url, FAST)])
    (failure,) = deliver(sinks, make_alert())
    assert "failed after 4 tries: ClientConnectorError" in failure.reason
    assert tries(sinks.metrics, "webhook") == {"error": 4}
    # a delivery that failed every try is not a delivery latency
    latency = "seismo_delivery_latency_seconds_count"
    assert sinks.metrics.registry.get_sample_value(latency, {"sink": "webhook"}) is None


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    p = RetryPolicy(backoff_seconds=1.0, max_backoff_seconds=5.0)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = {p.delay(attempt) for _ in range(20)}
        assert all(cap / 2 <= d <= cap for d in delays) and len(delays) > 1
    assert p.delay(1, retry_after=3.0) == 3.0 and p.delay(1, retry_after=60.0) == 5.0


# --- bodies -------------------------------------------------------------------------------


def test_dossier_update_body_matches_schema_and_carries_the_writers_material() -> None:
    alert = make_alert()
    raw = {**alert.model_dump(mode="json"), "peak_rate": 4.2, "evidence_extra": [1]}
    raw["evidence"][0]["lang"] = "en"  # fields a newer detector adds pass through
    body = dossier_update(alert, raw, load_watchlist())
    jsonschema.validate(body, WRITER_SCHEMA)
    assert body["request_id"] == "abc123.v1" and body["dossier"]["id"] == "china-ai-rising"
    assert body["dossier"]["title"]
    assert body["alert"]["peak_rate"] == 4.2 and "evidence" not in body["alert"]
    assert body["evidence"][0]["lang"] == "en"
    (claim,) = body["claims"]
    assert claim["id"] == "glm5-trained-on-ascend" and "Ascend" in claim["text"]
    assert claim["stance_mix"] == {"support": 1, "deny": 1} and body["contested"] is True
    # the lead source is the earliest post, not the newest
    assert body["lead_source"]["url"] == "https://bsky.app/post/1"
    assert {v["author"] for v in body["voices"]} == {"skeptic", "reporter"}
    assert "6 posts" in body["why"]["summary"] and body["why"]["score"] == 5.1
    # the same alert version gives the same body (a redelivery is identical)
    assert dossier_update(alert, raw, load_watchlist()) == body


def test_schema_rejects_a_body_missing_the_alert_version() -> None:
    alert = make_alert()
    body = dossier_update(alert, alert.model_dump(mode="json"))
    del body["alert"]["version"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, WRITER_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(WRITER_SCHEMA)


def test_alert_without_dossier_or_evidence() -> None:
    alert = make_alert().model_copy(update={"dossier": None, "claim": None, "evidence": []})
    body = dossier_update(alert, alert.model_dump(mode="json"))
    jsonschema.validate(body, WRITER_SCHEMA)
    assert body["dossier"] is None and body["lead_source"] is None and body["claims"] == []


def test_a_chat_message_says_what_changed_since_the_last_delivered_version() -> None:
    changes = Changes(
        since_version=1,
        new_posts=7,
        new_independent_posts=5,
        new_sources=["reddit"],
        stance_shift=[StanceShift(stance="deny", before=0.1, after=0.5)],
        severity_from="medium",
    )
    alert = make_alert(2, "update").model_copy(update={"changes": changes})
    msg = slack_message(alert)
    line = next(t for t in _sections(msg) if t.startswith("*Since v1:*"))
    assert "+7 posts (5 independent)" in line and "new sources: reddit" in line
    assert "deny 10% → 50% of stanced posts" in line and "severity was medium" in line
    assert not any(t.startswith("*Since") for t in _sections(slack_message(make_alert())))


def _sections(msg: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in msg["blocks"] if b["type"] == "section" and "text" in b]


def test_chat_sink_posts_slack_blocks_and_hides_its_url() -> None:
    msg = slack_message(make_alert(2, "update"))
    assert msg["text"].startswith("[HIGH] update: glm5-trained-on-ascend")
    types = [b["type"] for b in msg["blocks"]]
    assert types == ["header", "section", "section", "section", "context"]
    assert "<https://bsky.app/post/2|skeptic on bluesky>" in msg["blocks"][3]["text"]["text"]
    with WebhookReceiver(fail_first=1) as rx:
        chat = ChatSink(rx.url, FAST)
        assert chat.target == chat_target(rx.url) and rx.url not in chat.target
        sinks = AlertSinks(Metrics(CollectorRegistry()), chats=[chat])
        assert deliver(sinks, make_alert()) == []
        assert rx.bodies[0]["blocks"][0]["type"] == "header"
        assert "Seismo-Signature" not in rx.headers[0]
        assert tries(sinks.metrics, "chat") == {"5xx": 1, "2xx": 1}


# --- the reference receiver example ---------------------------------------------------


def test_reference_receiver_verifies_and_drops_repeats(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "examples/receiver.py", "--port", str(port), "--secret", "rx-secret"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/hook"
    try:

        def listening() -> bool:
            try:
                urllib.request.urlopen(
                    urllib.request.Request(url, data=b"", method="POST"), timeout=HTTP_REQUEST
                )
            except urllib.error.HTTPError:
                return True  # it answered (an empty body is refused)
            except OSError:
                return False
            return True

        wait_until(listening, "the reference receiver listening", SERVICE_READY)
        ok = WebhookSink(url, FAST, secrets=["old-secret", "rx-secret"])
        bad = WebhookSink(url, FAST, secrets=["not-the-secret"])
        sinks = AlertSinks(Metrics(CollectorRegistry()), webhooks=[ok])
        assert deliver(sinks, make_alert(1), make_alert(1), make_alert(2, "update")) == []
        refusing = AlertSinks(Metrics(CollectorRegistry()), webhooks=[bad])
        (refused,) = deliver(refusing, make_alert(3))
        assert "HTTP 401" in refused.reason and refused.attempts == 1
        # a captured request replayed with a tampered body is refused too
        body = b'{"request_id": "x.v1"}'
        req = urllib.request.Request(
            url, data=body + b" ", headers={"Seismo-Signature": sign(body, ["rx-secret"])}
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        assert err.value.code == 401
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=PROCESS_STOPS)
    accepted = [json.loads(line) for line in out.splitlines()]
    assert [a["request_id"] for a in accepted] == ["abc123.v1", "abc123.v2"]


def test_sinks_from_settings(tmp_path: Path) -> None:
    from seismo.config import load_settings
    from streams.delivery import sinks_from_settings

    settings = load_settings(
        webhook_urls=["http://127.0.0.1:1/a"],
        webhook_secrets=["s1", "s2"],
        delivery={"attempts": 7},
        chat_webhook_urls=["http://127.0.0.1:1/chat-secret"],
        alerts_out=tmp_path / "a.jsonl",
    )
    sinks = sinks_from_settings(settings, Metrics(CollectorRegistry()), load_watchlist())
    hook, chat = sinks.http
    assert isinstance(hook, WebhookSink) and hook.secrets == ["s1", "s2"]
    assert hook.policy.attempts == 7 and hook.watchlist is not None
    assert isinstance(chat, ChatSink) and "chat-secret" not in chat.target
    assert sinks.find("chat", chat.target) is chat
    assert sinks.find("webhook", "http://127.0.0.1:1/a") is hook
    assert sinks.find("file", str(tmp_path / "a.jsonl")) is sinks.file
    assert sinks.find("webhook", "http://elsewhere/") is None


def test_evidence_packet_fields_of_newer_alerts_are_used() -> None:
    """Fields a newer detector adds to alerts.v1 (read from the raw record) enrich the body."""
    alert = make_alert()
    raw = {
        **alert.model_dump(mode="json"),
        "claims": ["glm5-trained-on-ascend", "deepseek-v4-on-ascend", 7],
        "lead_source": "reddit",
        "source_first_seen": {"reddit": "2026-05-01T09:50:00Z", "bluesky": "2026-05-01T10:00:00Z"},
        "reason": "claim burst: 6 independent voices in 1 h, z=5.2",
        "z": 5.2,
        "counts_curve": [{"start": "2026-05-01T10:00:00Z", "count": 6}],
        "independent_posts": 5,
    }
    body = dossier_update(alert, raw, load_watchlist())
    jsonschema.validate(body, WRITER_SCHEMA)
    assert body["why"]["summary"] == raw["reason"] and body["why"]["z"] == 5.2
    assert body["why"]["counts_curve"] == raw["counts_curve"]
    assert body["why"]["independent_posts"] == 5
    assert body["lead_source"] == {"source": "reddit", "created_at": "2026-05-01T09:50:00Z"}
    assert [(c["id"], c["primary"]) for c in body["claims"]] == [
        ("glm5-trained-on-ascend", True),
        ("deepseek-v4-on-ascend", False),
    ]
    assert body["claims"][1]["stance_mix"] == {}
    msg = slack_message(alert, raw)
    assert raw["reason"] in json.dumps(msg["blocks"])


def test_a_hanging_target_times_out_and_is_retried() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # accepts connections, never answers
        url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
        policy = RetryPolicy(attempts=2, backoff_seconds=0.01, timeout_seconds=0.3)
        sinks = AlertSinks(Metrics(CollectorRegistry()), webhooks=[WebhookSink(url, policy)])
        t = time.monotonic()
        (failure,) = deliver(sinks, make_alert())
    assert "failed after 2 tries: TimeoutError" in failure.reason, failure.reason
    assert tries(sinks.metrics, "webhook") == {"timeout": 2}
    assert time.monotonic() - t >= 0.6  # both tries waited their 0.3 s: a timeout, not a refusal


# --- one lane per sink --------------------------------------------------------------------


class Ledger:
    """The worker's side of the hand-offs: a dict for the ``delivered`` table, the parked
    failures and the finished (acked) versions."""

    def __init__(self) -> None:
        self.table: dict[str, int] = {}
        self.parked: list[DeliveryFailure] = []
        self.finished: list[str] = []

    def handoff(self, alert: Alert) -> Handoff:
        def record(key: str) -> None:
            self.table[key] = alert.version

        async def park(failure: DeliveryFailure) -> None:
            self.parked.append(failure)

        async def finished() -> None:
            self.finished.append(f"{alert.id}.v{alert.version}")

        raw = alert.model_dump(mode="json", exclude_none=True)
        return Handoff(alert, raw, self.table.get, record, park, finished)


def test_a_dead_sink_does_not_hold_up_the_others() -> None:
    """One webhook refuses connections (and waits long between tries), one accepts and
    never answers: the healthy webhook and the chat channel get every version meanwhile."""
    with WebhookReceiver() as gone:
        refused_url = gone.url  # closed after this block: the port refuses
    versions = [make_alert(v, "open" if v == 1 else "update") for v in range(1, 6)]
    ledger = Ledger()

    async def go() -> None:
        with (
            WebhookReceiver() as rx,
            WebhookReceiver() as chat_rx,
            socket.socket() as hanging,
        ):
            hanging.bind(("127.0.0.1", 0))
            hanging.listen(8)  # accepts connections, never answers
            hanging_url = f"http://127.0.0.1:{hanging.getsockname()[1]}/hook"
            forever = RetryPolicy(
                attempts=3,
                backoff_seconds=3600.0,
                max_backoff_seconds=3600.0,
                timeout_seconds=3600.0,
            )
            sinks = AlertSinks(
                Metrics(CollectorRegistry()),
                webhooks=[
                    WebhookSink(refused_url, forever),
                    WebhookSink(hanging_url, forever),
                    WebhookSink(rx.url, FAST),
                ],
                chats=[ChatSink(chat_rx.url, FAST)],
            )
            try:
                for alert in versions:
                    assert sinks.hand_off(ledger.handoff(alert)) == 4
                await wait_until_async(
                    lambda: len(rx.requests) == len(chat_rx.requests) == len(versions),
                    lambda: f"5 versions at the healthy sinks ({rx.requests}, {chat_rx.requests})",
                    RECORD_ARRIVES,
                )
                # (a receiver counts a request before it answers; the lane records it after)
                await wait_until_async(
                    lambda: sorted(ledger.table.values()) == [5, 5],
                    lambda: f"both healthy sinks' deliveries recorded ({ledger.table})",
                    RECORD_ARRIVES,
                )
                keys = [h["Idempotency-Key"] for h in rx.headers]
                assert keys == [f"abc123.v{v}" for v in range(1, 6)]  # in order, once each
                # the dead sinks are still on their first version: nothing parked, and no
                # version is finished (acked) while a sink still owes it
                assert ledger.parked == [] and ledger.finished == []
                recorded = {k.split("@")[1] for k in ledger.table}
                assert recorded == {f"webhook:{rx.url}", f"chat:{chat_target(chat_rx.url)}"}
                # after a restart, the same versions go only to the sinks that did not have them
                assert [sinks.hand_off(ledger.handoff(a)) for a in versions] == [2] * 5
            finally:
                await finishes(sinks.close(), "the sinks to close")

    asyncio.run(go())


def test_a_sink_that_failed_every_try_is_down_until_a_probe_goes_through() -> None:
    ledger = Ledger()
    policy = RetryPolicy(
        attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.05, timeout_seconds=2.0
    )

    async def go() -> None:
        with WebhookReceiver(fail_first=10**6) as rx:
            sinks = AlertSinks(
                Metrics(CollectorRegistry()),
                webhooks=[WebhookSink(rx.url, policy)],
                probe_seconds=3600.0,
            )
            try:
                for v in (1, 2, 3):
                    sinks.hand_off(ledger.handoff(make_alert(v)))
                await wait_until_async(
                    lambda: len(ledger.finished) == 3, "3 versions done", RECORD_ARRIVES
                )
                # the first spent every try; the others were parked at once, untried
                assert [p.attempts for p in ledger.parked] == [3, 0, 0]
                assert "is down, not tried (last failure:" in ledger.parked[1].reason
                assert rx.attempts == 3
                assert ledger.table == {f"abc123@webhook:{rx.url}": 3}
                # the sink is back and a probe is due: one try, and the sink is up again
                rx.fail_first = 0
                sinks.probe_seconds = 0.0
                for lane in sinks._lanes or []:
                    lane.probe_at = 0.0
                for v in (4, 5):
                    sinks.hand_off(ledger.handoff(make_alert(v)))
                await wait_until_async(
                    lambda: len(ledger.finished) == 5, "5 versions done", RECORD_ARRIVES
                )
                assert len(ledger.parked) == 3
                assert [h["Idempotency-Key"] for h in rx.headers] == ["abc123.v4", "abc123.v5"]
            finally:
                await finishes(sinks.close(), "the sinks to close")

    asyncio.run(go())


def test_a_refusal_does_not_mark_the_sink_down() -> None:
    """A 4xx refuses one version; the sink answered, so the next one is tried as usual."""
    ledger = Ledger()

    async def go() -> None:
        with WebhookReceiver(fail_first=1, fail_status=400) as rx:
            sinks = AlertSinks(Metrics(CollectorRegistry()), webhooks=[WebhookSink(rx.url, FAST)])
            try:
                for v in (1, 2):
                    sinks.hand_off(ledger.handoff(make_alert(v)))
                await wait_until_async(
                    lambda: len(ledger.finished) == 2, "2 versions done", RECORD_ARRIVES
                )
            finally:
                await finishes(sinks.close(), "the sinks to close")
        assert [p.attempts for p in ledger.parked] == [1]
        assert [h["Idempotency-Key"] for h in rx.headers] == ["abc123.v2"]

    asyncio.run(go())


def test_a_version_recorded_by_a_worker_before_sink_lanes_is_not_sent_again() -> None:
    ledger = Ledger()
    ledger.table["abc123"] = 2  # the per-alert entry of the single-lane worker

    async def go() -> None:
        sinks = AlertSinks(Metrics(CollectorRegistry()), webhooks=[WebhookSink("http://x/", FAST)])
        assert sinks.hand_off(ledger.handoff(make_alert(2))) == 0
        await sinks.close()

    asyncio.run(go())
