"""Real streams with known bursts (../shared/data; skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seismo.config import load_settings
from seismo.contracts import Alert, Post
from streams.alertbook import Burst, PostRef, corroborated
from streams.evaluate import (
    TARGET_DELIVERED,
    TARGET_POSTS,
    TARGET_STORIES,
    EventSpec,
    alert_on_topic,
    evaluate_event,
    median_posts,
    posts_to_detection,
)
from streams.features import burst_items, topic_text
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
    assert r.posts_to_detection is not None and r.posts_to_detection <= TARGET_POSTS
    assert r.pre_onset_alerts == 0  # nothing in the quiet period
    first = next(a for a in alerts if a.id == r.first_alert_id)
    assert {"tornado", "oklahoma", "moore"} & set(first.terms)


def test_no_story_opens_on_two_posts_that_share_one_word(shared_data: Path) -> None:
    """On Hacker News, where two titles sharing a rare word within minutes are common, a
    story opens from fewer than ``lone_word_posts`` posts only when they share more than
    the word; Cloudflare's outage, whose first two titles share only "cloudflare", opens
    on its third."""
    path = shared_data / "replay" / "hn_stories_2019-05-24_2019-07-22.jsonl"
    posts = file_posts(path)
    alerts = offline_alerts(posts)
    lone = load_settings().detector.lone_word_posts
    assert lone > 2  # (the default: two posts are not enough on one word)
    opened = [a for a in alerts if a.version == 1 and a.kind == "term"]
    small = [a for a in opened if a.observed < lone]
    assert small  # (the rule is exercised: some stories do open on two posts)
    for a in small:
        refs = [
            PostRef(
                e.post_id,
                e.source,
                e.created_at.timestamp(),
                e.text,
                None,
                None,
                e.post_id,
                tuple(burst_items(topic_text(e.text, e.source))),
            )
            for e in a.evidence
        ]
        key = a.key.removeprefix("term:")
        b = Burst(key, "term", key, refs[0].ts, a.observed, a.expected, a.z, a.score, refs)
        assert corroborated(b), (a.key, [e.text for e in a.evidence])
    r = evaluate_event(event(shared_data, path.name), posts, alerts)
    assert r.posts_to_detection == 3 and r.delay_from_first_post_min is not None
    assert r.delay_from_first_post_min < 5


@pytest.mark.slow
def test_all_events_offline(shared_data: Path) -> None:
    """Issue 16's targets on all 15 labelled bursts with the shipped defaults: at least 13
    detected within 8 on-topic posts, a median of at most 5, and every stream quiet before
    its onset (at most 2 alerts a day; 2 when the quiet period is under a day). Issue 17's:
    at most 24 delivered versions in the day after each onset, and one or two on-topic
    stories in that day for all but Meltdown and left-pad (each first named more than a day
    after its onset: docs/benchmarks.md); in the day after the first on-topic alert, for
    all."""
    specs = [
        ev
        for name in ("events.json", "events_hn.json")
        for ev in EventSpec.load(shared_data / "replay" / name)
    ]
    assert len(specs) == 15
    by_file: dict[str, list[Post]] = {}
    results = []
    for ev in specs:
        posts = by_file.get(ev.replay) or file_posts(shared_data / "replay" / ev.replay)
        by_file = {ev.replay: posts}
        results.append(evaluate_event(ev, posts, offline_alerts(posts)))
    assert [r.event for r in results if not r.quiet_in_target] == []
    assert sum(r.detected_within_posts for r in results) >= 13
    assert median_posts(r.posts_to_detection for r in results) <= 5
    assert [r.event for r in results if r.delivered_24h > TARGET_DELIVERED] == []
    assert [r.event for r in results if not 1 <= r.stories_24h <= TARGET_STORIES] == [
        "Meltdown / Spectre CPU flaws",
        "npm left-pad unpublish breaks builds",
    ]
    # counted from the first on-topic alert instead, left-pad is one story, Meltdown two
    assert [r.event for r in results if r.delivered_24h_detected > TARGET_DELIVERED] == []
    assert [r.event for r in results if not 1 <= r.stories_24h_detected <= TARGET_STORIES] == []


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
    assert ev.onset < first.raised_at
    n = posts_to_detection(ev, file_posts(path), first)
    assert n is not None and n <= TARGET_POSTS
