"""``seismo eval bursts`` on a small synthetic stream with a known onset."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from seismo.cli import main
from tests.helpers import synthetic_stream, write_jsonl


def test_eval_bursts_reports_delay_and_quiet_period(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = write_jsonl(tmp_path / "s.jsonl", synthetic_stream())  # burst at 10:00
    events = tmp_path / "events.json"
    events.write_text(
        json.dumps(
            [
                {
                    "replay": "s.jsonl",
                    "event": "GLM-5 on Ascend",
                    "onset": "2026-05-01T10:00:00Z",
                    "keywords": ["glm-5", "ascend"],
                },
                {  # labelled a day and a half early: its story comes after its first day
                    "replay": "s.jsonl",
                    "event": "GLM-5, labelled early",
                    "onset": "2026-04-29T22:00:00Z",
                    "keywords": ["glm-5", "ascend"],
                },
                {
                    "replay": "s.jsonl",
                    "event": "never happens",
                    "onset": "2026-05-01T09:00:00Z",
                    "keywords": ["volcano"],
                },
            ]
        )
    )
    assert main(["eval", "bursts", str(stream), "--events", str(events)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    hit, early, miss = (json.loads(line) for line in lines[:3])
    assert hit["detected_in_target"] and 0 <= hit["delay_min"] <= 15
    assert hit["pre_onset_alerts"] == 0 and hit["quiet_in_target"]
    # one story, counted in the day after the onset and in the day after the first alert
    assert hit["stories_24h"] == hit["stories_24h_detected"] == 1
    assert hit["delivered_24h"] == hit["delivered_24h_detected"] >= 1
    # the day after an early label holds none of it; the day after the first alert does
    assert early["first_alert_id"] == hit["first_alert_id"] and early["delay_min"] > 24 * 60
    assert early["stories_24h"] == early["delivered_24h"] == 0
    assert early["stories_24h_detected"] == 1
    assert early["delivered_24h_detected"] == hit["delivered_24h_detected"]
    assert miss["first_alert_at"] is None and not miss["detected_in_target"]
    assert miss["stories_24h"] == miss["stories_24h_detected"] == 0
    summary = json.loads(lines[-1])
    assert summary["detected_in_target"] == 2 and summary["total"] == 3  # (from its first post)
    assert summary["at_most_2_stories"] == 1 and summary["at_most_2_stories_once_detected"] == 2


def test_a_stream_without_alerts_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stream shorter than the warm-up, and a quiet one: no alert, each with its reason."""
    rows = synthetic_stream(hours=1, burst_posts=0)
    short = write_jsonl(tmp_path / "short.jsonl", rows)
    # watched: from the first post to the start of the last one's 5-minute bucket
    first, last = (datetime.fromisoformat(rows[i]["created_at"]).timestamp() for i in (0, -1))
    watched = int((last // 300 * 300 - first) // 60)
    quiet = write_jsonl(tmp_path / "quiet.jsonl", synthetic_stream(burst_posts=0))
    events = tmp_path / "events.json"
    events.write_text(json.dumps([]))
    assert main(["eval", "bursts", str(short), str(quiet), "--events", str(events)]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    by_name = {line["stream"]: line for line in lines if "stream" in line}
    assert by_name["short.jsonl"]["stories_opened"] == 0
    assert by_name["short.jsonl"]["why_no_alerts"] == (
        f"the detector has watched {watched} min of event time and raises nothing in its first "
        "2 h (detector.warmup_seconds, warmup_buckets)"
    )
    assert by_name["quiet.jsonl"]["stories_opened"] == 0
    assert by_name["quiet.jsonl"]["why_no_alerts"].startswith(
        "no word, phrase or tracked key of these posts rose far enough above its own baseline"
    )


def test_lang_sets_every_posts_language_and_so_its_stop_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Portuguese file without a language: its function words ("que", "para", "uma")
    burst when it is read as English; with ``--lang pt`` they are stop words, and the posts,
    each on its own subject, make no story."""
    subjects = "chuva futebol escola praia cinema trabalho viagem mercado musica jardim"
    texts = [f"o que {w} para uma {w}zinha" for w in (subjects + " livro festa bolo gato").split()]
    stream = write_jsonl(tmp_path / "posts.jsonl", synthetic_stream(burst_texts=texts))
    events = tmp_path / "events.json"
    events.write_text(json.dumps([]))
    keys = {}
    for name, extra in (("untagged", []), ("pt", ["--lang", "pt"])):
        out = tmp_path / f"{name}.jsonl"
        main(
            [
                "eval",
                "bursts",
                str(stream),
                "--events",
                str(events),
                "--alerts-out",
                str(out),
                *extra,
            ]
        )
        keys[name] = {json.loads(line)["key"] for line in out.read_text().splitlines()}
    capsys.readouterr()
    function_words = {"term:que", "term:para", "term:uma"}
    assert keys["untagged"] & function_words, keys
    assert not keys["pt"] & function_words, keys
