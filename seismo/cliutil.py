"""Helpers shared by the ``seismo`` subcommands (core and plugin modules alike)."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from seismo.config import Settings, load_settings
from seismo.errors import SeismoError


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


# a BCP 47 language tag as posts carry it ("pt", "pt-BR", "zh-Hant"), within Post.lang's 16
_LANG_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


def language_tag(value: str) -> str:
    """``--lang``'s argparse type: a language tag (a bad one is a usage error). A language
    without a stop-word list is accepted with a note on stderr: its posts are read as
    English."""
    from models.text import STOP_WORDS, stop_words_for

    if len(value) > 16 or not _LANG_TAG.fullmatch(value):
        raise argparse.ArgumentTypeError(f"takes a language tag such as es or pt-BR, got {value!r}")
    if stop_words_for(value) is STOP_WORDS and not value.lower().startswith("en"):
        progress(f"--lang {value}: no stop-word list for it; its posts are read as English")
    return value


def add_lang_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lang",
        type=language_tag,
        metavar="TAG",
        help="set every post's language (e.g. es, pt-BR): its stop words are left out of "
        "what the post can burst on (default: each post's own lang; none is read as English)",
    )


def not_an_input(out: Path | None, inputs: Iterable[Path], flag: str) -> None:
    """Refuse an output file that is one of the command's input files: writing it would
    overwrite or extend what is being read."""
    if out is None:
        return
    for path in inputs:
        if out.resolve() == path.resolve():
            raise SeismoError(f"{flag} {out} is an input file of this command; write elsewhere")
