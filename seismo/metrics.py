"""Prometheus metrics, created against a registry passed in (tests use their own).

Every ``seismo_*`` series of every process is defined here, also the ones other stages set
(connectors, classifier models, detector, delivery), so names, labels and buckets stay
consistent and README's metric table has one source. Labels are bounded: stage, source,
kind, severity, status, sink, outcome have a handful of values each; dossier and claim come
from the watchlist, and :class:`LabelCap` folds anything past a cap into ``"other"``, so a
misbehaving producer cannot blow up the series count. Raw terms are never labels, except
the current top K of :class:`TopTerms` (K series per scrape).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Literal, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from seismo.ports import binding

if TYPE_CHECKING:
    from seismo.contracts import Alert, ClassifiedPost

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# -log10 p of a burst test: 4 is the default alert threshold
SCORE_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)
NONE = "none"  # label value when a field is absent (an alert without a dossier)
OTHER = "other"  # label value past a LabelCap


class LabelCap:
    """Passes the first ``limit`` distinct values of a label through, then ``"other"``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if not value:
            return NONE
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value


def _weight(item: tuple[str, float]) -> float:
    return item[1]


class TopTerms:
    """The K terms with the highest recent rate, by event time; bounded memory.

    Counts decay with a half-life of event time (forward decay: a post at time t adds
    2^((t - t0)/h), so ranking needs no per-read decay). At most ``capacity`` candidate
    terms are kept; past it the weaker half is dropped. Exposed as the only series with a
    term label, ``seismo_top_terms_posts_per_minute{term}``: K series per scrape.
    """

    NAME = "seismo_top_terms_posts_per_minute"
    LABELS = ("term",)

    def __init__(self, k: int = 10, capacity: int = 5000, halflife_seconds: float = 900) -> None:
        self.k = k
        self.capacity = capacity
        self.halflife = halflife_seconds
        self._weights: dict[str, float] = {}
        self._t0: float | None = None
        self._latest = -math.inf

    def add(self, terms: Iterable[str], event_ts: float) -> None:
        if self._t0 is None:
            self._t0 = event_ts
        exponent = (event_ts - self._t0) / self.halflife
        if exponent > 500:  # rescale before floats overflow
            factor = 2.0**-exponent
            self._weights = {t: w * factor for t, w in self._weights.items()}
            self._t0, exponent = event_ts, 0.0
        w = 2.0**exponent
        for t in terms:
            self._weights[t] = self._weights.get(t, 0.0) + w
        self._latest = max(self._latest, event_ts)
        if len(self._weights) > self.capacity:
            keep = heapq.nlargest(self.capacity // 2, self._weights.items(), key=_weight)
            self._weights = dict(keep)

    def top(self) -> list[tuple[str, float]]:
        """(term, posts per minute of event time as of the newest event), highest first."""
        if self._t0 is None:
            return []
        best = heapq.nlargest(self.k, self._weights.items(), key=_weight)
        # decayed count of a steady rate r is r * h / ln 2
        scale = 2.0 ** (-(self._latest - self._t0) / self.halflife) * math.log(2) / self.halflife
        return [(t, w * scale * 60) for t, w in best]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.NAME,
            "The K terms with the highest recent rate: posts per minute (event time, "
            "exponentially decayed) as of the newest event",
            labels=list(self.LABELS),
        )

    def describe(self) -> Iterator[Metric]:
        """Lets the registry know the name (and refuse a second registration)."""
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        fam = self._family()
        for term, rate in self.top():
            fam.add_metric([term], rate)
        yield fam


