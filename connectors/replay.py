"""Replay connector: posts from a JSONL or CSV file into ``posts.raw.v1``.

Each post's event time becomes its Kafka record timestamp. ``speed="max"`` sends as fast as
the broker takes them; a number N replays N times faster than the posts were made. Rows
that can't become a valid Post go to the dead-letter topic with the reason (starting with
the line number), and are counted by kind.

The file is UTF-8 (a byte-order mark is skipped). It is read with bad bytes kept aside, so a
JSONL line or a CSV row holding bytes that are not UTF-8 is dead-lettered on its own (the
reason names the byte and, for CSV, the column) and the rest of the file is replayed.

A row's columns map to the post fields (``field_map`` renames them); a ``metadata`` object
(in CSV: a cell holding a JSON object) becomes the post's metadata, and every other column is
added beside its keys. See :func:`to_post` for what wins when names clash.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from seismo.config import Settings
from seismo.contracts import DLQ, POSTS_RAW, DeadLetter, Post, dead_letter, decode, json_problem
from seismo.errors import ContractError, SeismoError
from seismo.kafka import ensure_topics, make_producer

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
# the post fields ``--map FIELD=COLUMN`` can read from a column (ingested_at is stamped here)
MAPPABLE_FIELDS = (*POST_FIELDS, "metadata")
REQUIRED_FIELDS = ("id", "source", "text", "created_at")
# where the file's own ``ingested_at`` and the extra columns hidden by a ``metadata`` key go
ORIGINAL_INGESTED_AT = "original_ingested_at"
SHADOWED = "replay_shadowed"


class RowError(ContractError):
    """A row that can't become a Post; ``kind`` is a short, bounded label for the summary."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class Unreadable:
    """A JSONL line or CSV row that can't be read: not UTF-8 (``raw`` shows the bad bytes as
    U+FFFD), or not parseable as CSV."""

    problem: str
    raw: str
    kind: str = "not UTF-8"


@dataclass
class ReplayStats:
    read: int = 0
    sent: int = 0
    dead: int = 0
    blank: int = 0  # whitespace-only lines, skipped
    first_event: datetime | None = None
    last_event: datetime | None = None
    seconds: float = 0.0
    # dead letters by RowError.kind (a few dozen kinds at most)
    reasons: dict[str, int] = field(default_factory=dict)

    def count_blank(self, lineno: int) -> None:
        self.blank += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "sent": self.sent,
            "dead_lettered": self.dead,
            "dead_lettered_by_kind": dict(sorted(self.reasons.items(), key=lambda kv: -kv[1])),
            "skipped_blank_lines": self.blank,
            "first_event": self.first_event.isoformat() if self.first_event else None,
            "last_event": self.last_event.isoformat() if self.last_event else None,
            "seconds": round(self.seconds, 2),
            "posts_per_second": round(self.sent / self.seconds, 1) if self.seconds else None,
        }


def _utf8_problem(text: str) -> str | None:
    """None if ``text`` (decoded with errors="surrogateescape") was valid UTF-8, else why not."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    raw = text.encode("utf-8", "surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = ""
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = "; the file looks like UTF-16, save it as UTF-8"
        return (
            f"not valid UTF-8: byte 0x{raw[exc.start]:02X} at byte {exc.start + 1} "
            f"({exc.reason}){hint}"
        )
    return "not valid UTF-8"


def _readable(text: str) -> str:
    """``text`` with the bytes that were not UTF-8 shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def read_rows(
    path: Path,
    fmt: str | None = None,
    *,
    on_header: Callable[[list[str]], object] | None = None,
    on_blank: Callable[[int], object] | None = None,
) -> Iterator[tuple[int, dict[str, Any] | str | Unreadable]]:
    """Yield (line number, row): a dict, the raw text of a line that isn't a JSON object, or
    Unreadable for a line (CSV: a row) that isn't UTF-8 or is JSON past the parser's limits
    (nested too deep, an integer too long). A UTF-8 byte-order mark is skipped. For CSV,
    ``on_header`` gets the column names first; the line number is the row's last. A JSONL
    line holding only whitespace is skipped and its number given to ``on_blank``."""
    kind = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    # bytes that are not UTF-8 become lone surrogates, found per line/row by _utf8_problem
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        if kind == "csv":
            yield from _csv_rows(f, path, on_header)
            return
        for i, line in enumerate(f, start=1):
            if not line.strip():
                if on_blank is not None:
                    on_blank(i)
                continue
            problem = _utf8_problem(line)
            if problem is not None:
                yield i, Unreadable(problem, _readable(line.rstrip("\r\n")))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                yield i, line.rstrip("\n")
                continue
            except (RecursionError, ValueError) as exc:  # past the parser's limits
                kind, reason = json_problem(exc)
                yield i, Unreadable(reason, line.rstrip("\r\n"), kind)
                continue
            yield i, obj if isinstance(obj, dict) else line.rstrip("\n")


