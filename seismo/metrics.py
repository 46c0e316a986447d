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
        self.alert_versions = Counter(
            "seismo_alert_versions_total",
            "Alert lifecycle changes sent (open, update, resolved), by status and severity",
            ["status", "severity"],
            registry=registry,
        )
        self.detector_state_bytes = Gauge(
            "seismo_detector_checkpoint_bytes",
            "Size of the last detector checkpoint (compressed)",
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