class ConsumerOffsets:
    """``seismo_consumer_end_offset``, ``seismo_consumer_committed_offset`` and
    ``seismo_consumer_lag`` per topic partition this worker holds, read from the consumer
    when Prometheus scrapes (nothing is counted per record).

    ``read`` returns (topic, partition, end offset, committed offset) for every partition
    held; either offset may be None while unknown (before the first fetch or commit), and
    the lag is exported only when both are known.
    """

    NAMES = (
        "seismo_consumer_end_offset",
        "seismo_consumer_committed_offset",
        "seismo_consumer_lag",
    )

    def __init__(self, read: Callable[[], Iterable[tuple[str, int, int | None, int | None]]]):
        self.read = read

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        end, committed, lag = self.NAMES
        labels = ["topic", "partition"]
        return (
            GaugeMetricFamily(
                end, "The next offset to be written, as the consumer last saw it", labels=labels
            ),
            GaugeMetricFamily(
                committed,
                "The group's committed offset (the next record to read after a restart)",
                labels=labels,
            ),
            GaugeMetricFamily(
                lag, "Records not committed yet: end offset - committed offset", labels=labels
            ),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        end_f, committed_f, lag_f = self._families()
        for topic, partition, end, committed in self.read():
            labels = [topic, str(partition)]
            if end is not None:
                end_f.add_metric(labels, end)
            if committed is not None:
                committed_f.add_metric(labels, committed)
            if end is not None and committed is not None:
                lag_f.add_metric(labels, max(end - committed, 0))
        yield from (end_f, committed_f, lag_f)


class _OpenAlert(NamedTuple):
    """What the open-alert gauges hold of one open alert (its newest version seen)."""

    version: int
    severity: str
    dossier: str  # label value
    kind: str
    score: float


# The processes that own a series without labels. Such a series shows 0 from the start, so
# a process that never sets it would export a misleading 0: only its owner exports it.
# Labelled series appear only once a process sets them, so every process may hold them.
Owner = Literal["worker", "live"]


class Metrics:
    """All seismo_* series of one process (see README, "Metrics", for the table).

    ``process``: the kind of process, which exports its own series without labels:
    ``worker``, ``live`` (the live page), ``None`` for the others (connectors, tools), or
    ``all`` for every series (tests, the README table).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        label_cap: int = 200,
        process: Owner | Literal["all"] | None = None,
    ) -> None:
        self.registry = registry
        self.source = LabelCap(64)
        self.dossier = LabelCap(label_cap)
        self.claim = LabelCap(label_cap)
        self.top_terms = TopTerms()
        registry.register(self.top_terms)
        # open alerts by id, for seismo_alerts_open / seismo_burst_score_max; an entry goes
        # on resolve, into a bounded memory of resolved ids (a repeat must not count again)
        self._open: dict[str, _OpenAlert] = {}
        self._resolved: OrderedDict[str, int] = OrderedDict()
        self._resolved_cap = 4096

        def mine(owner: Owner | None) -> CollectorRegistry | None:
            # another process's series is still there to set, but not registered (not exported)
            return registry if owner is None or process in ("all", owner) else None

        def counter(name: str, doc: str, labels: list[str], owner: Owner | None = None) -> Counter:
            return Counter(name, doc, labels, registry=mine(owner))

        def gauge(name: str, doc: str, labels: list[str], owner: Owner | None = None) -> Gauge:
            return Gauge(name, doc, labels, registry=mine(owner))

        def histogram(
            name: str, doc: str, labels: list[str], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        # --- stages (ingest, detect, deliver): throughput, failures, latency -------------
        self.posts_in = counter(
            "seismo_posts_in_total", "Records consumed, by stage and source", ["stage", "source"]
        )
        self.posts_out = counter(
            "seismo_posts_out_total", "Records produced, by stage and source", ["stage", "source"]
        )
        self.dlq = counter(
            "seismo_dlq_total",
            "Records sent to a dead-letter topic, by stage (deliver: alerts.dlq.v1, "
            "the others: dlq.v1)",
            ["stage"],
        )
        self.duplicates = counter(
            "seismo_duplicates_skipped_total",
            "Redelivered records recognised and skipped",
            ["stage"],
        )
        self.latency = histogram(
            "seismo_processing_latency_seconds",
            "Wall-clock seconds from ingestion to the end of a stage",
            ["stage"],
            LATENCY_BUCKETS,
        )
        self.event_time = gauge(
            "seismo_event_time_seconds",
            "Event time (unix seconds) of the newest record a stage processed; "
            "time() minus it is the stage's event-time lag",
            ["stage"],
        )
        self.last_processed = gauge(
            "seismo_last_processed_timestamp_seconds",
            "Wall-clock unix time a stage last finished a record (stall detection)",
            ["stage"],
        )
        self.rebalances = counter(
            "seismo_rebalances_total",
            "Consumer group rebalances this worker completed",
            [],
            owner="worker",
        )
        self.too_late = counter(
            "seismo_detector_too_late_total",
            "Posts not counted by the detector: further behind its current bucket than "
            "detector.max_lateness_seconds, by posts.classified.v1 partition",
            ["partition"],
        )
        self.detector_watched = gauge(
            "seismo_detector_watched_seconds",
            "Event time the detector has watched since its first post (to the start of its "
            "current bucket), by posts.classified.v1 partition: it raises nothing before "
            "detector.warmup_seconds",
            ["partition"],
        )
        self.merge_late = counter(
            "seismo_merge_late_total",
            "Posts the detector's merge of the raw partitions released after a later one: "
            "stamped before a progress marker's bound (merge_slack_seconds too short)",
            [],
            owner="worker",
        )
        self.merge_forced = counter(
            "seismo_merge_forced_total",
            "Posts the merge released without waiting for every raw partition: more than "
            "detector.merge_max_buffered were waiting",
            [],
            owner="worker",
        )
        self.merge_buffered = gauge(
            "seismo_merge_buffered_posts",
            "Posts waiting in the detector's merge for a raw partition to catch up",
            [],
            owner="worker",
        )
        self.signals = counter(
            "seismo_signals_total",
            "Burst-key observations the detect stage counts, by kind (term, dossier, claim, "
            "stance)",
            ["kind"],
        )

        # --- trends a newsroom watches (labels from the watchlist) -----------------------
        self.dossier_posts = counter(
            "seismo_dossier_posts_total", "Classified posts per dossier", ["dossier"]
        )
        self.claim_posts = counter(
            "seismo_claim_posts_total",
            "Posts on a tracked claim, by claim, its dossier and the post's stance",
            ["claim", "dossier", "stance"],
        )

        # --- classifier models (issue 4) -------------------------------------------------
        self.classify_batch = histogram(
            "seismo_classify_batch_size",
            "Posts per classifier call, by classifier",
            ["classifier"],
            BATCH_BUCKETS,
        )
        self.classify_latency = histogram(
            "seismo_classify_latency_seconds",
            "Seconds per classifier call (one batch), by classifier",
            ["classifier"],
            LATENCY_BUCKETS,
        )

        # --- detector and alerts (issue 5) -----------------------------------------------
        self.burst_score = histogram(
            "seismo_burst_score",
            "Burst scores (-log10 p) of alerts raised (and of keys tested, where the "
            "detector reports them), by signal kind",
            ["kind"],
            SCORE_BUCKETS,
        )
        self.burst_score_max = gauge(
            "seismo_burst_score_max",
            "Highest burst score of the alerts open now, per signal kind and dossier "
            "(0 when none is open)",
            ["kind", "dossier"],
        )
        self.detector_checkpoint_bytes = gauge(
            "seismo_detector_checkpoint_bytes",
            "Size of the last detector checkpoint (compressed), by posts.classified.v1 partition",
            ["partition"],
        )
        self.detector_keys = gauge(
            "seismo_detector_keys",
            "Burst keys the detector holds by name (watchlist keys with exact cells plus "
            "emerging candidates), over the partitions of this worker",
            [],
            owner="worker",
        )
        self.alert_events = counter(
            "seismo_alerts_total",
            "Alert lifecycle events (open, update, resolved) by kind, severity and dossier",
            ["kind", "severity", "status", "dossier"],
        )
        self.alerts_open = gauge(
            "seismo_alerts_open",
            "Alerts open now, by severity and dossier",
            ["severity", "dossier"],
        )

        # --- delivery (issue 6) ----------------------------------------------------------
        self.deliveries = counter(
            "seismo_alert_deliveries_total",
            "Alert deliveries, by sink and outcome (ok, failed, coalesced)",
            ["sink", "outcome"],
        )
        self.delivery_attempts = counter(
            "seismo_delivery_attempts_total",
            "Delivery attempts (HTTP requests) by sink and result (2xx, 4xx, 5xx, timeout, error)",
            ["sink", "result"],
        )
        self.delivery_latency = histogram(
            "seismo_delivery_latency_seconds",
            "Seconds to deliver one alert to one HTTP sink, retries included (delivered only)",
            ["sink"],
            LATENCY_BUCKETS,
        )
        self.live_clients = gauge(
            "seismo_live_clients", "Clients connected to the live alert page", [], owner="live"
        )

        # --- connectors (issue 3), label source ------------------------------------------
        self.connector_events = counter(
            "seismo_connector_events_total",
            "Connector events by source and outcome: received, produced, skipped (malformed), "
            "duplicate, and items not forwarded (deleted, dead, missing, ignored)",
            ["source", "outcome"],
        )
        self.connector_reconnects = counter(
            "seismo_connector_reconnects_total", "Connector reconnects, by source", ["source"]
        )
        self.connector_errors = counter(
            "seismo_connector_errors_total", "Connector errors (any kind), by source", ["source"]
        )
        self.connector_gaps = counter(
            "seismo_connector_gaps_total",
            "Times the upstream could not resume exactly at a connector's cursor "
            "(data may be missing), by source",
            ["source"],
        )
        self.connector_up = gauge(
            "seismo_connector_up", "1 while a connector runs, by source", ["source"]
        )
        self.connector_lag = gauge(
            "seismo_connector_lag_seconds",
            "Wall clock minus event time of the newest event a connector produced",
            ["source"],
        )
        self.connector_cursor = gauge(
            "seismo_connector_cursor",
            "Connector cursor position (firehose seq, last id or unix time; source-specific)",
            ["source"],
        )
        self.connector_last_event = gauge(
            "seismo_connector_last_event_timestamp_seconds",
            "Wall-clock unix time a connector last produced an event (stall detection)",
            ["source"],
        )

    # --- one-line helpers for the stages -------------------------------------------------

    def stage_done(self, stage: str, event_ts: float, ingest_latency: float | None) -> None:
        """A stage finished one record with event time ``event_ts`` (unix seconds)."""
        self.event_time.labels(stage).set(event_ts)
        self.last_processed.labels(stage).set_to_current_time()
        if ingest_latency is not None:
            self.latency.labels(stage).observe(ingest_latency)

    def classified(self, cp: ClassifiedPost) -> None:
        """Trend series of one classified post: dossiers, claims, stances, top terms."""
        self.top_terms.add(cp.terms, cp.post.created_at.timestamp())
        for d in cp.dossiers:
            self.dossier_posts.labels(self.dossier(d)).inc()
        for hit in cp.claims:
            self.claim_posts.labels(
                self.claim(hit.claim), self.dossier(hit.dossier), hit.stance
            ).inc()

    def alert(self, alert: Alert) -> None:
        """One alert event (a new alert, an update or a resolution) left the detector.

        Idempotent per (id, version): the detect stage may send a version again (a replay
        after a restart or a rebalance); a version not newer than the last seen is ignored.
        """
        prev = self._open.get(alert.id)
        if not self._newer(alert, prev):
            return
        dossier = self.dossier(alert.dossier)
        self.alert_events.labels(alert.kind, alert.severity, alert.status, dossier).inc()
        self.burst_score.labels(alert.kind).observe(alert.score)
        self._track_open(alert, dossier, prev)

    def alert_restored(self, alert: Alert) -> None:
        """An alert open in a detector restored from its checkpoint: it enters the open-alert
        gauges (a restarted worker shows what is open), but is not counted as an event."""
        prev = self._open.get(alert.id)
        if self._newer(alert, prev):
            self._track_open(alert, self.dossier(alert.dossier), prev)

    def _newer(self, alert: Alert, prev: _OpenAlert | None) -> bool:
        """Whether ``alert`` is a newer version than this process has seen of it."""
        return alert.version > (prev.version if prev else self._resolved.get(alert.id, 0))

    def _track_open(self, alert: Alert, dossier: str, prev: _OpenAlert | None) -> None:
        """Follow one alert's lifecycle in the open-alert gauges (``prev``: its last state)."""
        if prev is not None:
            self.alerts_open.labels(prev.severity, prev.dossier).dec()
            del self._open[alert.id]
        if alert.status == "resolved":
            self._resolved[alert.id] = alert.version
            if len(self._resolved) > self._resolved_cap:
                self._resolved.popitem(last=False)
        else:  # open or update (also a first sight of one opened before this process began)
            now = _OpenAlert(alert.version, alert.severity, dossier, alert.kind, alert.score)
            self._open[alert.id] = now
            self.alerts_open.labels(now.severity, now.dossier).inc()
        groups = {(alert.kind, dossier)} | ({(prev.kind, prev.dossier)} if prev else set())
        for kind, dos in groups:
            scores = [a.score for a in self._open.values() if (a.kind, a.dossier) == (kind, dos)]
            self.burst_score_max.labels(kind, dos).set(max(scores, default=0.0))

    def connector(self, source: str, outcome: str, n: int = 1) -> None:
        """Count ``n`` connector events; ``produced`` also stamps the stall gauge."""
        src = self.source(source)
        self.connector_events.labels(src, outcome).inc(n)
        if outcome == "produced":
            self.connector_last_event.labels(src).set_to_current_time()


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> None:
    """Serve ``registry`` at http://host:port/metrics from a daemon thread.

    For processes without the Faust web server (connectors); port 0 turns it off.
    """
    if port:
        with binding(host, port):
            start_http_server(port, addr=host, registry=registry)
        log.info("metrics on http://%s:%d/metrics", host, port)
