"""Alert sinks: signed writer webhooks, Slack-compatible chat webhooks, a JSONL file.

Every version goes to the file sink; the HTTP sinks get the versions the story throttle
lets through (``Alert.deliver``, decided by the detector, so a replay decides the same).
Delivery is at-least-once with one idempotency key per alert version (``<id>.v<version>``),
so a receiver can drop a repeat; the worker also remembers what it delivered to each sink (a
changelogged table) and skips redeliveries of the same alert version. HTTP sinks retry
timeouts, 5xx and 429 (honouring ``Retry-After``) with capped exponential backoff and equal
jitter (:mod:`seismo.retry`), and never retry another 4xx. What still fails becomes a
:class:`FailedDelivery` on ``alerts.dlq.v1``, which ``seismo alerts redeliver`` sends again.

In the worker each sink has its own lane (:class:`SinkLane`: a queue and a task), so a sink
that refuses or hangs holds up only its own alert versions. A sink that failed every try of
one version is *down*: the versions that reach it then are parked at once, and one of them
is tried (once) every ``max_backoff_seconds`` until one goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp

from seismo.config import Settings
from seismo.contracts import Alert, FailedDelivery
from seismo.errors import DeliveryError
from seismo.metrics import Metrics
from seismo.retry import RetryPolicy as RetryPolicy
from seismo.retry import retry_after as parse_retry_after
from seismo.verify import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from seismo.watchlist import Watchlist
from streams.payloads import dossier_update, idempotency_key, slack_message

log = logging.getLogger(__name__)

SinkKind = Literal["webhook", "chat", "file"]


def retryable(status: int) -> bool:
    """5xx and 429 are worth another try; any other 4xx will fail the same way again."""
    return status >= 500 or status == 429


def attempt_result(status: int) -> str:
    """The ``result`` label of one HTTP try that got a response."""
    if 200 <= status < 300:
        return "2xx"
    if 400 <= status < 500:
        return "4xx"
    return "5xx" if status >= 500 else "error"


def _ignore(result: str) -> None:
    pass


class SinkFailed(DeliveryError):
    """A sink did not take an alert; ``attempts`` = the tries made; ``down``: every try
    failed the way a sink that is down fails (no answer, 5xx, 429), not a refusal."""

    def __init__(self, reason: str, attempts: int, down: bool = True) -> None:
        super().__init__(reason)
        self.attempts = attempts
        self.down = down


@dataclass(frozen=True)
class DeliveryFailure:
    sink: SinkKind
    target: str
    reason: str
    attempts: int
    down: bool = False


class HttpSink:
    """POSTs a JSON body built from the alert, with retries; subclasses build body/headers."""

    kind: SinkKind = "webhook"

    def __init__(self, url: str, policy: RetryPolicy) -> None:
        self.url = url
        self.policy = policy

    @property
    def target(self) -> str:
        return self.url

    def body(self, alert: Alert, raw: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def headers(self, alert: Alert, body: bytes) -> dict[str, str]:
        """Headers of one try (called per try, so a signature's timestamp stays fresh)."""
        return {"Content-Type": "application/json", "User-Agent": "seismo-alerts/1"}

    async def send(
        self,
        session: aiohttp.ClientSession,
        alert: Alert,
        raw: dict[str, Any],
        tried: Callable[[str], None] = _ignore,
        attempts: int | None = None,
    ) -> int:
        """Deliver one alert version; returns the tries it took, raises DeliveryError.

        ``tried`` gets the result of every try: 2xx, 4xx, 5xx, timeout or error;
        ``attempts`` overrides the policy's number of tries.
        """
        body = self.body(alert, raw)
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_seconds)
        attempts = attempts or self.policy.attempts
        last = ""
        for attempt in range(1, attempts + 1):
            retry_after = None
            try:
                async with session.post(
                    self.url, data=body, headers=self.headers(alert, body), timeout=timeout
                ) as resp:
                    tried(attempt_result(resp.status))
                    if resp.status < 300:
                        return attempt
                    last = f"HTTP {resp.status}"
                    if not retryable(resp.status):
                        raise SinkFailed(
                            f"{self.target} refused alert {alert.id}: {last}", attempt, down=False
                        )
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                tried("timeout" if isinstance(exc, TimeoutError) else "error")
                last = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if attempt < attempts:
                await asyncio.sleep(self.policy.delay(attempt, retry_after))
        raise SinkFailed(f"{self.target} failed after {attempts} tries: {last}", attempts)


