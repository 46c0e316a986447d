"""``python -m bench heldout``: the burst scores with the detector parameters chosen blind.

The default parameters were set while looking at the labelled streams that ``seismo eval
bursts`` scores, so those scores are optimistic. This runs every setting of :data:`GRID`
over every labelled stream once (``events.json`` and ``events_hn.json``: 15 streams, one
event each), then, leaving each stream out in turn, picks the setting that does best on
the others and reports how that setting does on the stream left out: an honest estimate of
how the detector does on a stream it was not tuned on.

"Best" on the others (:func:`rank`): pre-onset alerts/day <= 2 on every one of them, then
the most events detected within 8 on-topic posts, then the smallest median posts to
detection (a miss counting as infinity), then the fewest false alerts (pre-onset alerts per
day, summed over the streams); a tie goes to the earlier setting in grid order.

Streams are scored in ``--jobs`` processes (each stream is independent and the detector is
deterministic, so the figures do not depend on it). Needs ``../shared/data``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import fields, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from models.keyword import KeywordClassifier
from seismo.cliutil import progress
from seismo.config import load_settings
from seismo.watchlist import load_watchlist
from streams.detector import DetectorParams
from streams.eval_cli import detect_all, load_events, read_posts
from streams.evaluate import (
    TARGET_POSTS,
    EventResult,
    EventSpec,
    evaluate_event,
    finite_or_none,
    median_posts,
)
from streams.pipeline import OfflinePipeline, detector_params

REPLAY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "replay"
EVENTS = ("events.json", "events_hn.json")

# The grid: DetectorParams field -> the values tried; every combination is one setting,
# applied as dataclasses.replace(base, **setting) on the configured parameters.
GRID: dict[str, tuple[Any, ...]] = {
    "min_score": (3.5, 4.0, 4.5, 5.0),
    "floor_rate": (0.001, 0.002, 0.005, 0.01),
}

Setting = dict[str, Any]
# per stream: per setting (grid order): the stream's event results
Scores = dict[str, list[list[EventResult]]]


def settings_of(grid: dict[str, tuple[Any, ...]]) -> list[Setting]:
    known = {f.name for f in fields(DetectorParams)}
    unknown = sorted(set(grid) - known)
    if unknown:
        raise SystemExit(f"bench heldout: GRID names no DetectorParams field: {unknown}")
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def rank(results: list[EventResult]) -> tuple[bool, int, float, float]:
    """Lower is better: not quiet on every stream, minus the events detected within
    TARGET_POSTS posts, the median posts to detection, the pre-onset alerts per day."""
    quiet = all(r.quiet_in_target for r in results)
    within = sum(r.detected_within_posts for r in results)
    median = median_posts(r.posts_to_detection for r in results)
    return (not quiet, -within, median, round(sum(r.pre_onset_per_day for r in results), 4))


def score_stream(
    path: Path, specs: list[EventSpec], base: DetectorParams, settings: list[Setting]
) -> list[list[EventResult]]:
    """The stream's events scored under each setting (the posts read once)."""
    classifier = KeywordClassifier(load_watchlist(load_settings().watchlist))
    posts = list(read_posts(path))
    out = []
    for setting in settings:
        alerts = detect_all(posts, OfflinePipeline(classifier, replace(base, **setting)))
        out.append([evaluate_event(spec, posts, alerts) for spec in specs])
    return out


def score_all(
    replay: Path,
    groups: dict[str, list[EventSpec]],
    base: DetectorParams,
    settings: list[Setting],
    jobs: int,
) -> Scores:
    """Every stream under every setting, ``jobs`` streams at a time; progress on stderr."""
    t0 = time.perf_counter()
    # the biggest streams first, so the last one running is a small one
    order = sorted(groups, key=lambda s: -(replay / s).stat().st_size)
    scores: Scores = {}

    def done(stream: str, results: list[list[EventResult]]) -> None:
        scores[stream] = results
        progress(
            f"heldout: {len(scores)}/{len(order)} streams ({stream}, {len(settings)} settings), "
            f"{time.perf_counter() - t0:.0f} s"
        )

    if jobs <= 1:
        for s in order:
            done(s, score_stream(replay / s, groups[s], base, settings))
        return scores
    with ProcessPoolExecutor(jobs, mp_context=get_context("fork")) as pool:
        futures = {
            pool.submit(score_stream, replay / s, groups[s], base, settings): s for s in order
        }
        for f in as_completed(futures):
            done(futures[f], f.result())
    return scores


def _summary(results: Iterable[EventResult]) -> dict[str, Any]:
    rs = list(results)
    return {
        f"detected_within_{TARGET_POSTS}_posts": sum(r.detected_within_posts for r in rs),
        "median_posts_to_detection": finite_or_none(median_posts(r.posts_to_detection for r in rs)),
        "quiet_in_target": sum(r.quiet_in_target for r in rs),
        "max_pre_onset_per_day": max((r.pre_onset_per_day for r in rs), default=0.0),
    }


def bench_heldout(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    base = detector_params(load_settings())
    settings = settings_of(GRID)
    specs = load_events(args.events or [args.replay / e for e in EVENTS])
    groups: dict[str, list[EventSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.replay, []).append(spec)
    scores = score_all(args.replay, groups, base, settings, args.jobs)
    streams = list(groups)  # events-file order
    held: list[EventResult] = []
    for stream in streams:
        rest = [s for s in streams if s != stream]
        ranks = [rank([r for s in rest for r in scores[s][i]]) for i in range(len(settings))]
        i = min(range(len(settings)), key=ranks.__getitem__)
        mine = scores[stream][i]
        held += mine
        row = {
            "held_out": stream,
            "chosen": settings[i],
            "chosen_quiet_on_rest": not ranks[i][0],
            "events": [
                {
                    "event": r.event,
                    "posts_to_detection": r.posts_to_detection,
                    "delay_min": r.delay_min,
                    "delay_from_first_post_min": r.delay_from_first_post_min,
                    f"detected_within_{TARGET_POSTS}_posts": r.detected_within_posts,
                }
                for r in mine
            ],
            "pre_onset_per_day": max(r.pre_onset_per_day for r in mine),
        }
        print(json.dumps(row), flush=True)
    default = {k: getattr(base, k) for k in GRID}
    in_default = None
    if default in settings:
        in_default = [r for s in streams for r in scores[s][settings.index(default)]]
    print(
        json.dumps(
            {
                "bench": "heldout",
                "grid": GRID,
                "settings": len(settings),
                "streams": len(streams),
                "events": len(held),
                "held_out": _summary(held),
                "default": default,
                "default_in_sample": None if in_default is None else _summary(in_default),
                "jobs": args.jobs,
                "seconds": round(time.perf_counter() - t0),
            }
        )
    )


def register(sub: Any) -> None:
    h = sub.add_parser("heldout", help="detector parameters chosen leaving each stream out")
    h.add_argument("--replay", type=Path, default=REPLAY, help="folder of the replay files")
    h.add_argument(
        "--events",
        type=Path,
        nargs="+",
        action="extend",
        help=f"events files (default: {' and '.join(EVENTS)} in --replay)",
    )
    h.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="streams scored at once, one process each (default: 2; 1 = in this process)",
    )
    h.set_defaults(func=bench_heldout)
