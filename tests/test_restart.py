"""Restarts lose nothing and deliver no alert twice (real broker, worker processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    DRAIN_WAIT,
    REPO,
    WebhookReceiver,
    WorkerProcess,
    expected_ids,
    multi_burst_rows,
    replay_summary,
    write_jsonl,
)
from tests.timeouts import COMMAND_FINISHES

pytestmark = [pytest.mark.broker, pytest.mark.slow]


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
            replay_summary(env, first, "--alerts-out", str(tmp_path / "a1.jsonl"))
            assert worker.stop() == 0
            assert replay_summary(env, second)["sent"] == len(rows) - half  # worker is down
            worker = WorkerProcess(env, log).start()
            # drain: an empty replay that waits for the pipeline to commit everything
            replay_summary(env, second, "--limit", "0", "--alerts-out", str(tmp_path / "a2.jsonl"))
        finally:
            worker.stop()
        got = [(r["id"], r["version"]) for r in rx.requests]
        assert len(got) == len(set(got))
        assert set(got) == want


@pytest.mark.parametrize(
    ("how", "raw_partitions"), [("sigterm", 1), ("sigkill", 1), ("sigkill", 4)]
)
def test_restart_mid_stream(
    how: str, raw_partitions: int, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """A worker stopped or killed once it has delivered something, then started again:
    every alert version the one-process pipeline raises is delivered. With one raw partition
    the detector catches up by classifying raw records again; with four, from
    posts.classified.v1, through its merge restored from the checkpoint (posts waiting in
    it, progress markers met again at the same places)."""
    rows = multi_burst_rows()
    want = expected_ids(rows)
    assert len(want) >= 3
    path = write_jsonl(tmp_path / "stream.jsonl", rows)
    with WebhookReceiver() as rx:
        env = {
            **worker_env,
            "SEISMO_WEBHOOK_URLS": json.dumps([rx.url]),
            "SEISMO_RAW_PARTITIONS": str(raw_partitions),
        }
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
                *DRAIN_WAIT,
            ],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # stop the worker once it has delivered something, i.e. mid-stream
            rx.wait_for(lambda a: True, "a first alert")
            if how == "sigkill":
                worker.kill()
            else:
                assert worker.stop() == 0
            worker = WorkerProcess(env, log).start()
            out, err = replay.communicate(timeout=COMMAND_FINISHES)
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