class WebhookSink(HttpSink):
    """The writer webhook: a signed "dossier update requested" body per alert version."""

    kind: SinkKind = "webhook"

    def __init__(
        self,
        url: str,
        policy: RetryPolicy | None = None,
        *,
        secrets: list[str] | None = None,
        token: str | None = None,
        watchlist: Watchlist | None = None,
    ) -> None:
        super().__init__(url, policy or RetryPolicy())
        self.secrets = secrets or []
        self.token = token
        self.watchlist = watchlist

    def body(self, alert: Alert, raw: dict[str, Any]) -> bytes:
        payload = dossier_update(alert, raw, self.watchlist)
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def headers(self, alert: Alert, body: bytes) -> dict[str, str]:
        h = super().headers(alert, body)
        h[IDEMPOTENCY_HEADER] = idempotency_key(alert)
        if self.secrets:
            h[SIGNATURE_HEADER] = sign(body, self.secrets)
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h


class ChatSink(HttpSink):
    """A Slack-compatible incoming webhook (``text`` + Block Kit ``blocks``)."""

    kind: SinkKind = "chat"

    @property
    def target(self) -> str:
        # the URL of an incoming webhook is its secret: never log or store it
        return chat_target(self.url)

    def body(self, alert: Alert, raw: dict[str, Any]) -> bytes:
        return json.dumps(slack_message(alert, raw), ensure_ascii=False).encode("utf-8")


def chat_target(url: str) -> str:
    return "chat:" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]


class FileSink:
    kind: SinkKind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def target(self) -> str:
        return str(self.path)

    def write(self, alert: Alert, raw: dict[str, Any] | None = None) -> None:
        """Append the record as produced (``raw``, all fields) or else the parsed alert."""
        line = (
            json.dumps(raw, ensure_ascii=False) if raw else alert.model_dump_json(exclude_none=True)
        )
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


