"""Replay file reading and mapping (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.replay import parse_speed, read_rows, to_post
from seismo.errors import ContractError, SeismoError

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_jsonl_rows_and_garbage_lines(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text(
        '{"id": 1, "source": "x", "text": "a", "created_at": "2013-05-20T00:00:35Z"}\n'
        "\n{broken\n[1,2]\n"
    )
    rows = list(read_rows(p))
    assert rows[0][0] == 1 and isinstance(rows[0][1], dict)
    assert rows[1] == (3, "{broken")
    assert rows[2] == (4, "[1,2]")
    post = to_post(rows[0][1], now=lambda: NOW)  # type: ignore[arg-type]
    assert post.id == "1" and post.ingested_at == NOW


def test_csv_with_field_map_and_source_override(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("tweet_id,body,time,extra\n9,hello world,2019-07-02T13:46:00+00:00,zz\n")
    [(lineno, row)] = list(read_rows(p))
    assert lineno == 2
    post = to_post(
        row,
        field_map={"id": "tweet_id", "text": "body", "created_at": "time"},
        source="hackernews",
        now=lambda: NOW,
    )  # type: ignore[arg-type]
    assert post.key == "hackernews:9" and post.text == "hello world"
    assert post.metadata == {"extra": "zz"}


def test_row_without_time_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="created_at"):
        to_post({"id": "1", "source": "x", "text": "t"})


def test_parse_speed() -> None:
    assert parse_speed("max") is None
    assert parse_speed("60") == 60.0
    for bad in ("0", "-1", "fast"):
        with pytest.raises(SeismoError):
            parse_speed(bad)
