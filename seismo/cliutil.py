"""Helpers shared by the ``seismo`` subcommands (core and plugin modules alike)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from seismo.config import Settings, load_settings


def progress(msg: str) -> None:
    """One line of progress on stderr (stdout is kept for machine-readable output)."""
    print(f"seismo: {msg}", file=sys.stderr, flush=True)


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from ``--config`` / env / defaults, with flag overrides (None = unset)."""
    return load_settings(getattr(args, "config", None), **overrides)


def install_stop_handler() -> threading.Event:
    """An event set on SIGINT/SIGTERM, for loops that stop cleanly."""
    flag = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        flag.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return flag


EVAL_HELP = "evaluate the models and the burst detector on labelled data"


def command_group(sub: Any, name: str, help: str) -> Any:
    """The subparsers of the group command ``name`` (e.g. ``eval``), made by the first
    module that asks, so several modules can add their own ``seismo eval WHAT``."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help, description=help)
        parser.set_defaults(
            _group=parser.add_subparsers(dest=f"{name}_command", required=True, metavar="WHAT")
        )
    return parser.get_default("_group")
