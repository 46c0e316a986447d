"""Replay connector: posts from a JSONL or CSV file into ``posts.raw.v1``.

Each post's event time becomes its Kafka record timestamp. ``speed="max"`` sends as fast as
the broker takes them; a number N replays N times faster than the posts were made. Rows
that can't become a valid Post go to the dead-letter topic with the reason, and are counted.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from seismo.config import Settings
from seismo.contracts import DLQ, POSTS_RAW, Post, dead_letter, decode
from seismo.errors import ContractError, SeismoError
from seismo.kafka import bootstrap_of, ensure_topics

log = logging.getLogger(__name__)

POST_FIELDS = (
    "id",
    "source",
    "text",
    "created_at",
    "author",
    "url",
    "lang",
    "reply_to",
    "quote_of",
)


@dataclass
class ReplayStats:
    read: int = 0
    sent: int = 0
    dead: int = 0
    first_event: datetime | None = None
    last_event: datetime | None = None
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "sent": self.sent,
            "dead_lettered": self.dead,
            "first_event": self.first_event.isoformat() if self.first_event else None,
            "last_event": self.last_event.isoformat() if self.last_event else None,
            "seconds": round(self.seconds, 2),
            "posts_per_second": round(self.sent / self.seconds, 1) if self.seconds else None,
        }


def read_rows(path: Path, fmt: str | None = None) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield (line number, row) — a dict, or the raw text of a line that isn't JSON."""
    kind = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    with path.open(encoding="utf-8", newline="") as f:
        if kind == "csv":
            for i, row in enumerate(csv.DictReader(f), start=2):
                yield i, dict(row)
            return
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                yield i, line.rstrip("\n")
                continue
            yield i, obj if isinstance(obj, dict) else line.rstrip("\n")


def to_post(
    row: dict[str, Any],
    *,
    field_map: dict[str, str] | None = None,
    source: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Post:
    """Map a row to a Post (``field_map``: post field -> row column). Raises ContractError."""
    fm = field_map or {}
    data: dict[str, Any] = {}
    for name in POST_FIELDS:
        col = fm.get(name, name)
        if col in row and row[col] not in (None, ""):
            data[name] = row[col]
    if source:
        data["source"] = source
    if "id" in data:
        data["id"] = str(data["id"])
    extra = {k: v for k, v in row.items() if k not in POST_FIELDS and k not in fm.values()}
    if extra:
        data["metadata"] = extra
    data["ingested_at"] = now()
    return decode(Post, data)


def parse_speed(value: str) -> float | None:
    """'max' -> None (no pacing); a positive number -> that many times real time."""
    if value == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        raise SeismoError(f"--speed must be 'max' or a positive number, not {value!r}") from None
    if speed <= 0:
        raise SeismoError("--speed must be positive")
    return speed


async def replay(
    settings: Settings,
    path: Path,
    *,
    speed: float | None = None,
    source: str | None = None,
    field_map: dict[str, str] | None = None,
    fmt: str | None = None,
    limit: int | None = None,
    progress: Callable[[ReplayStats], None] | None = None,
    progress_every: float = 2.0,
) -> ReplayStats:
    if not path.is_file():
        raise SeismoError(f"replay file {path} does not exist")
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_of(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    stats = ReplayStats()
    raw_topic, dlq_topic = settings.topic(POSTS_RAW), settings.topic(DLQ)
    t0 = time.monotonic()
    last_report = t0
    wall_start: float | None = None
    try:
        for lineno, row in read_rows(path, fmt):
            if limit is not None and stats.read >= limit:
                break
            stats.read += 1
            try:
                if isinstance(row, str):
                    raise ContractError(f"line {lineno}: not a JSON object")
                post = to_post(row, field_map=field_map, source=source)
            except ContractError as exc:
                reason = f"line {lineno}: {exc.reason}" if isinstance(row, dict) else exc.reason
                raw = row if isinstance(row, str) else json.dumps(row, default=str)
                dl = dead_letter("replay", reason, str(path), raw, offset=lineno)
                await producer.send(dlq_topic, dl.to_bytes())
                stats.dead += 1
                log.warning("%s", reason)
                continue
            ev = post.created_at
            if speed is not None:
                if wall_start is None or stats.first_event is None:
                    wall_start = time.monotonic()
                else:
                    due = wall_start + (ev - stats.first_event).total_seconds() / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
            stats.first_event = stats.first_event or ev
            stats.last_event = ev
            await producer.send(
                raw_topic,
                post.to_bytes(),
                key=post.key.encode(),
                timestamp_ms=int(ev.timestamp() * 1000),
            )
            stats.sent += 1
            now = time.monotonic()
            if progress is not None and now - last_report >= progress_every:
                stats.seconds = now - t0
                progress(stats)
                last_report = now
        await producer.flush()
    finally:
        await producer.stop()
    stats.seconds = time.monotonic() - t0
    return stats
