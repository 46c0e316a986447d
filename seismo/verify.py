"""Webhook signatures: how seismo signs a delivery and how a receiver checks it.

Every webhook carries ``Seismo-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` where
each ``v1`` is ``HMAC-SHA256(secret, f"{t}.{body}")`` in lowercase hex, one per configured
secret (during a secret rotation seismo signs with the old and the new secret). A receiver
accepts the request when any ``v1`` matches any of its secrets and ``t`` is within
``tolerance`` seconds of its clock (300 s by default): a captured request cannot be replayed
later. Within the window, drop repeats by the ``Idempotency-Key`` header.

This module is the reference verifier: beyond the standard library it only needs
``seismo.errors`` (swap ``SeismoError`` for ``Exception`` to copy it into a receiver; see
``examples/receiver.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

from seismo.errors import SeismoError

SIGNATURE_HEADER = "Seismo-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = 300.0


class SignatureError(SeismoError):
    """The request is not signed by a known secret, or the signature is stale."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    msg = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: Iterable[str], timestamp: int | None = None) -> str:
    """The ``Seismo-Signature`` header value for ``body``, one ``v1`` per secret."""
    t = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={t}"] + [f"v1={_digest(s, t, body)}" for s in secrets]
    if len(parts) == 1:
        raise ValueError("sign() needs at least one secret")
    return ",".join(parts)


def verify_signature(
    body: bytes,
    header: str | None,
    secrets: Iterable[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a ``Seismo-Signature`` header against the raw request body.

    Returns the signed timestamp; raises :class:`SignatureError` when the header is missing
    or malformed, no ``v1`` matches any of ``secrets``, or the timestamp is more than
    ``tolerance`` seconds away from ``now``.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("signature timestamp is not an integer") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("signature header needs t=<unix> and at least one v1=<hex>")
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance:
        raise SignatureError(
            f"signature timestamp {timestamp} is outside the {tolerance:.0f}s tolerance"
        )
    for secret in secrets:
        expected = _digest(secret, timestamp, body)
        if any(hmac.compare_digest(expected, c) for c in candidates):
            return timestamp
    raise SignatureError("no signature matches a known secret")


def bearer_of(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ("" if none); the scheme
    name is case-insensitive (RFC 7235). Shared by seismo's own endpoints (x-push, the live
    page)."""
    scheme, _, credentials = header.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""
