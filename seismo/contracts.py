"""Versioned wire contracts shared by connectors and streams.

Every topic carries UTF-8 JSON. Producers build these models, whose fields are validated
(types, ranges, sizes); a field the model does not know is dropped, not refused, both when a
producer constructs a model and when a consumer parses one with :func:`decode` (so a newer
producer's added fields do not break an older consumer). A topic's name ends in its
contract version, so a breaking change is a new topic (``posts.raw.v2``), never a silent
reinterpretation.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError, to_json

from seismo.errors import ContractError

# Topic names (before the optional namespace prefix, see Settings.topic).
POSTS_RAW = "posts.raw.v1"
POSTS_CLASSIFIED = "posts.classified.v1"
ALERTS = "alerts.v1"
DLQ = "dlq.v1"
ALERTS_DLQ = "alerts.dlq.v1"
ALL_TOPICS = (POSTS_RAW, POSTS_CLASSIFIED, ALERTS, DLQ, ALERTS_DLQ)

Stance = Literal["support", "deny", "query", "comment"]
SignalKind = Literal["term", "dossier", "claim", "stance"]
# An alert's lifecycle: opened when a burst passes threshold, updated as it grows (each
# update is a new ``version`` of the same ``id``), resolved when it subsides.
AlertStatus = Literal["open", "update", "resolved"]
Severity = Literal["low", "medium", "high", "critical"]


# --- what a post may carry: one rule for every edge (replay, x-push, the connectors) ---
# A post's event time is its Kafka record timestamp. Kafka refuses a timestamp before 1970
# (negative) and, from Kafka 4.0 on, one more than message.timestamp.after.max.ms (1 hour by
# default) ahead of the broker's clock; such a record fails its whole batch. A post outside
# [EARLIEST_EVENT_TIME, now + MAX_EVENT_TIME_SKEW] is refused where it enters, with a reason.
EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_EVENT_TIME_SKEW = timedelta(minutes=10)
# ``metadata`` serialized: with the 40,000-character text a post stays far below Kafka's
# 1 MB record limit; nesting is bounded so every model that holds a post can serialize it
METADATA_MAX_BYTES = 64_000
METADATA_MAX_DEPTH = 32


def _depth(value: Any) -> int:
    """Nesting depth of a JSON-like value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        items = v.values() if isinstance(v, dict) else v if isinstance(v, list | tuple) else None
        if items is None:
            continue
        deepest = max(deepest, d + 1)
        if deepest > METADATA_MAX_DEPTH:
            break
        stack.extend((x, d + 1) for x in items)
    return deepest


def json_problem(exc: BaseException) -> tuple[str, str]:
    """(kind, reason) for a document ``json.loads`` refused: not JSON, or past one of the
    interpreter's limits (nesting, integers over ``sys.get_int_max_str_digits()`` digits)."""
    if isinstance(exc, RecursionError):
        return "nested too deep", "JSON nested too deep to read"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8", f"not UTF-8: {exc}"
    if isinstance(exc, json.JSONDecodeError):
        return "not JSON", f"not JSON: {exc}"
    first = str(exc).split(":")[0]  # "Exceeds the limit (4300 digits) for integer ..."
    return "number too long", f"JSON number too long to read ({first})"


