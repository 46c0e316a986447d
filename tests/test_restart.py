"""Restarts lose nothing and deliver no alert twice (real broker, worker processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seismo.contracts import Post
from tests.helpers import (
    REPO,
    WebhookReceiver,
    WorkerProcess,
    offline_alerts,
    replay_summary,
    synthetic_stream,
    write_jsonl,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def multi_burst_rows() -> list[dict]:
    rows = synthetic_stream(hours=12, per_hour=30, burst_at_hour=4)
    rows += [
        r | {"id": f"d{i}"}
        for i, r in enumerate(
            synthetic_stream(
                hours=0,
                burst_at_hour=7.5,
                burst_posts=12,
                seed=3,
                burst_texts=[
                    "DeepSeek V4 Pro trained on Huawei Ascend chips",
                    "Huawei Ascend ran DeepSeek V4",
                    "DeepSeek V4 on Ascend? Huawei says yes",
                ],
            )
        )
    ]
    rows += [
        r | {"id": f"c{i}"}
        for i, r in enumerate(
            synthetic_stream(
                hours=0,
                burst_at_hour=10.5,
                burst_posts=14,
                seed=4,
                burst_texts=[
                    "Cloudflare outage takes down half the web",
                    "Is Cloudflare down for everyone?",
                    "Massive Cloudflare outage right now",
                    "cloudflare 502 errors everywhere",
                ],
            )
        )
    ]
    rows.sort(key=lambda r: r["created_at"])
    return rows


def expected_ids(rows: list[dict]) -> set[tuple[str, int]]:
    """(id, version) of every alert version the posts cause that the webhooks get (the story
    throttle's decision is part of the version), computed offline."""
    alerts = offline_alerts(Post.model_validate(r) for r in rows)
    return {(a.id, a.version) for a in alerts if a.deliver is not False}


def test_restart_with_backlog(worker_env: dict[str, str], tmp_path: Path) -> None:
    """Posts that arrive while the worker is down are all processed after it restarts.

    Deterministic: first half processed, clean stop, second half produced, restart. This is
    the case that faust's recovery ordering bug (see streams/faust_fixes.py) broke: part of
    the backlog was skipped and offsets never committed again.
    """
    rows = multi_burst_rows()
    want = expected_ids(rows)
    half = len(rows) // 2
    first = write_jsonl(tmp_path / "first.jsonl", rows[:half])
    second = write_jsonl(tmp_path / "second.jsonl", rows[half:])
    with WebhookReceiver() as rx:
        env = {**worker_env, "SEISMO_WEBHOOK_URLS": json.dumps([rx.url])}
        log = tmp_path / "worker.log"
        worker = WorkerProcess(env, log).start()
        try:
            replay_summary(
                env, first, "--alerts-out", str(tmp_path / "a1.jsonl"), "--wait-timeout", "120"
            )
            assert worker.stop() == 0
            assert replay_summary(env, second)["sent"] == len(rows) - half  # worker is down
            worker = WorkerProcess(env, log).start()
            # drain: an empty replay that waits for the pipeline to commit everything
            replay_summary(
                env,
                second,
                "--limit",
                "0",
                "--alerts-out",
                str(tmp_path / "a2.jsonl"),
                "--wait-timeout",
                "120",
            )
        finally:
            worker.stop()
        got = [(r["id"], r["version"]) for r in rx.requests]
        assert len(got) == len(set(got))
        assert set(got) == want


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_restart_mid_stream(how: str, worker_env: dict[str, str], tmp_path: Path) -> None:
    rows = multi_burst_rows()
    want = expected_ids(rows)
    assert len(want) >= 3
    path = write_jsonl(tmp_path / "stream.jsonl", rows)
    with WebhookReceiver() as rx:
        env = {**worker_env, "SEISMO_WEBHOOK_URLS": json.dumps([rx.url])}
        log = tmp_path / "worker.log"
        worker = WorkerProcess(env, log).start()
        replay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "seismo.cli",
                "replay",
                str(path),
                "--speed",
                "5000",
                "--alerts-out",
                str(tmp_path / "alerts.jsonl"),
                "--wait-timeout",
                "240",
            ],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # stop the worker once it has delivered something, i.e. mid-stream
            rx.wait_for(lambda a: True, 60)
            if how == "sigkill":
                worker.kill()
            else:
                assert worker.stop() == 0
            time.sleep(1)
            worker = WorkerProcess(env, log).start()
            out, err = replay.communicate(timeout=300)
            assert replay.returncode == 0, err[-3000:]
            summary = json.loads(out.strip().splitlines()[-1])
            assert summary["sent"] == len(rows)
        finally:
            if replay.poll() is None:
                replay.kill()
            worker.stop()
        got = [(r["id"], r["version"]) for r in rx.requests]
        assert set(got) == want  # nothing lost
        if how == "sigterm":
            assert len(got) == len(set(got))  # a clean stop delivers nothing twice
        else:
            # after a crash a delivery may be retried; it carries the same idempotency key
            keys = [h["Idempotency-Key"] for h in rx.headers]
            assert {f"{i}.v{v}" for i, v in got} == set(keys)
        assert '"stage": "ingest"' not in log.read_text()  # no record went to the DLQ
