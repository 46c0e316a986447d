"""``seismo eval bursts``: replay streams through the detector, score detection delays.

No broker: the posts go through the same classifier and :class:`~streams.detector.
BurstEngine` the worker runs, in one process.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.keyword import KeywordClassifier
from seismo.cliutil import (
    EVAL_HELP,
    add_lang_argument,
    command_group,
    not_an_input,
    progress,
    settings_from,
)
from seismo.contracts import Alert, Post
from seismo.errors import SeismoError, describe
from seismo.watchlist import load_watchlist
from streams.evaluate import (
    TARGET_POSTS,
    EventSpec,
    evaluate_event,
    pre_onset_report,
    story_report,
    summary,
)
from streams.pipeline import OfflinePipeline, detector_params


def register(sub: Any) -> None:
    b = command_group(sub, "eval", EVAL_HELP).add_parser(
        "bursts",
        help="detection delay, posts to detection and pre-onset alerts on replayed streams",
        description=(
            "Replay each JSONL stream through the classifier and burst detector (same code "
            "as the worker, no broker), then for every event in --events whose 'replay' "
            "names the file print: the event-time delay from onset (and from the first "
            "on-topic post) to the first alert hitting its keywords, the posts to detection "
            "(on-topic posts from the onset up to that alert; null when missed) and the "
            "alerts opened before the onset. One JSON line per event, then one per stream "
            "listing its pre-onset alerts; the last line is a JSON summary (median posts to "
            f"detection, a miss counting as infinity; events detected within {TARGET_POSTS} "
            "posts)."
        ),
    )
    b.add_argument("replays", nargs="+", type=Path, metavar="REPLAY.jsonl")
    b.add_argument(
        "--events",
        type=Path,
        nargs="+",
        action="extend",
        required=True,
        metavar="EVENTS.json",
        help="events files (onset, keywords); several, or the option given again, are merged",
    )
    add_lang_argument(b)
    b.add_argument("--alerts-out", type=Path, help="also write every alert version (JSONL)")
    b.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write a PNG plot per event and DIR/index.html with the summary table",
    )
    # SUPPRESS: unset here must not overwrite the global ``seismo --config FILE eval bursts``
    b.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="settings YAML (detector parameters); same as the global --config",
    )
    b.set_defaults(func=cmd_eval_bursts)


def read_posts(path: Path, lang: str | None = None) -> Iterator[Post]:
    """The posts of a JSONL replay file (``lang``: every post's language); a line that is no
    valid post is a SeismoError naming ``file:line`` (an evaluation must not score a stream
    with rows silently left out)."""
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    post = Post.model_validate_json(line)
                except ValidationError as exc:
                    raise SeismoError(f"{path}:{n}: not a valid post: {describe(exc)}") from exc
                yield post.model_copy(update={"lang": lang}) if lang else post
    except UnicodeDecodeError as exc:
        raise SeismoError(f"{path}: not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise SeismoError(f"cannot read {path}: {exc.strerror or exc}") from exc


def run_stream(
    path: Path, pipe: OfflinePipeline, lang: str | None = None
) -> tuple[list[Post], list[Alert]]:
    posts: list[Post] = []
    alerts: list[Alert] = []
    for n, post in enumerate(read_posts(path, lang), 1):
        posts.append(post)
        if n % 1000 == 0:  # the same alerts as one post at a time, faster
            alerts += pipe.feed_many(posts[n - 1000 :])
        if n % 5000 == 0:
            progress(f"{path.name}: {n} posts, {len(alerts)} alert versions")
    alerts += pipe.feed_many(posts[len(posts) - len(posts) % 1000 :])
    return posts, alerts


def why_none(pipe: OfflinePipeline, posts: list[Post]) -> str:
    """Why a stream raised no alert (as a replay's summary says it)."""
    from seismo.collect import why_no_alerts, worker_report  # (Kafka clients: only here)

    engine = pipe.engine
    counts = {
        "processed": len(posts),
        "dead_lettered": 0,  # (offline a rejected post stops the evaluation)
        "duplicates": engine.repeats,
        "too_late": engine.too_late,
    }
    report = worker_report(
        {**dict.fromkeys(counts, 0), "watched_seconds": 0},
        {**counts, "watched_seconds": int(engine.watched_seconds)},
        engine.p.max_lateness_seconds,
    )
    return why_no_alerts(report, engine.p)


def detect_all(posts: list[Post], pipe: OfflinePipeline) -> list[Alert]:
    """The alerts of ``posts`` read already, fed in the same batches as :func:`run_stream`."""
    return [a for i in range(0, len(posts), 1000) for a in pipe.feed_many(posts[i : i + 1000])]


def load_events(paths: list[Path]) -> list[EventSpec]:
    """The events of every file in ``paths``, in order."""
    return [spec for path in paths for spec in EventSpec.load(path)]


def cmd_eval_bursts(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    specs = load_events(args.events)
    report = None
    if args.report is not None:
        from streams.eval_report import Report  # matplotlib: loaded only when asked for

        report = Report(args.report)
    classifier = KeywordClassifier(load_watchlist(settings.watchlist))
    results = []
    not_an_input(args.alerts_out, [*args.replays, *args.events], "--alerts-out")
    try:
        out = args.alerts_out.open("w", encoding="utf-8") if args.alerts_out else None
    except OSError as exc:
        raise SeismoError(f"cannot write {args.alerts_out}: {exc.strerror or exc}") from exc
    try:
        for path in args.replays:
            mine = [s for s in specs if s.replay == path.name]
            pipe = OfflinePipeline(classifier, detector_params(settings))
            posts, alerts = run_stream(path, pipe, args.lang)
            none = {} if alerts else {"why_no_alerts": why_none(pipe, posts)}
            if out is not None:
                for a in alerts:
                    out.write(a.model_dump_json(exclude_none=True) + "\n")
            if not mine:  # no event to score: its stories only
                names = ", ".join(str(e) for e in args.events)
                progress(f"{path.name}: no event in {names} names this file; stories only")
                line = {"stream": path.name, **story_report(posts, alerts), **none}
                print(json.dumps(line), flush=True)
                continue
            for spec in mine:
                r = evaluate_event(spec, posts, alerts)
                results.append(r)
                print(json.dumps(r.as_dict()), flush=True)
                if report is not None:
                    report.plot_event(spec, r, posts, alerts)
            onset = min(s.onset for s in mine)
            line = pre_onset_report(path.name, onset, posts, alerts)
            line.update(story_report(posts, alerts), **none)
            print(json.dumps(line), flush=True)
    finally:
        if out is not None:
            out.close()
    total = summary(results)
    if report is not None:
        progress(f"report: {report.write_index(total)}")
    print(json.dumps(total))
    return 0 if results else 1
