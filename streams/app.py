"""The Faust application: one app per worker process, built from Settings."""

from __future__ import annotations

import faust
from prometheus_client import CollectorRegistry, ProcessCollector

from seismo.config import Settings
from seismo.kafka import ACKS_ALL, bootstrap_of


def create_app(settings: Settings) -> faust.App:
    fast = settings.worker_fast_join
    brokers = [f"kafka://{h.strip()}" for h in bootstrap_of(settings).split(",") if h.strip()]
    return faust.App(
        settings.group_id,
        broker=brokers,
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        producer_acks=ACKS_ALL,
        producer_linger=settings.worker_linger_ms / 1000.0,
        store="memory://",
        datadir=str(settings.data_dir / "worker" / settings.group_id),
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        broker_session_timeout=10.0 if fast else 60.0,
        broker_heartbeat_interval=1.0 if fast else 3.0,
        broker_rebalance_timeout=10.0 if fast else 60.0,
        broker_commit_interval=1.0,
        table_standby_replicas=0,
    )


def new_registry() -> CollectorRegistry:
    """The worker's metrics registry, with the standard ``process_*`` metrics of its process
    (CPU seconds, resident memory, open files, start time)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry
