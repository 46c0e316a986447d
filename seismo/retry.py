"""Waiting before another try: one backoff and one ``Retry-After`` parser for every
process that retries (the connectors' reconnects, the alert sinks' deliveries), and the
alert sinks' retry policy."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime


def equal_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` 0-based): capped exponential
    backoff with "equal jitter" (AWS architecture blog), uniform between half of
    ``min(cap, base * 2**attempt)`` and all of it. Half the wait is certain, so a retry
    never comes at once; the other half is random, so many clients that failed together
    do not all come back together."""
    ceiling = min(cap, base * 2.0**attempt)
    return (rng or random).uniform(ceiling / 2, ceiling)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds (``"120"``) or an
    HTTP date (``"Wed, 21 Oct 2026 07:28:00 GMT"``, counted from ``now``, epoch seconds,
    default the current time); never negative. None when the header is missing or is
    neither (or not a finite number)."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if date.tzinfo is None:  # "-0000": UTC, says RFC 5322
        date = date.replace(tzinfo=UTC)
    return max(0.0, date.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """How an HTTP alert sink tries one alert version (``seismo.config``'s ``delivery``
    group builds it; these defaults are the settings' defaults)."""

    attempts: int = 5  # tries per alert version
    backoff_seconds: float = 0.5  # the first retry's delay; doubles per try, with jitter
    max_backoff_seconds: float = 30.0
    timeout_seconds: float = 5.0  # per try

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try ``attempt`` (1-based): ``Retry-After`` when the
        sink said, else :func:`equal_jitter`; at most ``max_backoff_seconds``."""
        if retry_after is not None:
            return min(self.max_backoff_seconds, max(0.0, retry_after))
        return equal_jitter(attempt - 1, self.backoff_seconds, self.max_backoff_seconds)