class AlertSinks:
    """Every configured sink for one worker."""

    def __init__(
        self,
        metrics: Metrics,
        webhooks: list[WebhookSink] | None = None,
        file: FileSink | None = None,
        chats: list[ChatSink] | None = None,
        probe_seconds: float = 30.0,
    ) -> None:
        self.metrics = metrics
        self.http: list[HttpSink] = [*(webhooks or []), *(chats or [])]
        self.file = file
        self.probe_seconds = probe_seconds
        self._session: aiohttp.ClientSession | None = None
        self._lanes: list[SinkLane] | None = None

    @property
    def all(self) -> list[HttpSink | FileSink]:
        return [*([self.file] if self.file else []), *self.http]

    def find(self, sink: SinkKind, target: str) -> HttpSink | FileSink | None:
        if self.file is not None and sink == "file" and self.file.target == target:
            return self.file
        return next((h for h in self.http if h.kind == sink and h.target == target), None)

    async def deliver(
        self, alert: Alert, raw: dict[str, Any] | None = None
    ) -> list[DeliveryFailure]:
        """Deliver to every sink (HTTP sinks concurrently); returns those that failed.

        A version the story throttle coalesced (``deliver`` false) goes to the file sink
        only: the writer and chat webhooks get the next delivered version, which says what
        changed since the previous one they got."""
        raw = raw if raw is not None else alert.model_dump(mode="json", exclude_none=True)
        sinks = self.sinks_for(alert)
        results = await asyncio.gather(*(self.deliver_to(s, alert, raw) for s in sinks))
        return [r for r in results if r is not None]

    def sinks_for(self, alert: Alert) -> list[HttpSink | FileSink]:
        """The one place that decides which sinks a version goes to: every sink, or the
        file sink only when the story throttle coalesced it (``deliver`` false; counted as
        ``coalesced`` for each webhook)."""
        if alert.deliver is not False:
            return self.all
        for h in self.http:
            self.metrics.deliveries.labels(h.kind, "coalesced").inc()
        return [self.file] if self.file else []

    def hand_off(self, handoff: Handoff) -> int:
        """Queue an alert version on the lane of every sink it goes to (:meth:`sinks_for`)
        that has not had it yet; returns how many lanes took it (0: none is left)."""
        alert = handoff.alert
        if (handoff.recorded(alert.id) or 0) >= alert.version:
            return 0  # recorded by a worker before sink lanes: every sink had it
        if self._lanes is None:
            self._lanes = [SinkLane(self, sink) for sink in self.all]
        targets = self.sinks_for(alert)
        lanes = [
            x
            for x in self._lanes
            if x.sink in targets and (handoff.recorded(x.key(alert)) or 0) < alert.version
        ]
        handoff.left = len(lanes)
        for lane in lanes:
            lane.queue.put_nowait(handoff)
        return len(lanes)

    async def deliver_to(
        self,
        sink: HttpSink | FileSink,
        alert: Alert,
        raw: dict[str, Any],
        attempts: int | None = None,
    ) -> DeliveryFailure | None:
        """One sink; the failure (after every try) or None when delivered."""
        tries = 1
        try:
            if isinstance(sink, FileSink):
                try:
                    sink.write(alert, raw)
                except OSError as exc:
                    raise SinkFailed(f"file {sink.path}: {exc}", 1) from exc
            else:
                if self._session is None:
                    self._session = aiohttp.ClientSession()
                t0 = time.perf_counter()
                tried = self._tried(sink.kind)
                tries = await sink.send(self._session, alert, raw, tried, attempts)
                self.metrics.delivery_latency.labels(sink.kind).observe(time.perf_counter() - t0)
        except SinkFailed as exc:
            self.metrics.deliveries.labels(sink.kind, "failed").inc()
            log.warning("alert %s v%d not delivered: %s", alert.id, alert.version, exc)
            return DeliveryFailure(sink.kind, sink.target, str(exc), exc.attempts, exc.down)
        self.metrics.deliveries.labels(sink.kind, "ok").inc()
        if tries > 1:
            log.info("alert %s v%d delivered on try %d", alert.id, alert.version, tries)
        return None

    def _tried(self, sink: SinkKind) -> Callable[[str], None]:
        counter = self.metrics.delivery_attempts
        return lambda result: counter.labels(sink, result).inc()

    async def close(self) -> None:
        """Stop the lanes (what they still hold is not acked: a restart delivers it) and
        close the HTTP session."""
        await asyncio.gather(*(lane.stop() for lane in self._lanes or []))
        self._lanes = None
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(eq=False)
class Handoff:
    """One alert version handed to the sink lanes, with the worker's side of it."""

    alert: Alert
    raw: dict[str, Any]
    recorded: Callable[[str], int | None]
    """The version recorded as delivered under a dedupe key (None: nothing yet)."""
    record: Callable[[str], None]
    """Record this version as delivered under a dedupe key."""
    park: Callable[[DeliveryFailure], Awaitable[None]]
    """Put a failed delivery on alerts.dlq.v1."""
    finished: Callable[[], Awaitable[None]]
    """Every lane is done with it (delivered or parked): ack the record."""
    left: int = 0


STOP_GRACE_SECONDS = 10.0  # a stopping lane finishes the delivery it is in, this long at most


