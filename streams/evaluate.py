"""Detector evaluation on replayed streams with known bursts. Pure: posts and alerts in.

For each event (``events.json``: replay file, onset, keywords) it measures the detection
delay -- event-time minutes from the onset (and from the first on-topic post, when that is
later) to the first alert version whose label, burst keys or leading terms hit the
event's keywords -- and the false alerts raised in the quiet period before the onset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError

from models.text import normalize_phrase
from seismo.contracts import Alert, Post
from seismo.errors import SeismoError, describe
from streams.features import label_words, words

TARGET_DELAY_MIN = 15.0
TARGET_PRE_ONSET_PER_DAY = 2.0


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
    pre_onset_alerts: int
    pre_onset_days: float
    pre_onset_per_day: float
    quiet_in_target: bool
    alerts_total: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hits(text: str, keywords: tuple[str, ...]) -> bool:
    padded = " " + " ".join(words(text)) + " "
    return any(f" {k} " in padded for k in keywords)


def alert_on_topic(alert: Alert, keywords: tuple[str, ...]) -> bool:
    """Its label, one of its burst keys or one of its five leading terms is on topic."""
    texts = [alert.label, *(label_words(k.split(":", 1)[1]) for k in alert.related_keys)]
    texts += alert.terms[:5]
    return any(_hits(t, keywords) for t in texts)


def evaluate_event(spec: EventSpec, posts: list[Post], alerts: list[Alert]) -> EventResult:
    onset = spec.onset
    first_post = next(
        (p for p in posts if p.created_at >= onset and _hits(p.text, spec.keywords)), None
    )
    ref = max(onset, first_post.created_at) if first_post else onset
    hits = sorted(
        (a for a in alerts if a.raised_at >= onset and alert_on_topic(a, spec.keywords)),
        key=lambda a: a.raised_at,
    )
    first = hits[0] if hits else None
    pre_ids = {a.id for a in alerts if a.status == "open" and a.raised_at < onset}
    start = posts[0].created_at if posts else onset
    days = max((onset - start).total_seconds() / 86400, 0.0)
    per_day = len(pre_ids) / days if days > 0 else 0.0
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
        pre_onset_alerts=len(pre_ids),
        pre_onset_days=round(days, 2),
        pre_onset_per_day=round(per_day, 2),
        quiet_in_target=per_day <= TARGET_PRE_ONSET_PER_DAY,
        alerts_total=len({a.id for a in alerts}),
    )


def summary(results: Iterable[EventResult]) -> dict[str, Any]:
    rs = list(results)
    return {
        "events": [r.as_dict() for r in rs],
        "detected_in_target": sum(r.detected_in_target for r in rs),
        "quiet_in_target": sum(r.quiet_in_target for r in rs),
        "total": len(rs),
    }