class Contract(BaseModel):
    """Base: tolerant on parse (extra ignored), immutable once built."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")


class Post(Contract):
    """A normalized post from any source (``posts.raw.v1``)."""

    id: str = Field(min_length=1, max_length=256, description="platform-stable id")
    source: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    text: str = Field(min_length=1, max_length=40_000)
    created_at: AwareDatetime = Field(description="event time: when the post was made")
    author: str | None = Field(default=None, max_length=256)
    url: str | None = Field(default=None, max_length=2048)
    lang: str | None = Field(default=None, max_length=16)
    reply_to: str | None = Field(default=None, max_length=2048)
    quote_of: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] = Field(default_factory=dict)
    ingested_at: AwareDatetime | None = Field(
        default=None, description="wall-clock time seismo first saw the post"
    )

    @field_validator("created_at")
    @classmethod
    def _event_time_in_range(cls, v: datetime) -> datetime:
        latest = datetime.now(UTC) + MAX_EVENT_TIME_SKEW
        if not EARLIEST_EVENT_TIME <= v <= latest:
            raise PydanticCustomError(
                "event_time_out_of_range",
                "event time {when} is outside what Kafka takes as a timestamp "
                "(1970-01-01 to {skew} min from now)",
                {"when": v.isoformat(), "skew": int(MAX_EVENT_TIME_SKEW.total_seconds() // 60)},
            )
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata_bounded(cls, v: dict[str, Any]) -> dict[str, Any]:
        if _depth(v) > METADATA_MAX_DEPTH:
            raise PydanticCustomError(
                "metadata_too_deep",
                "metadata is nested more than {limit} levels deep",
                {"limit": METADATA_MAX_DEPTH},
            )
        size = len(to_json(v))
        if size > METADATA_MAX_BYTES:
            raise PydanticCustomError(
                "metadata_too_large",
                "metadata is {size} bytes as JSON, over the {limit}-byte limit",
                {"size": size, "limit": METADATA_MAX_BYTES},
            )
        return v

    @property
    def key(self) -> str:
        """Globally unique key: ``source:id``."""
        return f"{self.source}:{self.id}"


class ClaimHit(Contract):
    claim: str
    dossier: str | None = None
    stance: Stance = "comment"
    score: float = 1.0


class ClassifiedPost(Contract):
    """A post with its topic and stance labels (``posts.classified.v1``)."""

    post: Post
    dossiers: list[str] = Field(default_factory=list)
    claims: list[ClaimHit] = Field(default_factory=list)
    terms: list[str] = Field(default_factory=list)
    classifier: str = "watchlist-v1"
    # added by the model classifier (issue 4); absent from keyword-only classification
    topics: list[str] = Field(default_factory=list, description="general topics (TweetTopic)")
    dossier_scores: dict[str, float] = Field(
        default_factory=dict, description="per-dossier score, 0.5 = the dossier's threshold"
    )
    raw_partition: int | None = Field(
        default=None, ge=0, description="the posts.raw.v1 partition the post was read from"
    )
    raw_offset: int | None = Field(
        default=None, ge=0, description="its offset there (a copy classified again has the same)"
    )


class Progress(Contract):
    """A progress marker on ``posts.classified.v1`` (told apart by its first bytes,
    :data:`PROGRESS_PREFIX`): every post of raw partition ``raw_partition`` before
    ``raw_offset`` is ahead of this record, and no post at or after that offset was stamped
    (``ingested_at``) before ``not_before``. The detector writes these for an idle raw
    partition its merge of the raw partitions waits on (``streams/merge.py``)."""

    kind: Literal["progress"] = "progress"
    raw_partition: int = Field(ge=0)
    raw_offset: int = Field(ge=0, description="the raw partition's end offset, committed")
    not_before: AwareDatetime


PROGRESS_PREFIX = b'{"kind":"progress"'
"""How a ``Progress`` record's value starts (its first field, as ``to_bytes`` writes it)."""


class Evidence(Contract):
    post_id: str
    source: str
    created_at: AwareDatetime
    text: str
    author: str | None = None
    url: str | None = None
    stance: Stance | None = None


class CountPoint(Contract):
    """Posts of an alert in one event-time bucket starting at ``start``."""

    start: AwareDatetime
    count: int


class Link(Contract):
    """A URL the posts of a story share (not a post's own address), with how many carry it."""

    url: str
    domain: str
    count: int


class StanceShift(Contract):
    """One stance's share of the stanced posts, at the previous delivered version and now."""

    stance: Stance
    before: float
    after: float


class Changes(Contract):
    """What changed since the story's previous delivered version (``since_version``)."""

    since_version: int
    new_posts: int = 0
    new_independent_posts: int = 0
    new_sources: list[str] = Field(default_factory=list)
    new_links: list[str] = Field(default_factory=list)
    new_claims: list[str] = Field(default_factory=list)
    stance_shift: list[StanceShift] = Field(default_factory=list)
    severity_from: Severity | None = None


