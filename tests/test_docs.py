"""README.md and docs/ stay a user's description of what is true now: the README is short,
every command and flag is documented, links resolve, and there is no history (dates, commit
hashes) outside the benchmarks' measurement dates."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from seismo.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_README_BYTES = 20 * 1024


def _prose(text: str) -> list[str]:
    """The lines of a Markdown text without code blocks and inline code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return [re.sub(r"`[^`\n]*`", "", line) for line in text.splitlines()]


def test_readme_is_at_most_20_kb() -> None:
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, (
        f"README.md is {size:,} bytes (at most {MAX_README_BYTES:,}): move detail into docs/"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_history_in_the_docs(page: Path) -> None:
    """No dates but a benchmark's measurement date, no commit hashes, no work-log wording."""
    for n, line in enumerate(_prose(page.read_text(encoding="utf-8")), 1):
        where = f"{page.relative_to(REPO)}:{n}: {line.strip()}"
        if "measured" not in line.lower():
            assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", line), f"a date: {where}"
        assert not re.search(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", line), (
            f"a commit hash: {where}"
        )
        assert not re.search(
            r"\b(first|second|third|this|earlier|previous|last) session\b|\bissue \d+\b",
            line,
            re.I,
        ), f"work-log wording: {where}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_between_the_docs_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to a missing file: {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: link to a missing heading: {target}"


def _commands(
    parser: argparse.ArgumentParser, prefix: str = "seismo"
) -> list[tuple[str, list[str]]]:
    """(command, its long options) for every leaf subcommand of ``parser``."""
    out: list[tuple[str, list[str]]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, f"{prefix} {name}")
    if out:
        return out
    flags = [
        s
        for a in parser._actions
        for s in a.option_strings
        if s.startswith("--") and s not in ("--help", "--config")
    ]
    return [(prefix, flags)]


def test_every_command_and_flag_is_in_the_readme_commands_table() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Commands") :]
    table = table[: table.index("\n## ")]
    rows = [row for row in table.splitlines() if row.startswith("| `seismo")]
    for command, flags in _commands(build_parser()):
        words = command.split()
        # "seismo connect {bluesky,...}" or "seismo train {stance,topic}": a row naming the
        # command, its last word either literal or one of a choice list
        row = next(
            (
                r
                for r in rows
                if re.search(
                    r"`" + r"\s+".join(re.escape(w) for w in words) + r"[\s`]",
                    r,
                )
            ),
            None,
        )
        assert row is not None, f"`{command}` is not in README's commands table"
        for flag in flags:
            assert flag in row, f"`{command} {flag}` is not in README's commands table"
