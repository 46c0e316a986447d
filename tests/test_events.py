"""Real streams with known bursts (../shared/data; skipped when absent)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from seismo.contracts import Alert, Post
from tests.helpers import WorkerProcess, offline_alerts, replay_summary


def event(shared: Path, replay: str) -> dict:
    events = json.loads((shared / "replay" / "events.json").read_text())
    return next(e for e in events if e["replay"] == replay)


def file_alerts(path: Path) -> list[Alert]:
    with path.open() as f:
        return offline_alerts(Post.model_validate_json(line) for line in f)


def on_topic(a: Alert, keywords: list[str]) -> bool:
    return any(k in t for t in a.terms[:3] for k in keywords)


def test_oklahoma_tornado_offline(shared_data: Path) -> None:
    ev = event(shared_data, "crisislex_2013_Oklahoma_Tornado.jsonl")
    onset = datetime.fromisoformat(ev["onset"])
    alerts = file_alerts(shared_data / "replay" / ev["replay"])
    hits = [a for a in alerts if on_topic(a, ev["keywords"])]
    first = min(hits, key=lambda a: a.raised_at)
    assert onset < first.raised_at <= onset + timedelta(minutes=60)
    assert {"tornado", "oklahoma"} & set(first.terms)
    assert not [a for a in alerts if a.raised_at < onset]  # nothing in the quiet period


@pytest.mark.broker
@pytest.mark.slow
def test_oklahoma_through_kafka_matches_offline(
    shared_data: Path, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """The README's demo: replay --speed max through the broker; same alerts as in-process."""
    path = shared_data / "replay" / "crisislex_2013_Oklahoma_Tornado.jsonl"
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        out = tmp_path / "a.jsonl"
        replay_summary(
            worker_env, path, "--alerts-out", str(out), "--wait-timeout", "600", timeout=900
        )
    finally:
        worker.stop()
    got = [Alert.model_validate_json(line) for line in out.read_text().splitlines()]
    want = file_alerts(path)
    assert sorted(a.id for a in got) == sorted(a.id for a in want)
    ev = event(shared_data, path.name)
    onset = datetime.fromisoformat(ev["onset"])
    first = min((a for a in got if on_topic(a, ev["keywords"])), key=lambda a: a.raised_at)
    assert onset < first.raised_at <= onset + timedelta(minutes=60)