def _csv_rows(
    f: Iterable[str], path: Path, on_header: Callable[[list[str]], object] | None
) -> Iterator[tuple[int, dict[str, Any] | Unreadable]]:
    reader = csv.DictReader(f)
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise SeismoError(f"{path}: can't read the CSV header: {exc}") from None
    bad_names = [problem for name in header if (problem := _utf8_problem(name))]
    if bad_names:
        log.warning("%s: the CSV header is %s (shown with U+FFFD)", path, bad_names[0])
        header = [_readable(name) for name in header]
        reader.fieldnames = header
    if on_header is not None:
        on_header(header)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over csv.field_size_limit()
            yield reader.line_num + 1, Unreadable(f"not readable as CSV: {exc}", "", "bad CSV")
            continue
        bad = next(
            (
                f"column {col!r}: {problem}"
                for col, value in row.items()
                if isinstance(value, str) and (problem := _utf8_problem(value))
            ),
            None,
        )
        if bad is not None:
            clean = {col: _readable(v) if isinstance(v, str) else v for col, v in row.items()}
            yield reader.line_num, Unreadable(bad, json.dumps(clean))
            continue
        yield reader.line_num, dict(row)


def missing_columns(
    header: list[str], field_map: dict[str, str] | None = None, source: str | None = None
) -> list[str]:
    """The columns a CSV header lacks for the required post fields (after ``field_map``)."""
    fm = field_map or {}
    needed = [f for f in REQUIRED_FIELDS if not (f == "source" and source)]
    return [fm.get(f, f) for f in needed if fm.get(f, f) not in header]


# the Post contract's own limits (seismo/contracts.py), each its own kind in the summary
_LIMIT_KINDS = {
    "event_time_out_of_range": "created_at out of range",
    "metadata_too_large": "metadata too large",
    "metadata_too_deep": "metadata nested too deep",
}


