"""Settings: one frozen pydantic-settings class per process.

Precedence (highest first): explicit overrides (CLI flags) > ``SEISMO_*`` environment
variables > the YAML config file (``--config`` or ``SEISMO_CONFIG``) > defaults.
Secrets are ``SecretStr`` and print masked.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import logging
import os
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from seismo.errors import ConfigError, field_errors
from seismo.retry import RetryPolicy
from streams.params import SHAPE_SETTINGS, DetectorParams

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_CONFIG_ENV = "SEISMO_CONFIG"
_config_file: ContextVar[Path | None] = ContextVar("seismo_config_file", default=None)
_ENV_PREFIX = "SEISMO_"

# SEISMO_* variables the project reads outside Settings: never warned about as unknown
OTHER_ENV_VARS = frozenset(
    {
        _CONFIG_ENV,  # the YAML settings file (this module)
        "SEISMO_CACHE_DIR",  # Kafka jar cache (seismo/broker.py)
        "SEISMO_PURE_PYTHON",  # reference code instead of the compiled core (streams/core.py)
        "SEISMO_RECEIVER_SECRET",  # the example receiver's secret (examples/receiver.py)
    }
)
_warned_env: set[str] = set()
# set by `seismo run` for its children: the parent has warned about the environment already
ENV_CHECKED = "_SEISMO_ENV_CHECKED"

log = logging.getLogger(__name__)


def _config_path() -> Path | None:
    """``--config`` if given, else ``SEISMO_CONFIG``, else None."""
    p = _config_file.get()
    if p is None:
        env = os.environ.get(_CONFIG_ENV)
        return Path(env) if env else None
    return p


def _read_config(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def env_name(field: str) -> str:
    """The environment variable of a setting, e.g. ``SEISMO_WEB_PORT``; a setting in a
    group is named with a dot, e.g. ``detector.min_score``: ``SEISMO_DETECTOR__MIN_SCORE``."""
    return _ENV_PREFIX + field.replace(".", "__").upper()


def _url_with_scheme(url: str, schemes: tuple[str, ...], secret: bool = False) -> str:
    """``url`` if it is an absolute URL with one of ``schemes`` and a host, else ValueError
    (naming the URL without its query, or not at all when the URL is a ``secret``)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in schemes or not parts.hostname:
        want = " or ".join(f"{s}://" for s in schemes)
        shown = "" if secret else f"; got {url.split('?')[0]!r}"  # a query may hold a key
        raise ValueError(f"needs a URL starting {want}, with a host{shown}")
    return url


def _secret_http_url(v: SecretStr) -> SecretStr:
    _url_with_scheme(v.get_secret_value(), ("http", "https"), secret=True)
    return v


# --- connector robustness: URL settings are checked at start, not retried forever ---
HttpUrlText = Annotated[str, AfterValidator(lambda v: _url_with_scheme(v, ("http", "https")))]
WsUrlText = Annotated[str, AfterValidator(lambda v: _url_with_scheme(v, ("ws", "wss")))]
HttpUrlSecret = Annotated[SecretStr, AfterValidator(_secret_http_url)]


_P = TypeVar("_P", bound="DataclassInstance")


