"""Replay file reading and mapping (no broker)."""

from __future__ import annotations

import csv
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from connectors import replay as replay_module
from connectors.replay import (
    LOGGED_PER_KIND,
    Rejected,
    ReplayStats,
    RowError,
    log_rejected,
    map_row,
    missing_columns,
    parse_speed,
    read_rows,
    to_post,
    warn_missing_columns,
)
from models.replies import reply_depth
from seismo import cli
from seismo.contracts import Post
from seismo.errors import ContractError, SeismoError
from streams.params import DetectorParams

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
    assert lineno == 2 and isinstance(row, dict)
    post = to_post(
        row,
        field_map={"id": "tweet_id", "text": "body", "created_at": "time"},
        source="hackernews",
        now=lambda: NOW,
    )
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


def rows_of(p: Path, **kw: Any) -> list[tuple[int, Post | Rejected]]:
    """Each row of ``p`` as the replay maps it: a Post, or its dead letter."""
    return [(n, map_row(p, n, row, **kw)) for n, row in read_rows(p)]


GOOD = b'{"id": "%d", "source": "x", "text": "caf\xc3\xa9", "created_at": "2013-05-20T00:00:35Z"}\n'


def test_a_jsonl_line_that_is_not_utf8_is_dead_lettered_and_the_rest_replayed(
    tmp_path: Path,
) -> None:
    p = tmp_path / "a.jsonl"
    bad = b'{"id": "2", "source": "x", "text": "caf\xe9", "created_at": "2013-05-20T00:00:35Z"}\n'
    p.write_bytes(GOOD % 1 + bad + GOOD % 3)
    out = rows_of(p)
    assert [(n, r.id) for n, r in out if isinstance(r, Post)] == [(1, "1"), (3, "3")]
    assert out[0][1].text == "café"  # type: ignore[union-attr]
    [(n, dead)] = [(n, r) for n, r in out if isinstance(r, Rejected)]
    assert n == 2 and dead.kind == "not UTF-8"
    assert dead.letter.reason.startswith("line 2: not valid UTF-8: byte 0xE9 at byte 40")
    assert dead.letter.offset == 2 and dead.letter.value == bad.decode("utf-8", "replace")[:-1]