def _failure_kind(exc: ContractError) -> str:
    """A short label for why decoding a Post failed: e.g. 'missing created_at'."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError) and cause.errors():
        err = cause.errors()[0]
        if err["type"] in _LIMIT_KINDS:
            return _LIMIT_KINDS[err["type"]]
        name = str(err["loc"][0]) if err["loc"] else ""
        if name in Post.model_fields:
            return f"{'missing' if err['type'] == 'missing' else 'invalid'} {name}"
    return "invalid post"


def _metadata_of(row: dict[str, Any], col: str) -> dict[str, Any]:
    """The row's own metadata object: a JSON object, or (CSV) a cell holding one."""
    meta = row.get(col)
    if meta is None or meta == "":
        return {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            pass
        except (RecursionError, ValueError) as exc:  # past the parser's limits
            kind, reason = json_problem(exc)
            raise RowError(f"invalid Post: metadata: {reason}", kind) from None
    if not isinstance(meta, dict):
        raise RowError(
            f"invalid Post: metadata must be a JSON object, not {type(meta).__name__}",
            "invalid metadata",
        )
    return meta


def to_post(
    row: dict[str, Any],
    *,
    field_map: dict[str, str] | None = None,
    source: str | None = None,
    lang: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Post:
    """Map a row to a Post (``field_map``: post field -> row column; ``source``, ``lang``:
    every post's, whatever its row says). Raises RowError.

    Metadata: the row's own ``metadata`` object, with every other column beside it; a
    column whose name the object already has (with another value) goes under
    ``metadata["replay_shadowed"]`` (the row is dead-lettered if that too has another
    value). ``ingested_at`` is when this replay sent the post (it drives the latency
    metrics); a file's own ``ingested_at`` is kept as ``metadata["original_ingested_at"]``.
    """
    past_header = cast(dict[Any, Any], row).get(None)  # csv.DictReader's key for extra cells
    if past_header is not None:
        raise RowError(
            f"the row has {len(past_header)} more cell(s) than the header's {len(row) - 1} columns",
            "too many cells",
        )
    fm = field_map or {}
    data: dict[str, Any] = {}
    empty: list[str] = []
    for name in POST_FIELDS:
        col = fm.get(name, name)
        if col not in row:
            continue
        if row[col] not in (None, ""):
            data[name] = row[col]
        elif name in REQUIRED_FIELDS and not (name == "source" and source):
            empty.append(name)
    if empty:
        raise RowError(
            "invalid Post: " + "; ".join(f"{name} is empty" for name in empty), f"empty {empty[0]}"
        )
    if source:
        data["source"] = source
    if lang:
        data["lang"] = lang
    if "id" in data:
        data["id"] = str(data["id"])
    meta = dict(_metadata_of(row, fm.get("metadata", "metadata")))
    read = {fm.get(name, name) for name in MAPPABLE_FIELDS}
    extra = {k: v for k, v in row.items() if k not in read}
    if "ingested_at" in extra:
        extra[ORIGINAL_INGESTED_AT] = extra.pop("ingested_at")
    shadowed = {k: v for k, v in extra.items() if k in meta and meta[k] != v}
    meta.update({k: v for k, v in extra.items() if k not in meta})
    if shadowed:
        prior = meta.get(SHADOWED, {})
        if not isinstance(prior, dict) or any(prior.get(k, v) != v for k, v in shadowed.items()):
            raise RowError(
                f"invalid Post: columns {sorted(shadowed)} clash with metadata and with "
                f"metadata.{SHADOWED}",
                "metadata clash",
            )
        meta[SHADOWED] = {**prior, **shadowed}
    if meta:
        data["metadata"] = meta
    data["ingested_at"] = now()
    try:
        return decode(Post, data)
    except ContractError as exc:
        raise RowError(exc.reason, _failure_kind(exc)) from exc.__cause__


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


@dataclass(frozen=True)
class Rejected:
    """A row that goes to the dead-letter topic, and the kind of problem it has."""

    kind: str
    letter: DeadLetter


def map_row(
    path: Path,
    lineno: int,
    row: dict[str, Any] | str | Unreadable,
    *,
    field_map: dict[str, str] | None = None,
    source: str | None = None,
    lang: str | None = None,
) -> Post | Rejected:
    """One row of :func:`read_rows` as a Post, or its dead letter."""
    try:
        if isinstance(row, Unreadable):
            raise RowError(row.problem, row.kind)
        if isinstance(row, str):
            raise RowError("not a JSON object", "not a JSON object")
        try:
            return to_post(row, field_map=field_map, source=source, lang=lang)
        except RecursionError:  # e.g. an id nested ~1,000 deep, turned into a string
            raise RowError("invalid Post: a field is nested too deep", "nested too deep") from None
    except RowError as exc:
        if isinstance(row, dict):
            raw = _dumped(row)
        else:
            raw = row.raw if isinstance(row, Unreadable) else row
        reason = f"line {lineno}: {exc.reason}"
        return Rejected(exc.kind, dead_letter("replay", reason, str(path), raw, offset=lineno))


def _dumped(row: dict[str, Any]) -> str:
    """A rejected row as JSON for its dead letter (a placeholder if it can't be written)."""
    try:
        return json.dumps(row, default=str)
    except (RecursionError, ValueError):
        return "(the row is nested too deep to write back as JSON)"


# dead letters logged per kind; the rest are counted in the summary only (a file without a
# text column would otherwise print one line per row)
LOGGED_PER_KIND = 20


def log_rejected(rejected: Rejected, nth: int) -> None:
    """Log the ``nth`` dead letter of its kind, if it is among the first LOGGED_PER_KIND."""
    if nth < LOGGED_PER_KIND:
        log.warning("%s", rejected.letter.reason)
    elif nth == LOGGED_PER_KIND:
        log.warning(
            "%s (further %r dead letters are counted in the summary, not logged)",
            rejected.letter.reason,
            rejected.kind,
        )


def warn_missing_columns(
    path: Path, header: list[str], field_map: dict[str, str] | None, source: str | None
) -> list[str]:
    """Log a warning naming the required columns a CSV header lacks; returns them."""
    missing = missing_columns(header, field_map, source)
    if missing:
        log.warning(
            "%s: the CSV header has no column %s, so every row will be dead-lettered "
            "(header: %s; use --map FIELD=COLUMN to read a field from another column)",
            path,
            ", ".join(repr(c) for c in missing),
            ", ".join(repr(c) for c in header) or "(empty)",
        )
    return missing


def check_readable(path: Path) -> None:
    """Raise SeismoError unless ``path`` is a file this process can read."""
    if path.is_dir():
        raise SeismoError(f"replay file {path} is a directory; give a JSONL or CSV file")
    if not path.exists():
        raise SeismoError(f"replay file {path} does not exist")
    try:
        path.open("rb").close()
    except OSError as exc:
        raise SeismoError(f"can't read replay file {path}: {exc.strerror or exc}") from None


async def replay(
    settings: Settings,
    path: Path,
    *,
    speed: float | None = None,
    source: str | None = None,
    lang: str | None = None,
    field_map: dict[str, str] | None = None,
    fmt: str | None = None,
    limit: int | None = None,
    progress: Callable[[ReplayStats], None] | None = None,
    progress_every: float = 2.0,
) -> ReplayStats:
    check_readable(path)
    await ensure_topics(settings)
    producer = make_producer(settings, "replay")
    await producer.start()
    stats = ReplayStats()
    failed: list[BaseException] = []  # sends Kafka did not take (a batch that expired)

    def check(fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            failed.append(cast(BaseException, fut.exception()))

    async def send(topic: str, value: bytes, **kw: Any) -> None:
        fut = await producer.send(topic, value, **kw)
        if fut.done():
            check(fut)
        else:
            fut.add_done_callback(check)
        if failed:
            raise failed[0]

    raw_topic, dlq_topic = settings.topic(POSTS_RAW), settings.topic(DLQ)
    t0 = time.monotonic()
    last_report = t0
    wall_start: float | None = None
    try:
        for lineno, row in read_rows(
            path,
            fmt,
            on_header=lambda header: warn_missing_columns(path, header, field_map, source),
            on_blank=stats.count_blank,
        ):
            if limit is not None and stats.read >= limit:
                break
            stats.read += 1
            post = map_row(path, lineno, row, field_map=field_map, source=source, lang=lang)
            if isinstance(post, Rejected):
                await send(dlq_topic, post.letter.to_bytes())
                stats.dead += 1
                stats.reasons[post.kind] = stats.reasons.get(post.kind, 0) + 1
                log_rejected(post, stats.reasons[post.kind])
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
            await send(
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
        await asyncio.sleep(0)  # the done callbacks of the last sends
        if failed:
            raise failed[0]
    except KafkaError as exc:
        failed.append(exc)
        raise SeismoError(
            f"Kafka did not take the posts ({type(exc).__name__}: {exc}) after {stats.read:,} "
            f"rows read; stopped. Some posts may be missing from {raw_topic}: a rerun of the "
            "same replay is safe (the worker skips a post it already has, by its key)"
        ) from exc
    finally:
        if failed:  # Kafka is gone: stop() would wait for the buffered batches to expire
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10.0)
        else:
            await producer.stop()
    stats.seconds = time.monotonic() - t0
    return stats
