"""Prometheus metrics, created against a registry passed in (tests use their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """All seismo_* series of one process. Labels are bounded: stage, source, kind, outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.posts_in = Counter(
            "seismo_posts_in_total",
            "Records consumed, by stage and source",
            ["stage", "source"],
            registry=registry,
        )
        self.posts_out = Counter(
            "seismo_posts_out_total",
            "Records produced, by stage and source",
            ["stage", "source"],
            registry=registry,
        )
        self.dlq = Counter(
            "seismo_dlq_total",
            "Records sent to the dead-letter topic, by stage",
            ["stage"],
            registry=registry,
        )
        self.signals = Counter(
            "seismo_signals_total",
            "Burst-key observations emitted, by kind",
            ["kind"],
            registry=registry,
        )
        self.duplicates = Counter(
            "seismo_duplicates_skipped_total",
            "Redelivered records recognised and skipped",
            ["stage"],
            registry=registry,
        )
        self.alerts = Counter(
            "seismo_alerts_raised_total",
            "Alerts raised, by kind",
            ["kind"],
            registry=registry,
        )
        self.deliveries = Counter(
            "seismo_alert_deliveries_total",
            "Alert deliveries, by sink and outcome",
            ["sink", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "seismo_processing_latency_seconds",
            "Wall-clock seconds from ingestion to the end of a stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class ConnectorMetrics:
    """A connector process's series; label ``source`` is one of a handful of platforms."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "seismo_connector_events_total",
            "Upstream items by source and outcome (received, produced, skipped, duplicate; "
            "items not forwarded: deleted, dead, missing, ignored)",
            ["source", "outcome"],
            registry=registry,
        )
        self.reconnects = Counter(
            "seismo_connector_reconnects_total",
            "Reconnects after an upstream error or disconnect",
            ["source"],
            registry=registry,
        )
        self.gaps = Counter(
            "seismo_connector_gaps_total",
            "Times the upstream could not resume exactly at our cursor (data may be missing)",
            ["source"],
            registry=registry,
        )
        self.lag = Gauge(
            "seismo_connector_lag_seconds",
            "Wall-clock now minus the event time of the newest post produced",
            ["source"],
            registry=registry,
        )
        self.cursor = Gauge(
            "seismo_connector_cursor",
            "Position of the last saved cursor (time_us, seq or item id, per source)",
            ["source"],
            registry=registry,
        )
        self.up = Gauge(
            "seismo_connector_up",
            "1 while the connector runs",
            ["source"],
            registry=registry,
        )