class Alert(Contract):
    """A burst worth acting on (``alerts.v1``, Kafka key = ``id``).

    ``id`` is derived from the burst key and the event-time bucket where the burst
    started, so a redelivered or recomputed alert has the same id. Each lifecycle change
    (opened, updated, resolved) is a new ``version`` of the same id; the fields after
    ``detected_at`` form the evidence packet (all optional, for older consumers).
    """

    id: str
    version: int = 1
    status: AlertStatus = "open"
    severity: Severity = "low"
    kind: SignalKind
    key: str
    label: str
    terms: list[str]
    dossier: str | None = None
    claim: str | None = None
    window_start: AwareDatetime
    window_seconds: int
    raised_at: AwareDatetime = Field(description="event time of the post that tipped it")
    first_seen: AwareDatetime
    observed: int
    expected: float
    score: float
    sources: dict[str, int] = Field(default_factory=dict)
    stance_mix: dict[str, int] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)
    detected_at: AwareDatetime = Field(description="wall-clock time the alert was made")
    # --- evidence packet (issue 6) ---
    related_keys: list[str] = Field(
        default_factory=list, description="every burst key merged into this alert, strongest first"
    )
    claims: list[str] = Field(default_factory=list, description="tracked claims among its posts")
    lead_source: str | None = Field(default=None, description="the source that carried it first")
    source_first_seen: dict[str, AwareDatetime] = Field(
        default_factory=dict, description="event time each source first carried it"
    )
    counts_curve: list[CountPoint] = Field(
        default_factory=list, description="posts per event-time bucket since it began"
    )
    z: float | None = Field(default=None, description="SigniTrend significance of the best key")
    posts_seen: int | None = Field(default=None, description="posts attached (before discounts)")
    unique_authors: int | None = None
    independent_posts: int | None = Field(
        default=None, description="posts left after one per near-duplicate cluster and author"
    )
    discounted: dict[str, int] = Field(
        default_factory=dict, description="posts not counted as independent voices, by reason"
    )
    reason: str | None = Field(default=None, description="why it fired, in words")
    # --- stories (issue 17) ---
    headline: str | None = Field(
        default=None, description="what the story is about, readable (also its ``label``)"
    )
    links: list[Link] = Field(
        default_factory=list, description="URLs its posts share, most shared first"
    )
    changes: Changes | None = Field(
        default=None, description="what changed since the previous delivered version"
    )
    deliver: bool | None = Field(
        default=None,
        description="whether the sinks get this version (None: an older producer, yes); "
        "versions coalesced by the story throttle are on alerts.v1 only",
    )
    merged_into: str | None = Field(
        default=None, description="a resolved story that joined another: that story's id"
    )
    delivered_reason: str | None = Field(
        default=None,
        description="why a delivered version goes out: open, reopened, severity, claim, "
        "stance, update, resolved",
    )


class DeadLetter(Contract):
    """A record that could not be processed (``dlq.v1``)."""

    stage: str
    reason: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: str = Field(description="the original value, UTF-8 with replacement, truncated")
    failed_at: AwareDatetime


class FailedDelivery(Contract):
    """An alert version a sink refused or missed on every try (``alerts.dlq.v1``, key = alert id).

    Holds everything ``seismo alerts redeliver`` needs to send it again: the alert record as
    produced (all fields, also those this version of seismo does not know) and the sink.
    """

    alert_id: str
    alert_version: int
    sink: Literal["webhook", "chat", "file"]
    target: str = Field(description="webhook URL, chat:<fingerprint of the chat URL>, file path")
    reason: str
    attempts: int
    failed_at: AwareDatetime
    redeliveries: int = Field(default=0, description="failed `alerts redeliver` runs so far")
    alert: dict[str, Any] = Field(description="the alerts.v1 record as JSON")


M = TypeVar("M", bound=Contract)


def decode(model: type[M], data: bytes | str | dict[str, Any]) -> M:
    """Parse one record into ``model``; raises ContractError with a readable reason."""
    try:
        if isinstance(data, dict):
            return model.model_validate(data)
        return model.model_validate_json(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(x) for x in err["loc"]) or "<record>"
            parts.append(f"{loc}: {err['msg']}")
        raise ContractError(f"invalid {model.__name__}: " + "; ".join(parts)) from exc


def dead_letter(
    stage: str,
    reason: str,
    topic: str,
    value: bytes | str | None,
    *,
    key: bytes | str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    max_value_chars: int = 16_000,
) -> DeadLetter:
    def text(v: bytes | str | None) -> str:
        if v is None:
            return ""
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

    return DeadLetter(
        stage=stage,
        reason=reason,
        topic=topic,
        partition=partition,
        offset=offset,
        key=text(key) or None,
        value=text(value)[:max_value_chars],
        failed_at=datetime.now(UTC),
    )
