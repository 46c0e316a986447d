"""Alert sinks: webhooks (JSON POST) and an append-only JSONL file.

Delivery is at-least-once with an idempotency key (the alert id and version), so a
receiver can drop a repeat; the worker also remembers what it delivered (a changelogged
table) and skips redeliveries of the same alert version.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import aiohttp

from seismo.contracts import Alert
from seismo.errors import DeliveryError
from seismo.metrics import Metrics

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class FileSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, alert: Alert) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(alert.model_dump_json(exclude_none=True) + "\n")


class WebhookSink:
    """POSTs alerts as JSON; retries 5xx/429/timeouts with capped backoff and jitter."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        self.url = url
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff

    async def send(self, session: aiohttp.ClientSession, alert: Alert) -> None:
        body = alert.to_bytes()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{alert.id}.v{alert.version}",
            "User-Agent": "seismo-alerts/1",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                async with session.post(
                    self.url, data=body, headers=headers, timeout=self.timeout
                ) as resp:
                    if resp.status < 300:
                        return
                    last = f"HTTP {resp.status}"
                    if resp.status not in RETRY_STATUSES:
                        raise DeliveryError(f"{self.url} refused alert {alert.id}: {last}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
        raise DeliveryError(f"{self.url} failed after {self.attempts} tries: {last}")


class AlertSinks:
    """Every configured sink for one worker."""

    def __init__(
        self,
        metrics: Metrics,
        webhooks: list[WebhookSink] | None = None,
        file: FileSink | None = None,
    ) -> None:
        self.metrics = metrics
        self.webhooks = webhooks or []
        self.file = file
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, alert: Alert) -> list[str]:
        """Deliver to every sink; returns the reasons of those that failed."""
        failures: list[str] = []
        if self.file is not None:
            try:
                self.file.write(alert)
                self.metrics.deliveries.labels("file", "ok").inc()
            except OSError as exc:
                self.metrics.deliveries.labels("file", "failed").inc()
                failures.append(f"file {self.file.path}: {exc}")
        if self.webhooks:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            for hook in self.webhooks:
                try:
                    await hook.send(self._session, alert)
                    self.metrics.deliveries.labels("webhook", "ok").inc()
                except DeliveryError as exc:
                    self.metrics.deliveries.labels("webhook", "failed").inc()
                    log.warning("alert %s not delivered: %s", alert.id, exc)
                    failures.append(str(exc))
        return failures

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
