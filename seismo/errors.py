"""One root exception for everything seismo raises on purpose."""

from __future__ import annotations


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
