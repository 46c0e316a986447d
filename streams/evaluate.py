"""Detector evaluation on replayed streams with known bursts. Pure: posts and alerts in.

For each event (``events.json``: replay file, onset, keywords) it measures the detection
delay -- event-time minutes from the onset (and from the first on-topic post, when that is
later) to the first alert version whose label, burst keys or leading terms hit the
event's keywords --, the posts to detection -- how many on-topic posts (posts whose text
hits the keywords) had arrived from the onset up to and including the post that raised
that alert; a missed event counts as infinitely many -- and the false alerts raised in
the quiet period before the onset.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError

from models.text import STOP_WORDS, normalize_phrase
from seismo.contracts import Alert, Post
from seismo.errors import SeismoError, describe
from streams.features import label_words, words

TARGET_DELAY_MIN = 15.0
TARGET_PRE_ONSET_PER_DAY = 2.0


STORY_HOURS = 24  # a labelled event's stories and delivered versions are counted this long
TARGET_STORIES = 2  # on-topic stories in the first day after the onset, at most
TARGET_DELIVERED = 24  # versions of them delivered to the sinks in that day, at most
TARGET_STORIES_PER_DAY = 10.0


def quiet(pre_onset_alerts: int, days: float) -> bool:
    """At most 2 alerts a day before the onset; a quiet period shorter than a day may
    hold 2 (one alert in 0.8 days is not 1.25 a day's worth of noise)."""
    if days < 1:
        return pre_onset_alerts <= TARGET_PRE_ONSET_PER_DAY
    return pre_onset_alerts / days <= TARGET_PRE_ONSET_PER_DAY


TARGET_POSTS = 8  # on-topic posts by the first on-topic alert


@dataclass(frozen=True)
class EventSpec:
    replay: str
    event: str
    onset: datetime
    keywords: tuple[str, ...]

    @staticmethod
    def load(path: Path) -> list[EventSpec]:
        """The events of an ``events.json`` (a JSON list of objects). Raises SeismoError
        naming the file (and line, or event number) when it is missing or malformed."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SeismoError(f"cannot read events file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise SeismoError(f"events file {path} is not UTF-8 text: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise SeismoError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
        try:
            rows = _EVENTS.validate_python(data)
        except ValidationError as exc:
            raise SeismoError(f"{path}: not a list of events: {describe(exc)}") from exc
        return [
            EventSpec(
                replay=e.replay,
                event=e.event,
                onset=e.onset,
                keywords=tuple(normalize_phrase(k) for k in e.keywords),
            )
            for e in rows
        ]


class _EventRow(BaseModel):
    """One entry of ``events.json`` (other keys, e.g. ``onset_basis``, are notes)."""

    replay: str
    event: str
    onset: AwareDatetime
    keywords: list[str] = Field(min_length=1)


_EVENTS = TypeAdapter(list[_EventRow])


@dataclass
class EventResult:
    event: str
    replay: str
    onset: str
    first_on_topic_post: str | None
    first_alert_at: str | None
    first_alert_label: str | None
    first_alert_id: str | None
    delay_min: float | None  # from onset
    delay_from_first_post_min: float | None  # from max(onset, first on-topic post)
    detected_in_target: bool
    posts_to_detection: int | None  # on-topic posts in [onset, first alert]; None: missed
    detected_within_posts: bool  # posts_to_detection <= TARGET_POSTS
    pre_onset_alerts: int
    pre_onset_days: float
    pre_onset_per_day: float
    quiet_in_target: bool
    alerts_total: int
    stories_24h: int = 0  # on-topic stories with a version in the day after the onset
    delivered_24h: int = 0  # their versions delivered to the sinks in that day
    # the same in the day from the first on-topic alert: how many stories one event became
    # once seismo spoke, also when it spoke more than a day after the labelled onset
    stories_24h_detected: int = 0
    delivered_24h_detected: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hits(text: str, keywords: tuple[str, ...]) -> bool:
    padded = " " + " ".join(words(text)) + " "
    return any(f" {k} " in padded for k in keywords)


def on_topic(post: Post, spec: EventSpec) -> bool:
    """The post's text hits the event's keywords."""
    return _hits(post.text, spec.keywords)


def alert_on_topic(alert: Alert, keywords: tuple[str, ...]) -> bool:
    """Its label, one of its burst keys or one of its five leading terms is on topic."""
    texts = [alert.label, *(label_words(k.split(":", 1)[1]) for k in alert.related_keys)]
    texts += alert.terms[:5]
    return any(_hits(t, keywords) for t in texts)


def first_on_topic_alert(spec: EventSpec, alerts: Iterable[Alert]) -> Alert | None:
    """The earliest alert version raised at or after the onset that hits the keywords."""
    hits = [a for a in alerts if a.raised_at >= spec.onset and alert_on_topic(a, spec.keywords)]
    return min(hits, key=lambda a: a.raised_at) if hits else None


def posts_to_detection(spec: EventSpec, posts: Iterable[Post], first: Alert | None) -> int | None:
    """The on-topic posts (text hitting the keywords, as :func:`alert_on_topic` judges
    alerts) with event time from the onset up to and including ``first.raised_at`` (the
    post that raised it). None when there is no such alert: a miss, infinitely many."""
    if first is None:
        return None
    return sum(
        1 for p in posts if spec.onset <= p.created_at <= first.raised_at and on_topic(p, spec)
    )


def median_posts(values: Iterable[int | None]) -> float:
    """The median posts to detection, a miss (None) counting as infinity."""
    xs = [math.inf if v is None else float(v) for v in values]
    return statistics.median(xs) if xs else math.inf


def finite_or_none(x: float) -> float | None:
    """``x`` for JSON: infinity (a miss) as null."""
    return None if math.isinf(x) else x


def evaluate_event(spec: EventSpec, posts: list[Post], alerts: list[Alert]) -> EventResult:
    onset = spec.onset
    first_post = next((p for p in posts if p.created_at >= onset and on_topic(p, spec)), None)
    ref = max(onset, first_post.created_at) if first_post else onset
    first = first_on_topic_alert(spec, alerts)
    n_posts = posts_to_detection(spec, posts, first)
    pre = pre_onset_alerts(alerts, onset)
    days, per_day = quiet_period(posts, onset, len(pre))
    stories, sent = story_counts(spec, alerts, onset)
    stories_found, sent_found = story_counts(spec, alerts, first.raised_at if first else None)
    delay = (first.raised_at - onset).total_seconds() / 60 if first else None
    delay_ref = (first.raised_at - ref).total_seconds() / 60 if first else None
    return EventResult(
        event=spec.event,
        replay=spec.replay,
        onset=onset.isoformat(),
        first_on_topic_post=first_post.created_at.isoformat() if first_post else None,
        first_alert_at=first.raised_at.isoformat() if first else None,
        first_alert_label=first.label if first else None,
        first_alert_id=first.id if first else None,
        delay_min=None if delay is None else round(delay, 1),
        delay_from_first_post_min=None if delay_ref is None else round(max(delay_ref, 0.0), 1),
        detected_in_target=delay_ref is not None and delay_ref <= TARGET_DELAY_MIN,
        posts_to_detection=n_posts,
        detected_within_posts=n_posts is not None and n_posts <= TARGET_POSTS,
        pre_onset_alerts=len(pre),
        pre_onset_days=round(days, 2),
        pre_onset_per_day=round(per_day, 2),
        quiet_in_target=quiet(len(pre), days),
        alerts_total=len({a.id for a in alerts}),
        stories_24h=stories,
        delivered_24h=sent,
        stories_24h_detected=stories_found,
        delivered_24h_detected=sent_found,
    )


def delivered(alert: Alert) -> bool:
    """The sinks get this version (an alert from before the throttle says nothing: yes)."""
    return alert.deliver is not False


def story_counts(
    spec: EventSpec, alerts: Iterable[Alert], start: datetime | None
) -> tuple[int, int]:
    """The on-topic stories (alert ids with an on-topic version raised in the first
    ``STORY_HOURS`` from ``start``) and their versions delivered in that time; none when
    ``start`` is None (a miss)."""
    if start is None:
        return 0, 0
    end = start + timedelta(hours=STORY_HOURS)
    window = [a for a in alerts if start <= a.raised_at < end]
    ids = {a.id for a in window if alert_on_topic(a, spec.keywords)}
    return len(ids), sum(1 for a in window if a.id in ids and delivered(a))


def stream_days(posts: list[Post]) -> float:
    """The days from a stream's first post to its last."""
    if len(posts) < 2:
        return 0.0
    return (posts[-1].created_at - posts[0].created_at).total_seconds() / 86400


def story_report(posts: list[Post], alerts: list[Alert]) -> dict[str, Any]:
    """Stories opened over a whole stream, per day, and the headlines no reader can use:
    a single stop word, contraction or filler word."""
    opened = opened_alerts(alerts)
    days = stream_days(posts)
    heads = [a.headline or a.label for a in opened]
    per_day = Counter(a.raised_at.date() for a in opened)
    return {
        "stories_opened": len(opened),
        "stream_days": round(days, 2),
        "stories_per_day": round(len(opened) / days, 2) if days > 0 else None,
        "max_stories_in_a_day": max(per_day.values(), default=0),  # (a UTC calendar day)
        "delivered_versions": sum(1 for a in alerts if delivered(a)),
        "unreadable_headlines": sorted({h for h in heads if unreadable(h)}),
    }


def unreadable(headline: str) -> bool:
    """One word that names nothing: a stop word, a contraction ("don't") or a filler."""
    ws = headline.split()
    if len(ws) != 1:
        return False
    w = ws[0].lower().strip("#'\".,!?")
    return "'" in w or "\u2019" in w or w in STOP_WORDS or len(w) < 3


def opened_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    """Each alert id's opening version, in the order raised."""
    opened: dict[str, Alert] = {}
    for a in alerts:
        if a.status == "open":
            opened.setdefault(a.id, a)
    return sorted(opened.values(), key=lambda a: a.raised_at)


def pre_onset_alerts(alerts: Iterable[Alert], onset: datetime) -> list[Alert]:
    """The alerts opened before ``onset``, in the order raised."""
    return [a for a in opened_alerts(alerts) if a.raised_at < onset]


def quiet_period(posts: list[Post], onset: datetime, n_alerts: int) -> tuple[float, float]:
    """The days from the stream's first post to ``onset`` and ``n_alerts`` per such day."""
    start = posts[0].created_at if posts else onset
    days = max((onset - start).total_seconds() / 86400, 0.0)
    return days, (n_alerts / days if days > 0 else 0.0)


def pre_onset_report(
    stream: str, onset: datetime, posts: list[Post], alerts: list[Alert]
) -> dict[str, Any]:
    """One stream's alerts opened before ``onset`` (its earliest labelled onset), each with
    what a reader needs to tell a real unlabelled burst from noise, and their rate."""
    pre = pre_onset_alerts(alerts, onset)
    days, per_day = quiet_period(posts, onset, len(pre))
    return {
        "stream": stream,
        "onset": onset.isoformat(),
        "pre_onset_days": round(days, 2),
        "pre_onset_per_day": round(per_day, 2),
        "pre_onset": [
            {
                "id": a.id,
                "key": a.key,
                "label": a.label,
                "terms": a.terms[:5],
                "raised_at": a.raised_at.isoformat(),
                "window_seconds": a.window_seconds,
                "observed": a.observed,
                "expected": round(a.expected, 3),
                "score": round(a.score, 2),
            }
            for a in pre
        ],
    }


def summary(results: Iterable[EventResult]) -> dict[str, Any]:
    rs = list(results)
    median = median_posts(r.posts_to_detection for r in rs)
    return {
        "events": [r.as_dict() for r in rs],
        f"at_most_{TARGET_STORIES}_stories": sum(1 <= r.stories_24h <= TARGET_STORIES for r in rs),
        f"at_most_{TARGET_STORIES}_stories_once_detected": sum(
            1 <= r.stories_24h_detected <= TARGET_STORIES for r in rs
        ),
        f"at_most_{TARGET_DELIVERED}_delivered": sum(
            r.delivered_24h <= TARGET_DELIVERED for r in rs
        ),
        "detected_in_target": sum(r.detected_in_target for r in rs),
        "quiet_in_target": sum(r.quiet_in_target for r in rs),
        f"detected_within_{TARGET_POSTS}_posts": sum(r.detected_within_posts for r in rs),
        "median_posts_to_detection": finite_or_none(median),  # null: more than half missed
        "total": len(rs),
    }