def _params(cls: type[_P], group: BaseModel, **derived: Any) -> _P:
    """The pure logic's parameter dataclass ``cls`` from a settings group: every setting
    of the group that ``cls`` has by name, plus ``derived`` ones; ``cls``'s defaults for
    the rest (its internal tuning)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{name: value for name, value in group if name in names}, **derived)


_DETECTOR = DetectorParams()


class DetectorSettings(BaseModel):
    """``detector``: burst detection and the alert book, in event time. A default is the
    detector's own (:class:`streams.params.DetectorParams`), defined there only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket_seconds: int = Field(
        default=_DETECTOR.bucket_seconds,
        ge=1,
        description="event-time bucket of the finest time scale",
    )
    scales: tuple[int, ...] = Field(
        default=_DETECTOR.scales,
        min_length=1,
        description="each time scale's bucket in buckets (1 first, increasing); a key's "
        "window at a scale is two of its buckets: 10 min, 1 h, 6 h, 24 h by default",
    )
    halflife_buckets: float = Field(
        default=_DETECTOR.halflife_buckets,
        gt=0,
        description="half-life of a key's baseline, in buckets: one week",
    )
    floor: float = Field(
        default=_DETECTOR.floor, gt=0, description="smallest expected window count of any key"
    )
    floor_rate: float = Field(
        default=_DETECTOR.floor_rate,
        ge=0,
        description="...or this share of the stream's own window rate",
    )
    min_count: int = Field(
        default=_DETECTOR.min_count, ge=1, description="independent posts a burst needs"
    )
    copies_count_on: tuple[str, ...] = Field(
        default=_DETECTOR.copies_count_on,
        description="sources whose near-duplicate posts count as independent posts: on a "
        "link aggregator the same headline submitted again is another reader's submission; "
        "elsewhere a copy (a repost, a copy-paste campaign) counts 0",
    )
    min_z: float = Field(
        default=_DETECTOR.min_z, description="SigniTrend z = (x - E) / (sd + beta)"
    )
    min_score: float = Field(
        default=_DETECTOR.min_score,
        gt=0,
        description="-log10 of the p-value (the negative binomial predictive of a Poisson "
        "count after the baseline's history) a burst needs at the finest scale alone "
        "(+log10 of the number of scales, -log10 of a scale's bucket in buckets)",
    )
    cooldown_seconds: int = Field(
        default=_DETECTOR.cooldown_seconds,
        ge=0,
        description="after an alert resolves, its keys open no new alert this long (event time)",
    )
    quiet_seconds: int = Field(
        default=_DETECTOR.quiet_seconds,
        ge=1,
        description="an alert resolves after this long not elevated",
    )
    warmup_seconds: int = Field(
        default=_DETECTOR.warmup_seconds,
        ge=0,
        description="event time watched before anything is raised",
    )
    story_update_seconds: int = Field(
        default=_DETECTOR.story_update_seconds,
        ge=0,
        description="at most one version per story is delivered to the sinks this long "
        "(event time); openings, severity rises, new claims, stance shifts and resolutions "
        "go out at once",
    )
    story_horizon_seconds: int = Field(
        default=_DETECTOR.story_horizon_seconds,
        ge=0,
        description="a resolved story takes back a burst about it (and reopens under its id, "
        "delivered at once) this long after it went quiet (event time); later, the burst is "
        "a new story",
    )
    lone_word_posts: int = Field(
        default=_DETECTOR.lone_word_posts,
        ge=0,
        description="a word's burst whose posts share nothing else (no second word, phrase "
        "or name, no link) opens a story only from this many independent posts; fewer "
        "posts sharing one word are a coincidence, not an event (tracked keys: from "
        "min_count)",
    )
    max_lateness_seconds: int = Field(
        default=_DETECTOR.max_lateness_seconds,
        ge=0,
        description="a post further behind the detector's current bucket than this is not "
        "counted (counted as too late instead); a later one counts in the current bucket",
    )
    seen_posts: int = Field(
        default=_DETECTOR.seen_posts,
        ge=1000,
        description="post keys the detector of a posts.classified.v1 partition remembers (in "
        "its checkpoint) to count a post sent twice once; a copy is caught exactly while the "
        "partition gets fewer posts than this in max_lateness_seconds + bucket_seconds of "
        "event time (about 9.5 a second with the defaults): older copies are too late",
    )
    evidence_size: int = Field(
        default=_DETECTOR.evidence_size, ge=1, description="posts in an alert's evidence"
    )
    sketch_width_bits: int = Field(
        default=_DETECTOR.sketch_width.bit_length() - 1,
        ge=8,
        le=24,
        description="2^bits cells per row of the hashed sketch of each time scale",
    )
    sketch_depth: int = Field(
        default=_DETECTOR.sketch_depth,
        ge=1,
        le=8,
        description="rows of the hashed sketch of each time scale",
    )
    checkpoint_seconds: float = Field(
        default=5.0, gt=0, description="wall seconds between detector state checkpoints"
    )
    batch_size: int = Field(
        default=128,
        ge=1,
        description="posts per detector call when it reads posts.classified.v1 (raw_partitions "
        "> 1; with one, ingest's batch is the detector's) and when it catches up after a "
        "restart; 1 = one by one",
    )
    batch_wait_ms: float = Field(
        default=50.0,
        ge=0,
        description="with raw_partitions > 1, longest a classified record waits for its "
        "detector batch",
    )
    merge_max_buffered: int = Field(
        default=50_000,
        ge=1,
        description="with raw_partitions > 1, posts the detector's merge of the raw "
        "partitions holds while it waits for a silent one; past this the first goes without "
        "waiting (counted in seismo_merge_forced_total)",
    )

    @field_validator("scales")
    @classmethod
    def _scales_ok(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if v[0] != 1 or any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError("time scales start at 1 and increase, e.g. [1, 6, 36, 144]")
        return v

    def params(self) -> DetectorParams:
        """The detector's parameters: these settings by the same names, the sketch width
        in cells."""
        return _params(DetectorParams, self, sketch_width=1 << self.sketch_width_bits)


_RETRY = RetryPolicy()


class DeliverySettings(BaseModel):
    """``delivery``: how the HTTP alert sinks (webhooks, chat) try each alert version. A
    default is the retry policy's own (:class:`seismo.retry.RetryPolicy`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=_RETRY.attempts, ge=1, description="tries per alert version")
    backoff_seconds: float = Field(
        default=_RETRY.backoff_seconds,
        gt=0,
        description="first retry delay; doubles per try, with equal jitter",
    )
    max_backoff_seconds: float = Field(
        default=_RETRY.max_backoff_seconds,
        gt=0,
        description="cap of the retry delay; a sink that is down gets one try this often",
    )
    timeout_seconds: float = Field(
        default=_RETRY.timeout_seconds,
        gt=0,
        description="timeout of one try of a webhook or chat delivery",
    )

    def params(self) -> RetryPolicy:
        """The sinks' retry policy: these settings by the same names."""
        return _params(RetryPolicy, self)


class ConnectorSettings(BaseModel):
    """``connectors``: which connectors ``seismo run`` starts and how every connector
    runs (flushes, cursors, reconnects, stops)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: list[str] = Field(
        default_factory=list,
        description="connectors `seismo run` also starts, e.g. [hackernews, rss]",
    )
    checkpoint_seconds: float = Field(
        default=1.0, gt=0, description="how often a connector flushes and saves its cursor"
    )
    backoff_cap_seconds: float = Field(
        default=60.0, gt=0, description="longest wait between reconnects"
    )
    flush_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="longest a connector waits for Kafka to acknowledge its posts; past it "
        "the flush is an error: backoff, and the posts are sent again from the saved cursor",
    )
    stop_seconds: float = Field(
        default=3.0,
        gt=0,
        description="on Ctrl-C / SIGTERM, longest a connector waits for Kafka to take its "
        "last posts; the rest are not acknowledged, so they are read again on restart",
    )


# settings that moved into a group: the flat name of before -> the name now
MOVED = {
    "bucket_seconds": "detector.bucket_seconds",
    "time_scales": "detector.scales",
    "baseline_halflife_buckets": "detector.halflife_buckets",
    "baseline_floor": "detector.floor",
    "baseline_floor_rate": "detector.floor_rate",
    "min_count": "detector.min_count",
    "min_z": "detector.min_z",
    "min_score": "detector.min_score",
    "cooldown_seconds": "detector.cooldown_seconds",
    "quiet_seconds": "detector.quiet_seconds",
    "warmup_seconds": "detector.warmup_seconds",
    "story_update_seconds": "detector.story_update_seconds",
    "detector_max_lateness_seconds": "detector.max_lateness_seconds",
    "evidence_size": "detector.evidence_size",
    "sketch_width_bits": "detector.sketch_width_bits",
    "sketch_depth": "detector.sketch_depth",
    "detector_checkpoint_seconds": "detector.checkpoint_seconds",
    "detect_batch_size": "detector.batch_size",
    "detect_batch_wait_ms": "detector.batch_wait_ms",
    "webhook_attempts": "delivery.attempts",
    "webhook_backoff_seconds": "delivery.backoff_seconds",
    "webhook_max_backoff_seconds": "delivery.max_backoff_seconds",
    "webhook_timeout_seconds": "delivery.timeout_seconds",
    "connector_checkpoint_seconds": "connectors.checkpoint_seconds",
    "connector_backoff_cap_seconds": "connectors.backoff_cap_seconds",
    "connector_flush_timeout_seconds": "connectors.flush_timeout_seconds",
    "connector_stop_seconds": "connectors.stop_seconds",
    "dedupe_posts": "detector.seen_posts",  # the post keys remembered to count a post once
}


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``SEISMO_CONFIG`` (set by ``--config`` too)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        p = _config_path()
        return {} if p is None else _read_config(p)


def _not_json(group: str) -> tuple[str, str | None]:
    """The variable of a list setting in ``group`` whose value is not JSON, and the value."""
    model = _group(group)
    fields = model.model_fields.items() if model is not None else []
    lists = [
        env_name(f"{group}.{n}")
        for n, f in fields
        if str(f.annotation).startswith(("list", "tuple"))
    ]
    for key, raw in sorted(os.environ.items()):
        if key.upper() in lists:
            try:
                json.loads(raw)
            except ValueError:
                return key.upper(), raw
    return env_name(group), None


class _EnvSource(EnvSettingsSource):
    """``SEISMO_*`` variables; a list setting that is not JSON is a ConfigError naming the
    variable (pydantic-settings raises a bare SettingsError with a long traceback)."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:
            name = env_name(field_name)
            if value is None:  # a group: the variable of its setting that is not JSON
                name, value = _not_json(field_name)
            secret = "SecretStr" in str(field.annotation)
            items = ["..."] if secret else [v.strip() for v in str(value).split(",")]
            raise ConfigError(
                f"{name} is not valid JSON: list settings in the environment are JSON lists, "
                f"e.g. {name}='{json.dumps(items)}'"
            ) from exc


class Settings(BaseSettings):
    """Everything a seismo process can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="SEISMO_",
        frozen=True,
        extra="forbid",
        env_nested_delimiter="__",
    )

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port] of an external Kafka; unset = embedded broker",
    )
    namespace: str = Field(
        default="",
        description="prefix for topic names and the consumer group (isolates deployments)",
    )
    topic_partitions: int = Field(
        default=4,
        ge=1,
        description="partitions of the keyed topics (alerts.v1, dlq.v1, alerts.dlq.v1)",
    )
    raw_partitions: int = Field(
        default=1,
        ge=1,
        description="partitions of posts.raw.v1: that many workers classify in parallel; the "
        "detector merges them back into one order (the same alerts for any count)",
    )
    publish_classified: bool = Field(
        default=False,
        description="with raw_partitions 1, where the worker's ingest agent counts its posts "
        "itself: also write each classified post to posts.classified.v1, for other readers "
        "(about a quarter of the keyword path's CPU); with more raw partitions they are "
        "always written, the detector reads them there",
    )
    merge_slack_seconds: float = Field(
        default=5.0,
        ge=0,
        description="with raw_partitions > 1: how long after a connector stamps a post "
        "(ingested_at) it is surely in posts.raw.v1, clock differences included; a progress "
        "marker for an idle raw partition vouches for nothing newer than this",
    )
    progress_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="with raw_partitions > 1: how often the detector, while posts wait in "
        "its merge for an idle raw partition, checks whether that partition is classified to "
        "its end (and then writes a progress marker)",
    )
    topic_retention_bytes: int = Field(
        default=1 << 30,
        description="per-partition size cap; time retention is off since records carry event time",
    )
    topic_replication_factor: int = Field(
        default=1,
        ge=1,
        description="replicas of each topic seismo creates (Faust's changelogs too); 3 on a "
        "cluster of 3 or more brokers",
    )
    topic_min_insync_replicas: int = Field(
        default=1,
        ge=1,
        description="min.insync.replicas of each topic seismo creates: with acks=all a write "
        "succeeds only once this many replicas have it (2 with 3 replicas)",
    )

    # --- embedded broker ---------------------------------------------------------------
    data_dir: Path = Field(default=Path(".seismo"), description="broker data, caches, state")
    broker_port: int = Field(default=9092, ge=1, le=65535)
    broker_heap: str = "512m"

    # --- worker ------------------------------------------------------------------------
    app_id: str = "seismo"
    watchlist: Path | None = Field(
        default=None, description="watchlist YAML; unset = the bundled example watchlist"
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    worker_fast_join: bool = Field(
        default=True, description="short session/heartbeat timeouts: quick starts on one node"
    )
    worker_linger_ms: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="how long the worker's producer waits to fill a batch before sending: "
        "fewer, larger requests to Kafka for a few ms of latency per record",
    )
    faust_metrics: bool = Field(
        default=False,
        description="also export faust-streaming's own sensors (seismo_faust_*: per-topic "
        "and per-partition message counters, table operations) on /metrics; each record then "
        "costs the worker more CPU. Consumer lag is exported either way (seismo_consumer_*)",
    )

    # --- groups ------------------------------------------------------------------------
    detector: DetectorSettings = Field(
        default_factory=DetectorSettings,
        description=(
            "burst detection and the alert book, in event time. A worker's settings apply to "
            "the detectors it restores from checkpoints, but a change to any of "
            + ", ".join(SHAPE_SETTINGS)
            + " (the settings a detector's state is shaped by) starts one empty"
        ),
    )
    delivery: DeliverySettings = Field(
        default_factory=DeliverySettings,
        description="how the HTTP alert sinks (webhooks, chat) are tried",
    )
    connectors: ConnectorSettings = Field(
        default_factory=ConnectorSettings,
        description="the connectors `seismo run` starts and how every connector runs",
    )

    # --- alerts out --------------------------------------------------------------------
    webhook_urls: list[HttpUrlText] = Field(default_factory=list)
    webhook_token: SecretStr | None = None
    alerts_out: Path | None = None

    # --- connectors --------------------------------------------------------------------
    # Bluesky
    bluesky_mode: Literal["jetstream", "firehose"] = "jetstream"
    bluesky_jetstream_url: WsUrlText = Field(
        default="wss://jetstream.us-east.bsky.network/xrpc",
        description="Jetstream v2 base URI (the atproto SDK appends the subscribeEvents NSID; "
        "legacy v1 hosts jetstream1/2.* don't speak v2)",
    )
    bluesky_jetstream_compress: bool = Field(
        default=True, description="ask Jetstream for zstd frames (falls back to plain JSON)"
    )
    bluesky_firehose_url: WsUrlText = Field(
        default="wss://bsky.network/xrpc", description="relay base URI for subscribeRepos"
    )
    bluesky_stall_seconds: float = Field(
        default=60.0, gt=0, description="reconnect after this long without a frame"
    )
    bluesky_gap_tolerance_seconds: float = Field(
        default=10.0,
        gt=0,
        description="report a gap when the first event after a resume is this much later "
        "than the saved cursor",
    )
    # Reddit (script app: https://www.reddit.com/prefs/apps)
    reddit_client_id: str | None = None
    reddit_client_secret: SecretStr | None = None
    reddit_username: str | None = None
    reddit_password: SecretStr | None = None
    reddit_user_agent: str = "seismo/0.1 (social-signal monitor)"
    reddit_subreddits: list[str] = Field(default_factory=list)
    reddit_oauth_url: HttpUrlText = "https://oauth.reddit.com"
    reddit_www_url: HttpUrlText = Field(
        default="https://www.reddit.com", description="base of the OAuth token endpoint"
    )
    reddit_poll_seconds: float = Field(
        default=5.0, gt=0, description="pause between polls of the subreddits' new items"
    )
    # Hacker News
    hn_api_url: HttpUrlText = "https://hacker-news.firebaseio.com/v0"
    hn_poll_seconds: float = Field(default=30.0, gt=0)
    hn_concurrency: int = Field(default=8, ge=1)
    hn_timeout_seconds: float = Field(default=10.0, gt=0, description="per HTTP request")
    # X (API v2 filtered stream) and the X-style push endpoint
    x_bearer_token: SecretStr | None = None
    x_api_url: HttpUrlText = "https://api.x.com/2"
    x_push_host: str = "127.0.0.1"
    x_push_port: int = Field(default=6071, ge=1, le=65535)
    x_push_token: SecretStr | None = None
    x_push_max_bytes: int = Field(default=1_000_000, ge=1024)
    x_stall_seconds: float = Field(
        default=30.0, gt=0, description="reconnect when the X stream sends no byte for this long"
    )
    # News feeds (RSS / Atom)
    rss_feeds: list[HttpUrlText] = Field(default_factory=list)
    rss_poll_seconds: float = Field(default=300.0, gt=0)
    # --- observability ---------------------------------------------------------------
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="port of /metrics (on web_host) for processes without the worker's web "
        "server, e.g. connectors; 0 = not served",
    )

    # --- alert delivery --------------------------------------------------------------
    webhook_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="HMAC-SHA256 secrets that sign webhooks (Seismo-Signature); every one "
        "signs, so a receiver can rotate: add the new secret, switch, then drop the old",
    )
    chat_webhook_urls: list[HttpUrlSecret] = Field(
        default_factory=list,
        description="Slack-compatible incoming webhooks (their URL is their secret)",
    )
    live_host: str = Field(default="127.0.0.1", description="`seismo alerts serve` address")
    live_port: int = Field(default=6067, ge=1, le=65535)
    live_token: SecretStr | None = Field(
        default=None, description="token of the live alert page; unset = a random one per start"
    )
    live_backlog: int = Field(
        default=200, ge=1, description="recent alerts the live page shows when it connects"
    )

    # --- models (classify step) ------------------------------------------------------------
    classifier: Literal["keyword", "cascade", "full"] = Field(
        default="cascade",
        description="keyword: watchlist matching only; full: MiniLM on every post; "
        "cascade: MiniLM only on posts the keyword/vocabulary gate lets through",
    )
    model_dir: Path | None = Field(
        default=None, description="trained heads (stance-v1, topic-v1); unset = bundled ones"
    )
    model_threads: int = Field(default=2, ge=1, description="ONNX Runtime intra-op threads")
    max_terms_per_post: int = Field(
        default=16,
        ge=1,
        description="terms (words, phrases, hashtags, domains) a post contributes to the "
        "detector at most",
    )
    classify_batch_size: int = Field(
        default=128,
        ge=1,
        description="posts ingest reads and classifies per call (and, with one raw "
        "partition, counts per detector call); 1 = no batching",
    )
    classify_batch_wait_ms: float = Field(
        default=50.0, ge=0, description="longest a post waits for its batch to fill"
    )

    @field_validator("connectors", mode="before")
    @classmethod
    def _connectors_group(cls, v: Any) -> Any:
        if isinstance(v, list | str):  # the flat setting of before the groups
            raise ValueError(
                "connectors is a group now: the connectors to start are connectors.enabled "
                f"({env_name('connectors.enabled')}), e.g. connectors: {{enabled: [rss]}}"
            )
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace_ok(cls, v: str) -> str:
        if v and not all(c.isalnum() or c in "-_." for c in v):
            raise ValueError("namespace may hold letters, digits, '-', '_' and '.' only")
        return v

    @model_validator(mode="after")
    def _replicas_ok(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"topic_min_insync_replicas ({self.topic_min_insync_replicas}) cannot exceed "
                f"topic_replication_factor ({self.topic_replication_factor}): no write would "
                "ever succeed"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _EnvSource(settings_cls), _YamlFileSource(settings_cls))

    def partitions(self, name: str) -> int:
        """Partition count of a contract topic."""
        if name == "posts.raw.v1":
            return self.raw_partitions
        if name == "posts.classified.v1":  # the detector counts the whole stream, in one order
            return 1
        return self.topic_partitions

    def topic(self, name: str) -> str:
        """The full topic name for a contract topic, with the namespace prefix."""
        return f"{self.namespace}.{name}" if self.namespace else name

    @property
    def group_id(self) -> str:
        return f"{self.namespace}.{self.app_id}" if self.namespace else self.app_id

    def masked(self) -> dict[str, Any]:
        """Settings as a JSON-able dict, secrets shown as ``**********``."""
        return self.model_dump(mode="json")


def _group(name: str) -> type[BaseModel] | None:
    """The settings group a top-level field is, or None (a setting, or no field)."""
    info = Settings.model_fields.get(name)
    kind = info.annotation if info is not None else None
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def setting_names() -> list[str]:
    """Every setting's name, a group's settings with a dot (``detector.min_score``)."""
    names = []
    for name in Settings.model_fields:
        group = _group(name)
        names += [f"{name}.{inner}" for inner in group.model_fields] if group else [name]
    return names


def closest(name: str, names: list[str], separator: str = ".") -> str | None:
    """The one of ``names`` (a group's settings with ``separator``) most like ``name``, a
    misspelt name, or one without its group (``min_zz`` finds ``detector.min_z``)."""
    by_spelling = {n: n for n in names} | {n.rsplit(separator, 1)[-1]: n for n in names}
    close = difflib.get_close_matches(name, sorted(by_spelling), n=1)
    return by_spelling[close[0]] if close else None


def _moved(name: str) -> str:
    """What to say of a setting that moved into a group (its name of before)."""
    new = MOVED[name]
    return f"moved into a group: it is {new} now ({env_name(new)})"


def refuse_moved_env() -> None:
    """A ``SEISMO_*`` variable of a setting that moved into a group is a ConfigError
    naming the new variable: ignoring it would quietly change what the process does."""
    moved = {env_name(old): old for old in MOVED}
    stale = sorted(key for key in os.environ if key.upper() in moved)
    if stale:
        raise ConfigError(
            "; ".join(
                f"{key} is no setting any more: {_moved(moved[key.upper()])}" for key in stale
            )
        )


def warn_unknown_env() -> None:
    """Warn (once per process) about ``SEISMO_*`` variables that are no setting: a typo
    there would otherwise be ignored without a word (an unknown YAML key is an error)."""
    if os.environ.get(ENV_CHECKED):
        return
    known = {env_name(f) for f in setting_names()}
    groups = {env_name(f) for f in Settings.model_fields}
    for key in os.environ:
        name = key.upper()
        if not name.startswith(_ENV_PREFIX) or key in _warned_env:
            continue
        if name in OTHER_ENV_VARS or name in known or name.split("__")[0] in groups:
            continue  # (an unknown setting in a group is a validation error, with a hint)
        _warned_env.add(key)
        close = closest(
            name[len(_ENV_PREFIX) :],
            [env_name(n)[len(_ENV_PREFIX) :] for n in setting_names()],
            "__",
        )
        hint = f"; did you mean {_ENV_PREFIX}{close}?" if close else ""
        log.warning("environment variable %s is not a seismo setting: ignored%s", key, hint)


def _lookup(data: dict[str, Any], path: str) -> bool:
    """Whether nested ``data`` holds the dotted ``path``."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _origin(field: str, overrides: dict[str, Any]) -> str:
    """Where a setting's value came from, in the sources' order of precedence."""
    if _lookup(overrides, field):
        return "command-line flag"
    group = field.partition(".")[0]
    names = {env_name(field), env_name(group)}
    for key in os.environ:
        if key.upper() in names:
            return key.upper()
    path = _config_path()
    if path is not None and _lookup(_read_config(path), field):
        return f"{path} key {field}"
    return "default"


def _setting_of(loc: str) -> tuple[str, str]:
    """An error location split into the setting (``detector.min_z``) and the rest (an
    item of a list setting)."""
    first, _, rest = loc.partition(".")
    if rest and _group(first) is not None:
        inner, _, rest = rest.partition(".")
        return f"{first}.{inner}", rest
    return first, rest


def _invalid(exc: ValidationError, overrides: dict[str, Any]) -> ConfigError:
    """One line per bad field: ``field (where it came from): message``."""
    names = setting_names()
    lines = []
    for loc, msg in field_errors(exc):
        field, rest = _setting_of(loc)
        item = f"item {rest}: " if rest else ""
        if field in MOVED:
            msg = _moved(field)
        elif field not in names and field not in Settings.model_fields:
            close = closest(field, names)  # a typo: the closest setting
            msg += f"; did you mean {close}?" if close else ""
        lines.append(f"{field} ({_origin(field, overrides)}): {item}{msg}")
    if len(lines) == 1:
        return ConfigError(f"invalid settings: {lines[0]}")
    return ConfigError("invalid settings:\n  " + "\n  ".join(lines))


def _nested(overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides with a group's settings as a dict: ``{"detector.min_z": 2}`` (or
    ``detector={"min_z": 2}``) is ``{"detector": {"min_z": 2}}``, merged with the group's
    settings from the environment and the YAML file, not in place of them."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        group, dot, name = key.partition(".")
        if dot:
            out.setdefault(group, {})[name] = value
        elif isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings; ``config_file`` wins over ``SEISMO_CONFIG``. Raises ConfigError.

    ``overrides`` (command-line flags) name a group's setting with a dot, through
    ``**{"detector.min_score": 5.0}``, or as a dict: ``detector={"min_score": 5.0}``."""
    clean = _nested({k: v for k, v in overrides.items() if v is not None})
    refuse_moved_env()
    warn_unknown_env()
    token = _config_file.set(config_file)
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise _invalid(exc, clean) from exc
    finally:
        _config_file.reset(token)
