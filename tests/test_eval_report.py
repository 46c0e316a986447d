"""Issue 16: posts to detection, the pre-onset alert list, several events files, the
``--report`` pictures; synthetic streams with known answers (real data: skipped if absent)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from seismo.cli import main
from seismo.contracts import Alert, Post
from streams.evaluate import (
    EventSpec,
    alert_on_topic,
    evaluate_event,
    finite_or_none,
    first_on_topic_alert,
    median_posts,
    on_topic,
    posts_to_detection,
    pre_onset_report,
    summary,
)
from tests.helpers import synthetic_stream, write_jsonl

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n"


def _post(i: int, minutes: float, text: str) -> Post:
    return Post(id=str(i), source="x", text=text, created_at=T0 + timedelta(minutes=minutes))


def _alert(aid: str, minutes: float, label: str, status: str = "open") -> Alert:
    at = T0 + timedelta(minutes=minutes)
    return Alert.model_validate(
        {
            "id": aid,
            "status": status,
            "kind": "term",
            "key": f"term:{label}",
            "label": label,
            "terms": [label],
            "window_start": at - timedelta(minutes=10),
            "window_seconds": 600,
            "raised_at": at,
            "first_seen": at,
            "observed": 5,
            "expected": 0.25,
            "score": 6.0,
            "detected_at": at,
        }
    )


SPEC = EventSpec(replay="s.jsonl", event="eruption", onset=T0, keywords=("volcano",))
POSTS = [
    _post(0, -600, "quiet day at the beach"),  # first post: 10 h of quiet period
    _post(1, -10, "a volcano documentary tonight"),  # on topic, before the onset: not counted
    _post(2, 1, "the volcano is erupting"),
    _post(3, 2, "ash from the volcano everywhere"),
    _post(4, 3, "lunch was good"),  # off topic
    _post(5, 5, "volcano eruption live"),  # raised the alert: counted
    _post(6, 6, "volcano again"),  # after the alert
]


def test_posts_to_detection_counts_on_topic_posts_from_onset_to_the_alert() -> None:
    alerts = [
        _alert("early", -20, "volcano"),  # on topic but before the onset
        _alert("noise", 2, "lunch"),  # off topic
        _alert("hit", 5, "volcano"),
        _alert("hit", 8, "volcano", status="update"),
    ]
    first = first_on_topic_alert(SPEC, alerts)
    assert first is not None and first.id == "hit" and first.status == "open"
    assert posts_to_detection(SPEC, POSTS, first) == 3
    r = evaluate_event(SPEC, POSTS, alerts)
    assert r.posts_to_detection == 3 and r.detected_within_posts
    assert r.pre_onset_alerts == 1 and r.pre_onset_days == round(10 / 24, 2)


def test_keywords_in_any_script_are_on_topic_as_the_detector_reads_them() -> None:
    """An event's keyword in Japanese or Portuguese is found as the detector's items find it:
    "地震" inside a clause, "São Paulo" as a phrase."""
    quake = EventSpec(replay="s.jsonl", event="quake", onset=T0, keywords=("地震",))
    assert on_topic(_post(1, 1, "東京で地震があった"), quake)
    assert not on_topic(_post(2, 1, "東京で震度4"), quake)
    assert alert_on_topic(_alert("a", 1, "また地震…怖い"), quake.keywords)
    rain = EventSpec(replay="s.jsonl", event="rain", onset=T0, keywords=("são paulo",))
    assert on_topic(_post(3, 1, "Chuva forte em São Paulo"), rain)
    assert not on_topic(_post(4, 1, "Paulo went home"), rain)


def test_a_missed_event_is_infinitely_many_posts() -> None:
    r = evaluate_event(SPEC, POSTS, [_alert("noise", 2, "lunch")])
    assert r.posts_to_detection is None and not r.detected_within_posts
    assert json.loads(json.dumps(r.as_dict()))["posts_to_detection"] is None
    assert median_posts([3, None, 5]) == 5
    assert median_posts([3, None]) == math.inf  # (3 + inf) / 2
    assert median_posts([1, 2, None, None, None]) == math.inf
    assert median_posts([]) == math.inf


def test_summary_reports_median_posts_and_count_within_8() -> None:
    hit = evaluate_event(SPEC, POSTS, [_alert("hit", 5, "volcano")])
    missed = evaluate_event(SPEC, POSTS, [])
    s = summary([hit, missed, hit])
    assert s["detected_within_8_posts"] == 2 and s["median_posts_to_detection"] == 3
    assert s["total"] == 3 and {"detected_in_target", "quiet_in_target"} <= set(s)
    assert summary([hit, missed])["median_posts_to_detection"] is None  # infinite: null


def test_pre_onset_report_lists_each_alert_opened_before_the_onset() -> None:
    alerts = [
        _alert("a", -300, "beach"),
        _alert("a", -290, "beach", status="update"),
        _alert("b", -60, "volcano"),
        _alert("c", 5, "volcano"),  # after the onset
    ]
    rep = pre_onset_report("s.jsonl", T0, POSTS, alerts)
    assert rep["stream"] == "s.jsonl" and rep["pre_onset_per_day"] == round(2 / (10 / 24), 2)
    assert [a["id"] for a in rep["pre_onset"]] == ["a", "b"]
    first = rep["pre_onset"][0]
    assert set(first) == {
        "id",
        "key",
        "label",
        "terms",
        "raised_at",
        "window_seconds",
        "observed",
        "expected",
        "score",
    }
    assert first["key"] == "term:beach" and first["label"] == "beach"
    assert first["raised_at"] == (T0 - timedelta(hours=5)).isoformat()
    assert first["window_seconds"] == 600 and first["observed"] == 5 and first["score"] == 6.0


def _events_file(path: Path, replay: str, event: str, onset: str, keywords: list[str]) -> Path:
    path.write_text(
        json.dumps([{"replay": replay, "event": event, "onset": onset, "keywords": keywords}])
    )
    return path


def _two_streams(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """s.jsonl: the GLM-5 burst at 10:00 is the event; t.jsonl: the same stream with an
    event that never comes at 11:00, so the GLM-5 alert there is a pre-onset alert."""
    rows = synthetic_stream()
    s = write_jsonl(tmp_path / "s.jsonl", rows)
    t = write_jsonl(tmp_path / "t.jsonl", rows)
    e1 = _events_file(
        tmp_path / "e1.json", "s.jsonl", "GLM-5 on Ascend", "2026-05-01T10:00:00Z", ["glm-5"]
    )
    e2 = _events_file(
        tmp_path / "e2.json", "t.jsonl", "never happens", "2026-05-01T11:00:00Z", ["volcano"]
    )
    return [str(s), str(t)], e1, e2


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.strip().splitlines()]


@pytest.mark.parametrize("twice", [False, True], ids=["two-files", "option-twice"])
def test_eval_bursts_takes_several_events_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], twice: bool
) -> None:
    streams, e1, e2 = _two_streams(tmp_path)
    events = ["--events", str(e1), "--events", str(e2)] if twice else ["--events", str(e1), str(e2)]
    assert main(["eval", "bursts", *streams, *events]) == 0
    lines = _lines(capsys.readouterr().out)
    hit, s_line, miss, t_line, total = lines
    assert hit["event"] == "GLM-5 on Ascend" and 1 <= hit["posts_to_detection"] <= 8
    assert s_line == {
        "stream": "s.jsonl",
        "onset": "2026-05-01T10:00:00+00:00",
        "pre_onset_days": hit["pre_onset_days"],
        "pre_onset_per_day": 0.0,
        "pre_onset": [],
        # issue 17: the stream's stories
        "stories_opened": 1,
        "stream_days": s_line["stream_days"],
        "stories_per_day": s_line["stories_per_day"],
        "max_stories_in_a_day": 1,
        "delivered_versions": s_line["delivered_versions"],
        "unreadable_headlines": [],
    }
    assert hit["stories_24h"] == 1 and 1 <= hit["delivered_24h"] <= s_line["delivered_versions"]
    assert miss["event"] == "never happens" and miss["posts_to_detection"] is None
    assert t_line["stream"] == "t.jsonl" and len(t_line["pre_onset"]) == miss["pre_onset_alerts"]
    assert any("glm-5" in a["label"].lower() or "glm-5" in a["terms"] for a in t_line["pre_onset"])
    assert total["total"] == 2 and total["detected_within_8_posts"] == 1
    assert total["median_posts_to_detection"] is None  # one of two missed: infinite


def test_eval_bursts_report_writes_a_png_per_event_and_an_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    streams, e1, e2 = _two_streams(tmp_path)
    out = tmp_path / "report"
    argv = ["eval", "bursts", *streams, "--events", str(e1), str(e2), "--report", str(out)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["total"] == 2
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["01-glm-5-on-ascend.png", "02-never-happens.png"]
    for name in pngs:
        assert (out / name).read_bytes()[:8] == PNG
    index = (out / "index.html").read_text(encoding="utf-8")
    for text in [*pngs, "GLM-5 on Ascend", "never happens", "s.jsonl", "t.jsonl", "missed"]:
        assert text in index


def test_eval_bursts_report_folder_that_cannot_be_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    streams, e1, _ = _two_streams(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["eval", "bursts", streams[0], "--events", str(e1), "--report", str(blocker / "r")]
    assert main(argv) == 2
    assert "cannot create report folder" in capsys.readouterr().err


@pytest.mark.slow
def test_all_fifteen_labelled_bursts_in_one_run(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = shared_data / "replay"
    events = [replay / "events.json", replay / "events_hn.json"]
    streams = sorted({s.replay for e in events for s in EventSpec.load(e)})
    argv = ["eval", "bursts", *(str(replay / s) for s in streams), "--events", *map(str, events)]
    assert main(argv) == 0
    lines = _lines(capsys.readouterr().out)
    results = [d for d in lines if "event" in d]
    assert len(results) == 15 and {d["stream"] for d in lines if "stream" in d} == set(streams)
    total = lines[-1]
    assert total["total"] == 15
    within = [d for d in results if d["posts_to_detection"] is not None]
    assert total["detected_within_8_posts"] == sum(d["posts_to_detection"] <= 8 for d in within)
    median = median_posts(d["posts_to_detection"] for d in results)
    assert total["median_posts_to_detection"] == finite_or_none(median)
