"""``seismo eval bursts`` on a small synthetic stream with a known onset."""

from __future__ import annotations

import json
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
    hit, miss = json.loads(lines[0]), json.loads(lines[1])
    assert hit["detected_in_target"] and 0 <= hit["delay_min"] <= 15
    assert hit["pre_onset_alerts"] == 0 and hit["quiet_in_target"]
    assert miss["first_alert_at"] is None and not miss["detected_in_target"]
    summary = json.loads(lines[-1])
    assert summary["detected_in_target"] == 1 and summary["total"] == 2
