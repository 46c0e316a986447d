"""One root exception for everything seismo raises on purpose."""

from __future__ import annotations

from pydantic import ValidationError


class SeismoError(Exception):
    """Root of every error seismo raises deliberately."""


class ConfigError(SeismoError):
    """Settings or the watchlist file are invalid."""


class BrokerError(SeismoError):
    """The embedded Kafka broker could not be prepared, started or stopped."""


class ContractError(SeismoError):
    """A record does not match its wire contract."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeliveryError(SeismoError):
    """An alert could not be delivered to a sink."""


def field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """A pydantic ValidationError as short ``(field path, message)`` pairs: no input echo
    (it may be a secret), no documentation URLs. The path is "" for whole-input errors."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        out.append((".".join(str(part) for part in err["loc"]), msg))
    return out


def describe(exc: ValidationError) -> str:
    """A pydantic ValidationError on one line: ``field: message; field: message``."""
    return "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in field_errors(exc))
