"""Small HTTP helpers shared by the connectors that poll or stream over plain HTTP."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from html.parser import HTMLParser

from connectors.base import FatalSourceError, RetryableError
from seismo.retry import retry_after as parse_retry_after


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``x-rate-limit-reset``
    (epoch seconds, X API style); None when neither header says."""
    now = time.time() if now is None else now
    wait = parse_retry_after(headers.get("Retry-After"), now)
    if wait is not None:
        return wait
    reset = headers.get("x-rate-limit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return None


def check_status(status: int, headers: Mapping[str, str], what: str) -> None:
    """Sort a non-2xx response: 401/403 stop (bad credentials), anything else is retried."""
    if 200 <= status < 300:
        return
    if status in (401, 403):
        raise FatalSourceError(
            f"{what}: HTTP {status} {'Unauthorized' if status == 401 else 'Forbidden'} "
            "(check the credentials in settings)"
        )
    raise RetryableError(f"{what}: HTTP {status}", retry_after=retry_after(headers))


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def strip_html(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    parser = _TextOnly()
    parser.feed(fragment)
    parser.close()
    return " ".join(html.unescape("".join(parser.parts)).split())
