"""``python -m bench heldout`` on synthetic streams: the ranking rule, and the same figures
whether the streams are scored in one process or in parallel."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from bench import heldout
from streams.evaluate import EventResult
from tests.helpers import synthetic_stream, write_jsonl


def _result(posts: int | None, per_day: float) -> EventResult:
    return EventResult(
        event="e",
        replay="r",
        onset="",
        first_on_topic_post=None,
        first_alert_at=None,
        first_alert_label=None,
        first_alert_id=None,
        delay_min=None,
        delay_from_first_post_min=None,
        detected_in_target=False,
        posts_to_detection=posts,
        detected_within_posts=posts is not None and posts <= 8,
        pre_onset_alerts=0,
        pre_onset_days=1.0,
        pre_onset_per_day=per_day,
        quiet_in_target=per_day <= 2,
        alerts_total=0,
    )


def test_rank_quiet_everywhere_then_within_8_then_median_then_false_alerts() -> None:
    noisy = heldout.rank([_result(1, 2.5), _result(1, 0.0)])  # one stream over 2/day
    fewer = heldout.rank([_result(3, 0.0), _result(None, 0.0)])
    more = heldout.rank([_result(8, 1.0), _result(7, 1.0)])
    faster = heldout.rank([_result(2, 1.5), _result(2, 1.5)])
    quieter = heldout.rank([_result(2, 0.5), _result(2, 0.5)])
    assert sorted([noisy, fewer, more, faster, quieter]) == [quieter, faster, more, fewer, noisy]


def test_grid_names_detector_fields() -> None:
    assert len(heldout.settings_of({"min_z": (1, 2), "min_count": (2, 3, 4)})) == 6
    with pytest.raises(SystemExit, match="no_such_field"):
        heldout.settings_of({"no_such_field": (1,)})


def _run(args: argparse.Namespace, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    heldout.bench_heldout(args)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for key in ("seconds", "jobs"):
        rows[-1].pop(key)
    return rows


def test_heldout_parallel_gives_the_serial_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heldout, "GRID", {"min_z": (3.0, 50.0), "min_count": (2,)})
    events = []
    for i, hour in enumerate((8.0, 9.0, 10.0)):
        write_jsonl(tmp_path / f"s{i}.jsonl", synthetic_stream(burst_at_hour=hour, seed=i))
        events.append(
            {
                "replay": f"s{i}.jsonl",
                "event": f"burst {i}",
                "onset": f"2026-05-01T{int(hour):02d}:00:00Z",
                "keywords": ["glm-5", "ascend"],
            }
        )
    (tmp_path / "events.json").write_text(json.dumps(events))
    args = argparse.Namespace(replay=tmp_path, events=[tmp_path / "events.json"], jobs=1)
    serial = _run(args, capsys)
    args.jobs = 2
    assert _run(args, capsys) == serial
    *held, total = serial
    assert [h["held_out"] for h in held] == ["s0.jsonl", "s1.jsonl", "s2.jsonl"]
    assert all(h["chosen"] == {"min_z": 3.0, "min_count": 2} for h in held)  # 50 detects nothing
    assert total["events"] == 3 and total["held_out"]["detected_within_8_posts"] == 3
    assert total["default_in_sample"] == total["held_out"]
