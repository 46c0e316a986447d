"""Builds a worker (app + agents + sinks) from Settings and runs it until stopped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from models.classifier import build_classifier
from seismo.config import Settings
from seismo.kafka import TopicSpec, ensure_topics
from seismo.metrics import ConsumerOffsets, Metrics
from seismo.ports import require_free
from seismo.watchlist import load_watchlist
from streams import core, faust_fixes
from streams.agents import Stages, register
from streams.app import create_app, new_registry
from streams.delivery import AlertSinks, sinks_from_settings
from streams.pipeline import detector_params

log = logging.getLogger(__name__)


def build_worker(settings: Settings) -> tuple[faust.App, Stages, AlertSinks]:
    faust_fixes.apply()
    watchlist = load_watchlist(settings.watchlist)
    registry = new_registry()
    metrics = Metrics(registry, process="worker")
    app = create_app(settings)
    registry.register(ConsumerOffsets(lambda: consumer_offsets(app)))
    if settings.faust_metrics:
        setup_prometheus_sensors(
            app, pattern="/metrics", registry=registry, name_prefix="seismo_faust"
        )
    else:
        serve_registry(app, registry)

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # mode types want a sync receiver
    async def _count_rebalance(sender: Any, *args: Any, **kwargs: Any) -> None:
        metrics.rebalances.inc()

    sinks = sinks_from_settings(settings, metrics, watchlist)
    stages = register(
        app,
        settings,
        metrics,
        build_classifier(
            watchlist,
            mode=settings.classifier,
            max_terms=settings.max_terms_per_post,
            artifacts=settings.model_dir,
            threads=settings.model_threads,
        ),
        detector_params(settings),
        sinks,
    )

    @app.page("/healthz")
    async def healthz(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # the partitions this worker holds now, e.g. {"alerts.v1": [0, 2]}: which worker of a
        # group does what (changelog partitions of standby/active tables included)
        held: dict[str, list[int]] = {}
        for tp in sorted(app.consumer.assignment()):
            held.setdefault(tp.topic, []).append(tp.partition)
        return self.json({"status": "ok", "app": settings.group_id, "partitions": held})

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types want a sync receiver
    async def _close_sinks(app: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        await sinks.close()

    return app, stages, sinks


def serve_registry(app: faust.App, registry: CollectorRegistry) -> None:
    """``/metrics`` on the worker's web server: Prometheus text of ``registry``."""

    @app.page("/metrics")
    async def metrics_page(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        body = generate_latest(registry)
        return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])


def consumer_offsets(app: faust.App) -> list[tuple[str, int, int | None, int | None]]:
    """(topic, partition, end offset, committed offset) of each partition the worker's
    consumer holds; None where it does not know yet (or the consumer is not running)."""
    try:
        consumer = app.consumer
        held = sorted(consumer.assignment())
    except Exception:  # not started, or stopping: nothing to report
        return []
    # faust's record of the offsets it committed (no public accessor)
    committed: dict[Any, int | None] = getattr(consumer, "_committed_offset", {})
    out = []
    for tp in held:
        try:
            end: int | None = consumer.highwater(tp)
        except Exception:  # no fetch for this partition yet
            end = None
        out.append((tp.topic, tp.partition, end, committed.get(tp)))
    return out


def faust_topics(app: faust.App) -> list[TopicSpec]:
    """The topics Faust creates as it starts, as it would create them: each table's
    changelog (the table's partition count, compacted) and its leader-election topic."""
    specs = []
    for table in app.tables.values():
        changelog = table.changelog_topic
        configs = {"cleanup.policy": "compact"} if changelog.compacting else {}
        partitions = table.partitions or app.conf.topic_partitions
        specs.append(TopicSpec(changelog.get_topic_name(), partitions, configs))
    # faust.assignor.LeaderAssignor._leader_topic: one partition
    specs.append(TopicSpec(f"{app.conf.id}-__assignor-__leader", 1))
    return specs


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Create topics, then run the Faust worker in the foreground (Ctrl-C stops it)."""
    # Faust binds its web server deep in its startup and ends in a traceback if it can't
    require_free(settings.web_host, settings.web_port)
    (settings.data_dir / "worker").mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app, _, _ = build_worker(settings)
    # Every topic the worker reads, the changelogs too, exists with its partitions before
    # Faust starts: a changelog Faust created as it started could be seen by its consumer
    # with 0 partitions, and every record then failed with PartitionsMismatch.
    loop.run_until_complete(ensure_topics(settings, extra=faust_topics(app)))
    core.tune_gc()
    log.info(
        "worker %s starting; web on http://%s:%d (metrics at /metrics)",
        settings.group_id,
        settings.web_host,
        settings.web_port,
    )
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
