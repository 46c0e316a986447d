"""``python -m bench heldout``: the burst scores with the detector thresholds chosen blind.

The default thresholds (``min_z``, ``min_score``, ``min_count``) were set while looking at
the five event streams that ``seismo eval bursts`` scores, so those scores are optimistic.
This runs every setting of a small grid over every stream once, then, leaving each stream
out in turn, picks the setting that does best on the other four and reports how that
setting does on the stream left out: an honest estimate of how the detector does on a
stream it was not tuned on.

"Best" on the four: most events detected in time with the quiet period in target, then the
fewest pre-onset alerts per day, then the shortest total delay. Needs ``../shared/data``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from models.keyword import KeywordClassifier
from seismo.cliutil import progress
from seismo.config import load_settings
from seismo.watchlist import load_watchlist
from streams.eval_cli import run_stream
from streams.evaluate import EventResult, EventSpec, evaluate_event
from streams.pipeline import OfflinePipeline, detector_params

REPLAY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "replay"
GRID = {"min_z": (2.5, 3.0, 3.5), "min_score": (3.5, 4.5, 5.5), "min_count": (2, 3)}

Setting = tuple[tuple[str, float], ...]


def _rank(results: list[EventResult]) -> tuple[int, float, float]:
    """Lower is better: events missed, pre-onset alerts per day, total delay."""
    ok = sum(r.detected_in_target and r.quiet_in_target for r in results)
    per_day = sum(r.pre_onset_per_day for r in results)
    delay = sum(
        r.delay_from_first_post_min if r.delay_from_first_post_min is not None else 1e6
        for r in results
    )
    return (-ok, round(per_day, 2), delay)


def bench_heldout(args: argparse.Namespace) -> None:
    settings = load_settings()
    base = detector_params(settings)
    classifier = KeywordClassifier(load_watchlist(settings.watchlist))
    specs = EventSpec.load(args.replay / "events.json")
    names = list(GRID)
    settings_grid: list[Setting] = [
        tuple(zip(names, values, strict=True)) for values in itertools.product(*GRID.values())
    ]
    scores: dict[Setting, dict[str, EventResult]] = {}
    t0 = time.perf_counter()
    for i, setting in enumerate(settings_grid, 1):
        params = replace(base, **dict(setting))  # type: ignore[arg-type]
        scores[setting] = {}
        for spec in specs:
            posts, alerts = run_stream(
                args.replay / spec.replay, OfflinePipeline(classifier, params)
            )
            scores[setting][spec.replay] = evaluate_event(spec, posts, alerts)
        progress(
            f"setting {i}/{len(settings_grid)} {dict(setting)}: {time.perf_counter() - t0:.0f} s"
        )
    default: Setting = tuple((n, getattr(base, n)) for n in names)
    held: list[dict[str, Any]] = []
    for spec in specs:
        rest = [s.replay for s in specs if s is not spec]
        chosen = min(settings_grid, key=lambda s: _rank([scores[s][r] for r in rest]))
        r = scores[chosen][spec.replay]
        row = {
            "held_out": spec.replay,
            "chosen": dict(chosen),
            "delay_from_first_post_min": r.delay_from_first_post_min,
            "detected_in_target": r.detected_in_target,
            "pre_onset_per_day": r.pre_onset_per_day,
            "quiet_in_target": r.quiet_in_target,
        }
        held.append(row)
        print(json.dumps(row), flush=True)
    in_default = scores.get(default)
    print(
        json.dumps(
            {
                "bench": "heldout",
                "grid": GRID,
                "held_out_detected_in_target": sum(h["detected_in_target"] for h in held),
                "held_out_quiet_in_target": sum(h["quiet_in_target"] for h in held),
                "default": dict(default),
                "default_detected_in_target": None
                if in_default is None
                else sum(r.detected_in_target for r in in_default.values()),
                "total": len(held),
                "seconds": round(time.perf_counter() - t0),
            }
        )
    )


def register(sub: Any) -> None:
    h = sub.add_parser("heldout", help="thresholds chosen leaving each stream out")
    h.add_argument("--replay", type=Path, default=REPLAY, help="folder with events.json")
    h.set_defaults(func=bench_heldout)
