"""Listening ports: a one-line error instead of a traceback when one can't be had."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

from seismo.errors import SeismoError


class PortError(SeismoError):
    """A server could not listen on its host:port (taken, or not an address of this host)."""


def port_error(host: str, port: int, exc: OSError) -> PortError:
    if exc.errno == errno.EADDRINUSE:
        return PortError(f"port {port} on {host} is already in use")
    return PortError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails now (SO_REUSEADDR, as servers bind)."""
    try:
        require_free(host, port)
    except PortError:
        return True
    return False


def require_free(host: str, port: int) -> None:
    """Raise PortError when a server could not bind ``host:port`` now: for servers that
    bind deep inside a framework (the Faust web server), checked before they start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with binding(host, port):
            sock.bind((host, port))


@contextlib.contextmanager
def binding(host: str, port: int) -> Iterator[None]:
    """Turn the OSError of a failed bind inside the block into a PortError."""
    try:
        yield
    except OSError as exc:
        raise port_error(host, port, exc) from exc