def test_a_utf16_file_is_dead_lettered_line_by_line_not_a_crash(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes((GOOD % 1 + GOOD % 2).decode().encode("utf-16"))  # starts with FF FE
    out = rows_of(p)
    assert out and all(isinstance(r, Rejected) for _, r in out)
    first = out[0][1]
    assert isinstance(first, Rejected) and "looks like UTF-16" in first.letter.reason


def test_a_csv_row_that_is_not_utf8_is_dead_lettered_and_the_rest_replayed(
    tmp_path: Path,
) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(
        b"id,source,text,created_at\n"
        b"1,x,caf\xc3\xa9,2013-05-20T00:00:35Z\n"
        b'2,x,"two\nlines caf\xe9",2013-05-20T00:00:36Z\n'
        b"3,x,ok,2013-05-20T00:00:37Z\n"
    )
    out = rows_of(p)
    assert [(n, r.id) for n, r in out if isinstance(r, Post)] == [(2, "1"), (5, "3")]
    [(n, dead)] = [(n, r) for n, r in out if isinstance(r, Rejected)]
    assert n == 4 and dead.kind == "not UTF-8"
    assert dead.letter.reason.startswith("line 4: column 'text': not valid UTF-8: byte 0xE9")
    assert json.loads(dead.letter.value)["text"] == "two\nlines caf\ufffd"


def test_a_csv_row_that_csv_cannot_read_is_dead_lettered(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    big = "x" * (csv.field_size_limit() + 1)
    p.write_text(
        f"id,source,text,created_at\n1,x,{big},2013-05-20T00:00:35Z\n2,x,hi,2013-05-20T00:00:35Z\n"
    )
    (n, dead), (m, post) = rows_of(p)
    assert isinstance(dead, Rejected) and dead.kind == "bad CSV" and n == 2
    assert (
        dead.letter.reason == "line 2: not readable as CSV: field larger than field limit (131072)"
    )
    assert isinstance(post, Post) and post.id == "2" and m == 3


def test_a_csv_header_that_is_not_utf8_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(b"id,source,text,created_at,n\xe9\n1,x,hi,2013-05-20T00:00:35Z,2\n")
    with caplog.at_level(logging.WARNING, logger="connectors.replay"):
        [(_, post)] = rows_of(p)
    assert "the CSV header is not valid UTF-8: byte 0xE9 at byte 2" in caplog.text
    assert isinstance(post, Post) and post.metadata == {"n\ufffd": "2"}


def test_a_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(b"\xef\xbb\xbfid,source,text,created_at\n7,x,hi,2013-05-20T00:00:35Z\n")
    [(_, post)] = rows_of(p)
    assert isinstance(post, Post) and post.id == "7" and post.metadata == {}


def test_a_jsonl_with_a_byte_order_mark(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + GOOD % 1)
    [(_, post)] = rows_of(p)
    assert isinstance(post, Post) and post.id == "1"


BSKY = {
    "id": "at://a/app.bsky.feed.post/2",
    "source": "bluesky",
    "text": "a reply",
    "created_at": "2025-09-20T17:54:49Z",
    "reply_to": "at://r/app.bsky.feed.post/1",
}


def test_the_rows_own_metadata_is_the_posts_metadata_with_extra_columns_beside_it() -> None:
    meta = {"reply_root": BSKY["reply_to"], "likes": 3}
    post = to_post({**BSKY, "metadata": meta, "lang_score": 0.9}, now=lambda: NOW)
    assert post.metadata == {**meta, "lang_score": 0.9}
    assert reply_depth(post) == 1
    # a column that the metadata object also has: the object wins, the column is kept aside
    post = to_post({**BSKY, "metadata": meta, "likes": 5, "x": 1}, now=lambda: NOW)
    assert post.metadata == {**meta, "x": 1, "replay_shadowed": {"likes": 5}}
    assert to_post({**BSKY, "metadata": meta, "likes": 3}).metadata == meta
    # a file written from replayed posts: its replay_shadowed is kept, a new clash added
    again = {**meta, "replay_shadowed": {"likes": 5}}
    post = to_post({**BSKY, "metadata": again, "likes": 5, "x": 1}, now=lambda: NOW)
    assert post.metadata == {**again, "x": 1}
    post = to_post({**BSKY, "metadata": {**again, "x": 1}, "x": 2}, now=lambda: NOW)
    assert post.metadata["replay_shadowed"] == {"likes": 5, "x": 2}
    # ... unless that too holds another value: then nothing can hold both
    with pytest.raises(RowError, match=r"columns \['likes'\] clash") as exc:
        to_post({**BSKY, "metadata": again, "likes": 6})
    assert exc.value.kind == "metadata clash"


def test_a_csv_metadata_cell_holding_json_and_metadata_that_is_not_an_object(
    tmp_path: Path,
) -> None:
    p = tmp_path / "a.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*BSKY, "metadata"])
        w.writerow([*BSKY.values(), json.dumps({"reply_root": BSKY["reply_to"]})])
        w.writerow([*BSKY.values(), "[1, 2]"])
        w.writerow([*BSKY.values(), ""])
    (_, first), (_, second), (_, third) = rows_of(p)
    assert isinstance(first, Post) and reply_depth(first) == 1
    assert isinstance(second, Rejected) and second.kind == "invalid metadata"
    assert "metadata must be a JSON object, not list" in second.letter.reason
    assert isinstance(third, Post) and third.metadata == {}


def test_ingested_at_is_the_replays_and_the_files_is_kept_in_metadata() -> None:
    post = to_post({**BSKY, "ingested_at": "2025-09-20T18:00:00Z"}, now=lambda: NOW)
    assert post.ingested_at == NOW
    assert post.metadata == {"original_ingested_at": "2025-09-20T18:00:00Z"}


def test_a_column_not_read_because_of_a_map_is_kept_in_metadata() -> None:
    row = {**BSKY, "body": "the text we want"}
    post = to_post(row, field_map={"text": "body"}, now=lambda: NOW)
    assert post.text == "the text we want" and post.metadata == {"text": "a reply"}


def test_an_empty_required_field_says_so() -> None:
    with pytest.raises(RowError) as exc:
        to_post({**BSKY, "text": ""})
    assert (exc.value.reason, exc.value.kind) == ("invalid Post: text is empty", "empty text")
    with pytest.raises(RowError, match="id is empty; text is empty"):
        to_post({**BSKY, "id": "", "text": ""})
    # --source stands in for an empty source column; missing fields keep pydantic's reason
    assert to_post({**BSKY, "source": ""}, source="bluesky").source == "bluesky"
    with pytest.raises(RowError, match="text: Field required") as exc:
        to_post({k: v for k, v in BSKY.items() if k != "text"})
    assert exc.value.kind == "missing text"


def test_lang_sets_every_posts_language() -> None:
    assert to_post(BSKY, lang="pt-BR").lang == "pt-BR"
    assert to_post({**BSKY, "lang": "en"}, lang="es").lang == "es"  # (whatever the row says)
    assert to_post({**BSKY, "lang": "de"}).lang == "de"
    assert to_post(BSKY).lang is None


def test_a_csv_row_with_more_cells_than_the_header(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("id,source,text,created_at\n1,x,hello, world,2013-05-20T00:00:35Z\n")
    [(_, dead)] = rows_of(p)
    assert isinstance(dead, Rejected) and dead.kind == "too many cells"
    assert "1 more cell(s) than the header's 4 columns" in dead.letter.reason


def test_a_csv_header_without_the_text_column_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "a.csv"
    p.write_text("tweet_id,body,created_at\n1,hi,2013-05-20T00:00:35Z\n")
    seen: list[list[str]] = []
    [(_, row)] = list(read_rows(p, on_header=seen.append))
    assert seen == [["tweet_id", "body", "created_at"]]
    assert isinstance(map_row(p, 2, row, source="x"), Rejected)
    with caplog.at_level(logging.WARNING, logger="connectors.replay"):
        assert warn_missing_columns(p, seen[0], None, "x") == ["id", "text"]
    assert "no column 'id', 'text'" in caplog.text
    assert "header: 'tweet_id', 'body', 'created_at'" in caplog.text
    assert missing_columns(seen[0], {"id": "tweet_id", "text": "body"}, None) == ["source"]
    assert missing_columns(seen[0], {"id": "tweet_id", "text": "body"}, "x") == []


def test_summary_counts_dead_letters_by_kind() -> None:
    stats = ReplayStats(read=5, sent=1, dead=4, reasons={"missing text": 1, "not UTF-8": 3})
    assert list(stats.as_dict()["dead_lettered_by_kind"].items()) == [
        ("not UTF-8", 3),
        ("missing text", 1),
    ]


def test_cli_rejects_a_map_to_a_field_that_is_not_a_post_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["replay", str(tmp_path / "a.csv"), "--map", "bogus=body"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --map: 'bogus' is not a post field" in err
    assert "id, source, text, created_at" in err


def test_cli_rejects_a_field_mapped_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["replay", str(tmp_path / "a.csv"), "--map", "text=a", "--map", "text=b"]
    assert cli.main(args) == 2
    assert "--map gives text more than once" in capsys.readouterr().err


def test_cli_says_a_directory_is_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["replay", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert cli.main(["replay", str(tmp_path / "nope.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(("sent", "code"), [(0, 1), (1, 0)])
def test_cli_exits_1_when_rows_were_read_but_none_sent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sent: int,
    code: int,
) -> None:
    p = tmp_path / "a.csv"
    p.write_text("x\n1\n")

    async def fake_replay(settings: Any, path: Path, **kw: Any) -> ReplayStats:
        return ReplayStats(read=3, sent=sent, dead=3 - sent, reasons={"missing text": 3 - sent})

    monkeypatch.setattr(replay_module, "replay", fake_replay)
    assert cli.main(["replay", str(p)]) == code
    assert json.loads(capsys.readouterr().out)["dead_lettered_by_kind"] == {
        "missing text": 3 - sent
    }


def test_dead_letters_are_logged_for_the_first_few_of_each_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = Path("x.jsonl")
    counts: dict[str, int] = {}
    with caplog.at_level(logging.WARNING, logger="connectors.replay"):
        for n in range(1, 60):
            row: dict[str, Any] | str = "not json" if n % 2 else {"id": "1"}
            rejected = map_row(path, n, row)
            assert isinstance(rejected, Rejected)
            counts[rejected.kind] = counts.get(rejected.kind, 0) + 1
            log_rejected(rejected, counts[rejected.kind])
    lines = [r.getMessage() for r in caplog.records]
    assert len(counts) == 2 and all(c > LOGGED_PER_KIND for c in counts.values())
    assert len(lines) == 2 * LOGGED_PER_KIND
    for kind in counts:
        assert sum(f"further {kind!r} dead letters" in line for line in lines) == 1
    assert lines[0].startswith("line 1: not a JSON object")


# --- hostile lines (issue 18): each one dead-lettered with a kind, none a crash -------------


def hostile_lines() -> dict[str, bytes]:
    """One line per kind of hostile row the replay once crashed on, keyed by its kind."""
    good = {"id": "h", "source": "x", "text": "t", "created_at": "2013-05-20T00:00:35Z"}
    return {
        "nested too deep": b'{"a":' * 1000 + b"1" + b"}" * 1000,
        "number too long": b'{"id": ' + b"7" * 5000 + b', "source": "x"}',
        "metadata too large": json.dumps({**good, "metadata": {"m": "a" * 5_000_000}}).encode(),
        "created_at out of range": json.dumps(
            {**good, "created_at": "9999-12-31T23:59:59Z"}
        ).encode(),
        "metadata nested too deep": json.dumps(
            {**good, "metadata": json.loads('{"a":' * 900 + "1" + "}" * 900)}
        ).encode(),
    }


def test_hostile_lines_are_dead_lettered_by_kind_and_blank_lines_counted(
    tmp_path: Path,
) -> None:
    p = tmp_path / "h.jsonl"
    hostile = hostile_lines()
    lines = [GOOD % 1, *hostile.values(), b"  \t ", GOOD % 2]
    p.write_bytes(b"\n".join(line.rstrip(b"\n") for line in lines) + b"\n")
    blank: list[int] = []
    out = [(n, map_row(p, n, row)) for n, row in read_rows(p, on_blank=blank.append)]
    assert [r.id for _, r in out if isinstance(r, Post)] == ["1", "2"]
    assert [r.kind for _, r in out if isinstance(r, Rejected)] == list(hostile)
    assert blank == [len(hostile) + 2]
    for _, r in out:
        if isinstance(r, Rejected):
            assert len(r.letter.to_bytes()) < 100_000  # a dead letter Kafka takes


def test_the_metadata_cap_is_in_the_post_contract() -> None:
    from seismo.contracts import METADATA_MAX_BYTES

    base = {"id": "1", "source": "x", "text": "t", "created_at": "2013-05-20T00:00:35Z"}
    assert to_post({**base, "metadata": {"m": "a" * (METADATA_MAX_BYTES - 100)}}).metadata
    with pytest.raises(RowError, match="over the 64000-byte limit") as err:
        to_post({**base, "metadata": {"m": "a" * METADATA_MAX_BYTES}})
    assert err.value.kind == "metadata too large"


def test_kafka_gone_mid_replay_stops_with_a_clear_message_saying_a_rerun_is_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broker outage longer than the producer's timeouts: the batches Kafka never took
    fail (aiokafka's KafkaTimeoutError), and the replay says so instead of a traceback."""
    import asyncio

    from aiokafka.errors import KafkaTimeoutError

    import connectors.replay as replay_mod
    from seismo.cli import main

    class GoneProducer:
        """Takes 3 posts, then every batch expires."""

        def __init__(self) -> None:
            self.sent = 0

        async def start(self) -> None:
            pass

        async def send(self, *a: object, **kw: object) -> asyncio.Future[None]:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.sent += 1
            if self.sent <= 3:
                fut.set_result(None)
            else:
                fut.set_exception(KafkaTimeoutError())
            return fut

        async def flush(self) -> None:
            pass

        async def stop(self) -> None:
            pass

    async def no_topics(*a: object, **kw: object) -> list[str]:
        return []

    monkeypatch.setattr(replay_mod, "make_producer", lambda settings, purpose: GoneProducer())
    monkeypatch.setattr(replay_mod, "ensure_topics", no_topics)
    rows = [
        {"id": str(i), "source": "x", "text": "hi", "created_at": f"2026-05-01T10:00:{i:02d}Z"}
        for i in range(10)
    ]
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["replay", str(path), "--speed", "max"]) == 2
    err = capsys.readouterr().err
    assert "Kafka did not take the posts (KafkaTimeoutError" in err
    assert "a rerun of the same replay is safe" in err


def test_the_replay_summary_counts_the_copies_detect_skipped() -> None:
    """Ingest keeps no state: a copy is skipped by detect, and that is what ``duplicates``
    reports (a delivery skipped by deliver is no post skipped)."""
    from seismo.collect import worker_counts_of

    text = "\n".join(
        [
            "# TYPE seismo_posts_out_total counter",
            'seismo_posts_out_total{source="x",stage="ingest"} 12.0',
            "# TYPE seismo_duplicates_skipped_total counter",
            'seismo_duplicates_skipped_total{stage="detect"} 5.0',
            'seismo_duplicates_skipped_total{stage="deliver"} 3.0',
            "# TYPE seismo_detector_too_late_total counter",
            'seismo_detector_too_late_total{partition="0"} 2.0',
            'seismo_detector_too_late_total{partition="1"} 1.0',
            "",
        ]
    )
    counts = worker_counts_of(text)
    assert counts == {
        "processed": 12,
        "dead_lettered": 0,
        "duplicates": 5,
        "too_late": 3,
        "watched_seconds": 0,
    }


def _report(**counts: int) -> dict[str, Any]:
    from seismo.collect import worker_report

    zero = {"processed": 0, "dead_lettered": 0, "duplicates": 0, "too_late": 0}
    after = {**zero, "watched_seconds": 0, **counts}
    return worker_report({**zero, "watched_seconds": 0}, after, 1800)


@pytest.mark.parametrize(
    ("counts", "says"),
    [
        (
            {"processed": 40, "watched_seconds": 2700},
            "the detector has watched 45 min of event time and raises nothing in its first "
            "2 h (detector.warmup_seconds, warmup_buckets)",
        ),
        (
            {"processed": 40, "watched_seconds": 5 * 3600 + 600},
            "no word, phrase or tracked key of these posts rose far enough above its own "
            "baseline (detector.min_score 4): a quiet stream raises none",
        ),
        (
            {"processed": 40, "duplicates": 40, "watched_seconds": 9 * 3600},
            "none of these posts was counted by the detector (40 posts skipped as already seen",
        ),
        (
            {"dead_lettered": 40},
            "none of these posts was counted by the detector (40 posts the worker put on dlq.v1",
        ),
    ],
)
def test_a_replay_without_alerts_says_why(counts: dict[str, int], says: str) -> None:
    """`"alerts": 0` comes with its reason: posts the detector did not count, a detector
    still in its warm-up, or a stream in which nothing rose above its baseline."""
    from seismo.collect import why_no_alerts

    assert why_no_alerts(_report(**counts), DetectorParams()).startswith(says)


def test_the_worker_report_reads_the_event_time_the_detector_watched() -> None:
    from seismo.collect import why_no_alerts, worker_counts_of

    text = "\n".join(
        [
            "# TYPE seismo_posts_out_total counter",
            'seismo_posts_out_total{source="x",stage="ingest"} 12.0',
            "# TYPE seismo_detector_watched_seconds gauge",
            'seismo_detector_watched_seconds{partition="0"} 3600.0',
            'seismo_detector_watched_seconds{partition="1"} 600.0',
            "",
        ]
    )
    counts = worker_counts_of(text)
    assert counts["watched_seconds"] == 3600 and counts["processed"] == 12
    assert "unknown: no worker metrics" in why_no_alerts(
        {"unknown": "no worker metrics at http://127.0.0.1:6066/metrics"}, DetectorParams()
    )


def test_a_worker_still_starting_when_the_replay_began_is_counted_from_zero() -> None:
    """The replay's first reading of the worker's metrics fails while the worker starts;
    its counters began at zero then, which its process start time tells."""
    from seismo.collect import worker_counts_of, worker_report
    from streams.app import new_registry

    exposed = generate_latest(new_registry()).decode()
    assert worker_counts_of(exposed)["started"] == pytest.approx(time.time(), abs=600)
    began = 1_000_000.0
    text = "\n".join(
        [
            "# TYPE seismo_posts_out_total counter",
            'seismo_posts_out_total{source="x",stage="ingest"} 12.0',
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {began - 30}",
            "",
        ]
    )
    after = worker_counts_of(text)
    down = "no worker metrics at http://127.0.0.1:6066/metrics (ClientConnectorError)"
    report = worker_report(down, after, 1800, began)
    assert report["processed"] == 12
    assert report["notes"] == [f"counted since the worker started (when the replay began: {down})"]
    # a worker up long before whose first reading failed: its counts include older traffic
    old = {**after, "started": int(began - 3600)}
    assert worker_report(down, old, 1800, began) == {"unknown": down}
    # a worker that restarted between the readings counted part of the replay
    restarted = worker_report(old, after, 1800, began)
    assert restarted == {
        "unknown": "the worker restarted during the replay (its counters began again)"
    }


def test_the_warm_up_a_replay_is_told_of_is_the_finest_scales() -> None:
    """Without ``warmup_seconds`` the finest scale still waits for 12 of its 5-minute
    buckets: a 45-minute stream is told of that hour."""
    from seismo.collect import why_no_alerts

    params = DetectorParams(warmup_seconds=0)
    assert params.scale_warmup(1) == 3600 and params.scale_warmup(144) == 6 * 86400
    why = why_no_alerts(_report(processed=40, watched_seconds=2700), params)
    assert why.startswith("the detector has watched 45 min of event time and raises nothing in")
    assert "its first 1 h (" in why