class SinkLane:
    """One sink's queue and task. Its tries, backoff and down state are its own, so a sink
    that refuses or hangs holds up only the versions that wait for it."""

    def __init__(self, sinks: AlertSinks, sink: HttpSink | FileSink) -> None:
        self.sinks = sinks
        self.sink = sink
        self.queue: asyncio.Queue[Handoff] = asyncio.Queue()
        self.down: str | None = None  # the last failure, while the sink is down
        self.probe_at = 0.0
        self.busy = False  # a version is being delivered (its POST may be at the sink)
        self.stopping = False
        self.task = asyncio.create_task(self.run(), name=f"deliver to {sink.kind} {sink.target}")

    def key(self, alert: Alert) -> str:
        """The dedupe key of ``alert`` at this sink."""
        return f"{alert.id}@{self.sink.kind}:{self.sink.target}"

    async def run(self) -> None:
        while not self.stopping:
            handoff = await self.queue.get()
            self.busy = True
            try:
                await self.one(handoff)
            except Exception:  # not recorded, not acked: a restart delivers it again
                log.exception("deliver to %s %s failed", self.sink.kind, self.sink.target)
            finally:
                self.busy = False

    async def one(self, handoff: Handoff) -> None:
        alert = handoff.alert
        failure = await self.attempt(alert, handoff.raw)
        if failure is not None:
            await handoff.park(failure)
        handoff.record(self.key(alert))
        handoff.left -= 1
        if handoff.left == 0:
            await handoff.finished()

    async def attempt(self, alert: Alert, raw: dict[str, Any]) -> DeliveryFailure | None:
        """Deliver with every try, or once when the sink is down and a probe is due, or
        not at all (a failure with 0 tries) while it is down."""
        sink, probe = self.sink, self.down is not None
        if self.down is not None and time.monotonic() < self.probe_at:
            self.sinks.metrics.deliveries.labels(sink.kind, "failed").inc()
            reason = f"{sink.target} is down, not tried (last failure: {self.down})"
            return DeliveryFailure(sink.kind, sink.target, reason, 0, True)
        failure = await self.sinks.deliver_to(sink, alert, raw, 1 if probe else None)
        if failure is None or not failure.down:  # it answered
            if probe:
                log.info("%s %s is up again", sink.kind, sink.target)
            self.down = None
        else:
            if not probe:
                log.warning(
                    "%s %s is down: alert versions that reach it are parked on the DLQ, one "
                    "tried every %.0f s",
                    sink.kind,
                    sink.target,
                    self.sinks.probe_seconds,
                )
            self.down = failure.reason
            self.probe_at = time.monotonic() + self.sinks.probe_seconds
        return failure

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop after the version in delivery, if any, is delivered and recorded (a POST the
        sink already took would otherwise be sent again after a restart), waiting at most
        ``grace`` seconds for it (a hanging sink); what is still queued is left."""
        self.stopping = True
        if self.busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), grace)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def failed_delivery(
    alert: Alert,
    raw: dict[str, Any],
    failure: DeliveryFailure,
    *,
    redeliveries: int = 0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FailedDelivery:
    return FailedDelivery(
        alert_id=alert.id,
        alert_version=alert.version,
        sink=failure.sink,
        target=failure.target,
        reason=failure.reason,
        attempts=failure.attempts,
        failed_at=now(),
        redeliveries=redeliveries,
        alert=raw,
    )


def sinks_from_settings(
    settings: Settings, metrics: Metrics, watchlist: Watchlist | None = None
) -> AlertSinks:
    policy = settings.delivery.params()
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    secrets = [s.get_secret_value() for s in settings.webhook_secrets]
    return AlertSinks(
        metrics,
        webhooks=[
            WebhookSink(u, policy, secrets=secrets, token=token, watchlist=watchlist)
            for u in settings.webhook_urls
        ],
        chats=[ChatSink(u.get_secret_value(), policy) for u in settings.chat_webhook_urls],
        file=FileSink(settings.alerts_out) if settings.alerts_out else None,
        probe_seconds=policy.max_backoff_seconds,
    )
