"""Real streams with known bursts (../shared/data; skipped when absent)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from seismo.contracts import Alert, Post
from streams.evaluate import EventSpec, alert_on_topic, evaluate_event
from tests.helpers import WorkerProcess, offline_alerts, replay_summary


def event(shared: Path, replay: str) -> EventSpec:
    specs = EventSpec.load(shared / "replay" / "events.json")
    return next(e for e in specs if e.replay == replay)


def file_posts(path: Path) -> list[Post]:
    with path.open() as f:
        return [Post.model_validate_json(line) for line in f]


def file_alerts(path: Path) -> list[Alert]:
    return offline_alerts(file_posts(path))


def test_oklahoma_tornado_offline(shared_data: Path) -> None:
    ev = event(shared_data, "crisislex_2013_Oklahoma_Tornado.jsonl")
    posts = file_posts(shared_data / "replay" / ev.replay)
    alerts = offline_alerts(posts)
    r = evaluate_event(ev, posts, alerts)
    assert r.detected_in_target and r.delay_from_first_post_min is not None
    assert r.delay_from_first_post_min <= 15
    assert r.pre_onset_alerts == 0  # nothing in the quiet period
    first = next(a for a in alerts if a.id == r.first_alert_id)
    assert {"tornado", "oklahoma", "moore"} & set(first.terms)


@pytest.mark.slow
def test_all_events_offline(shared_data: Path) -> None:
    """The issue's targets: detected within 15 min, at most 2 false alerts a day before.

    Meltdown/Spectre is the known miss: its first on-topic post is one lone story a day
    before the disclosure (see README); it is detected when the disclosure breaks.
    """
    specs = EventSpec.load(shared_data / "replay" / "events.json")
    results = {}
    for ev in specs:
        posts = file_posts(shared_data / "replay" / ev.replay)
        results[ev.replay] = evaluate_event(ev, posts, offline_alerts(posts))
    assert all(r.quiet_in_target for r in results.values())
    missed = {k for k, r in results.items() if not r.detected_in_target}
    assert missed <= {"hn_stories_2017-12-24_2018-03-02.jsonl"}
    assert results["hn_stories_2017-12-24_2018-03-02.jsonl"].first_alert_at is not None


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
        replay_summary(worker_env, path, "--alerts-out", str(out))
    finally:
        worker.stop()
    got = [Alert.model_validate_json(line) for line in out.read_text().splitlines()]
    want = file_alerts(path)
    assert sorted((a.id, a.version) for a in got) == sorted((a.id, a.version) for a in want)
    ev = event(shared_data, path.name)
    first = min((a for a in got if alert_on_topic(a, ev.keywords)), key=lambda a: a.raised_at)
    assert ev.onset < first.raised_at <= ev.onset + timedelta(minutes=20)
