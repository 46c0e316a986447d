"""``seismo replay`` on the real broker: bad bytes, metadata and a CSV without its text column."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.replies import reply_depth
from seismo.contracts import Post, decode
from tests.helpers import (
    DRAIN_WAIT,
    WorkerProcess,
    read_to_end,
    read_topic,
    replay_summary,
    run_seismo,
    synthetic_stream,
    write_jsonl,
)
from tests.timeouts import COMMAND_FINISHES

pytestmark = pytest.mark.broker

ROOT = "at://did:plc:r/app.bsky.feed.post/1"


def post_line(n: int, text: bytes = b"hello", **extra: object) -> bytes:
    row = {
        "id": f"at://did:plc:a/app.bsky.feed.post/{n}",
        "source": "bluesky",
        "text": "TEXT",
        "created_at": f"2025-09-20T17:54:{n:02d}Z",
        **extra,
    }
    return json.dumps(row).encode().replace(b'"TEXT"', b'"' + text + b'"') + b"\n"


def test_replay_dead_letters_bad_lines_and_keeps_metadata(
    worker_env: dict[str, str], kafka: str, tmp_path: Path
) -> None:
    ns = worker_env["SEISMO_NAMESPACE"]
    p = tmp_path / "mixed.jsonl"
    p.write_bytes(
        post_line(1, reply_to=ROOT, metadata={"reply_root": ROOT})
        + post_line(2, b"caf\xe9")  # Latin-1, not UTF-8
        + post_line(3, b"")
        + post_line(4, b"caf\xc3\xa9", ingested_at="2025-09-20T18:00:00Z")
    )
    res = run_seismo(worker_env, "replay", str(p), "--speed", "max")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert (summary["read"], summary["sent"], summary["dead_lettered"]) == (4, 2, 2)
    assert summary["dead_lettered_by_kind"] == {"not UTF-8": 1, "empty text": 1}

    raw = asyncio.run(read_topic(kafka, f"{ns}.posts.raw.v1", 2))
    posts = sorted((decode(Post, v) for v in raw), key=lambda q: q.id)
    assert [q.id[-1] for q in posts] == ["1", "4"]
    assert posts[0].metadata == {"reply_root": ROOT} and reply_depth(posts[0]) == 1
    assert posts[1].text == "café"
    assert posts[1].metadata == {"original_ingested_at": "2025-09-20T18:00:00Z"}

    dlq = sorted(
        (json.loads(v) for v in asyncio.run(read_topic(kafka, f"{ns}.dlq.v1", 2))),
        key=lambda d: d["offset"],
    )
    assert [d["offset"] for d in dlq] == [2, 3]
    assert dlq[0]["reason"].startswith("line 2: not valid UTF-8: byte 0xE9")
    assert "caf\ufffd" in dlq[0]["value"]
    assert dlq[1]["reason"] == "line 3: invalid Post: text is empty"


def test_replay_of_a_csv_without_a_text_column_warns_and_fails(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    p = tmp_path / "no-text.csv"
    p.write_text("id,body,created_at\n1,hi,2013-05-20T00:00:35Z\n2,yo,2013-05-20T00:00:36Z\n")
    res = run_seismo(worker_env, "replay", str(p), "--source", "x")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "the CSV header has no column 'text'" in res.stderr
    assert "header: 'id', 'body', 'created_at'" in res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert (summary["read"], summary["sent"]) == (2, 0)
    assert summary["dead_lettered_by_kind"] == {"missing text": 2}


def test_10000_hostile_lines_among_1000_good_posts(
    worker_env: dict[str, str], kafka: str, tmp_path: Path
) -> None:
    """Each kind once crashed the replay (traceback, exit 1, the good posts of its unsent
    batches lost): now each hostile line is dead-lettered and counted by its kind."""
    from tests.test_replay_unit import hostile_lines

    kinds = hostile_lines()
    big = kinds.pop("metadata too large")  # 5 MB: a few of these, and smaller ones
    over = json.dumps(
        {
            "id": "m",
            "source": "x",
            "text": "t",
            "created_at": "2013-05-20T00:00:35Z",
            "metadata": {"m": "a" * 70_000},
        }
    ).encode()
    kinds["created_at 1900"] = kinds["created_at out of range"].replace(
        b"9999-12-31", b"1900-01-01"
    )
    cycle = [*kinds.items(), ("metadata too large", over), ("blank", b" \t  ")]
    hostile: list[tuple[str, bytes]] = [("metadata too large", big)] * 3
    hostile += [cycle[i % len(cycle)] for i in range(10_000 - len(hostile))]
    p = tmp_path / "hostile.jsonl"
    with p.open("wb") as f:
        for i, (_, line) in enumerate(hostile):
            if i % 10 == 0:
                f.write(post_line(i // 10 % 60).replace(b"/post/", f"/post/{i}-".encode()))
            f.write(line + b"\n")
    want: dict[str, int] = {}
    for kind, _ in hostile:
        kind = "created_at out of range" if kind == "created_at 1900" else kind
        want[kind] = want.get(kind, 0) + 1
    blank = want.pop("blank")

    res = run_seismo(worker_env, "replay", str(p), "--speed", "max", timeout=COMMAND_FINISHES)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 1000
    assert summary["dead_lettered_by_kind"] == want
    assert summary["skipped_blank_lines"] == blank
    assert summary["dead_lettered"] + blank == 10_000
    ns = worker_env["SEISMO_NAMESPACE"]
    # the replay has finished: the topic holds exactly the good posts
    raw = asyncio.run(read_to_end(kafka, f"{ns}.posts.raw.v1"))
    assert len(raw) == 1000


def test_the_summary_says_what_the_worker_did_with_the_posts(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    """A second replay of a file, and an older file after a newer one: `"alerts": 0`, and
    the summary says why (skipped as already seen; too late for the detector's clock)."""
    rows = synthetic_stream()
    newer = write_jsonl(tmp_path / "newer.jsonl", rows)
    older_rows = synthetic_stream(start=datetime(2026, 4, 20, tzinfo=UTC))
    older = write_jsonl(
        tmp_path / "older.jsonl", [{**r, "id": f"old-{r['id']}"} for r in older_rows]
    )
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        out = tmp_path / "alerts.jsonl"
        first = replay_summary(worker_env, newer, "--alerts-out", str(out))
        assert first["alerts"] > 0 and "why_no_alerts" not in first, first
        # the detector watched the 12 hours of the stream (to its last 5-minute bucket)
        assert 11 * 3600 < first["worker"].pop("watched_seconds") <= 12 * 3600, first
        assert first["worker"] == {
            "processed": len(rows),
            "dead_lettered": 0,
            "duplicates": 0,
            "too_late": 0,
            "notes": [],
        }
        res = run_seismo(
            worker_env,
            "replay",
            str(newer),
            "--speed",
            "max",
            *DRAIN_WAIT,
            "--alerts-out",
            str(out),
        )
        assert res.returncode == 0, res.stderr[-3000:]
        again = json.loads(res.stdout.splitlines()[-1])
        assert again["alerts"] == 0 and again["worker"]["duplicates"] == len(rows), again
        # ingest keeps no state: the copies are classified again, and detect skips them
        assert again["worker"]["processed"] == len(rows) and again["worker"]["too_late"] == 0
        assert f"worker: {len(rows):,} posts skipped as already seen" in res.stderr
        assert again["why_no_alerts"].startswith("none of these posts was counted by the")
        assert "no alert: none of these posts was counted" in res.stderr
        late = replay_summary(worker_env, older, "--alerts-out", str(out))
        assert late["alerts"] == 0 and late["worker"]["processed"] == len(rows), late
        assert late["worker"]["too_late"] == len(rows)
        assert "detector.max_lateness_seconds" in late["worker"]["notes"][0]
        assert "detector.max_lateness_seconds" in late["why_no_alerts"]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
