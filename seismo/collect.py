"""Wait for the pipeline to drain and collect the alerts it raised (``replay --alerts-out``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from seismo.config import Settings
from seismo.contracts import ALERTS, POSTS_CLASSIFIED, POSTS_RAW, Alert, decode
from seismo.errors import ContractError, SeismoError
from seismo.kafka import bootstrap_of, end_offsets, group_lag
from streams.params import DetectorParams

log = logging.getLogger(__name__)


async def alert_end_offsets(settings: Settings) -> dict[int, int]:
    """End offset per partition of the alerts topic (where new alerts will start)."""
    ends = await end_offsets(bootstrap_of(settings), [settings.topic(ALERTS)])
    return {tp.partition: off for tp, off in ends.items()}


def consumed_topics(settings: Settings) -> dict[str, str]:
    """The pipeline's topics the worker group reads, by stage: ``raw``, ``classified`` (only
    with several raw partitions: with one, ingest counts its posts itself and nobody reads
    it), ``alerts``; the contract names, without the namespace."""
    stages = {"raw": POSTS_RAW, "classified": POSTS_CLASSIFIED, "alerts": ALERTS}
    if settings.raw_partitions == 1:
        del stages["classified"]
    return stages


async def wait_drained(
    settings: Settings,
    *,
    timeout: float = 600.0,
    poll: float = 1.0,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> None:
    """Block until the worker group has committed everything on the pipeline's topics.

    ``progress`` gets the records still pending per stage (``raw``, ``classified``,
    ``alerts``); their sum is not monotonic, since records move from one stage to the next.
    """
    stages = consumed_topics(settings)
    deadline = time.monotonic() + timeout
    zero_in_a_row = 0
    lag = -1
    while time.monotonic() < deadline:
        per_topic = await group_lag(
            bootstrap_of(settings), settings.group_id, [settings.topic(t) for t in stages.values()]
        )
        pending = {stage: per_topic[settings.topic(t)] for stage, t in stages.items()}
        lag = sum(pending.values())
        if progress is not None:
            progress(pending)
        zero_in_a_row = zero_in_a_row + 1 if lag == 0 else 0
        if zero_in_a_row >= 2:
            return
        await asyncio.sleep(poll)
    raise SeismoError(
        f"the pipeline did not drain within {timeout:.0f}s ({lag} records pending for group "
        f"{settings.group_id!r}); is a worker running (`seismo worker` or `seismo run`)?"
    )


def pending_line(pending: dict[str, int]) -> str:
    """``12,345 records pending (raw 12,000, classified 345, alerts 0)``."""
    stages = ", ".join(f"{stage} {n:,}" for stage, n in pending.items())
    return f"{sum(pending.values()):,} records pending ({stages})"


async def read_alerts(settings: Settings, start: dict[int, int]) -> list[Alert]:
    """Alert versions in the alerts topic from ``start`` offsets up to its current end."""
    topic = settings.topic(ALERTS)
    ends = await alert_end_offsets(settings)
    if all(ends[p] <= start.get(p, 0) for p in ends):
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_of(settings), enable_auto_commit=False)
    await consumer.start()
    alerts: dict[tuple[str, int], Alert] = {}  # one per (id, version): a redelivery is dropped
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start.get(tp.partition, 0))
        remaining = {tp for tp in tps if ends[tp.partition] > start.get(tp.partition, 0)}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for rec in records:
                    try:
                        a = decode(Alert, rec.value)
                    except ContractError as exc:
                        log.warning("skipping unreadable alert at offset %s: %s", rec.offset, exc)
                        continue
                    alerts.setdefault((a.id, a.version), a)
                if await consumer.position(tp) >= ends[tp.partition]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return sorted(alerts.values(), key=lambda a: (a.raised_at, a.key, a.version))


# what the worker did with the posts, from its counters: (sample, stages summed; () = all)
_WORKER_COUNTS = {
    "processed": ("seismo_posts_out_total", ("ingest",)),
    "dead_lettered": ("seismo_dlq_total", ("ingest", "detect")),
    "duplicates": ("seismo_duplicates_skipped_total", ("detect",)),
    "too_late": ("seismo_detector_too_late_total", ()),
}


# ...and what it has watched: (sample; the largest over the partitions)
_WORKER_GAUGES = {"watched_seconds": "seismo_detector_watched_seconds"}

# when its process started (wall clock, Unix seconds): a worker whose metrics could not be
# read when the replay began, and which started about then, counted the replay from zero
_STARTED = "process_start_time_seconds"
STARTUP_SECONDS = 120.0  # a worker starting this long before its metrics answer


def worker_metrics_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.web_host in ("", "0.0.0.0", "::") else settings.web_host
    return f"http://{host}:{settings.web_port}/metrics"


def worker_counts_of(text: str) -> dict[str, int]:
    """The counts of :data:`_WORKER_COUNTS` and the gauges of :data:`_WORKER_GAUGES` in a
    Prometheus text exposition, and ``started``, its process start time, when exposed."""
    out = dict.fromkeys([*_WORKER_COUNTS, *_WORKER_GAUGES], 0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == _STARTED:
                out["started"] = int(sample.value)
            for what, (name, stages) in _WORKER_COUNTS.items():
                if sample.name == name and (not stages or sample.labels.get("stage") in stages):
                    out[what] += int(sample.value)
            for what, name in _WORKER_GAUGES.items():
                if sample.name == name:
                    out[what] = max(out[what], int(sample.value))
    return out


async def worker_counts(settings: Settings) -> dict[str, int] | str:
    """The worker's counts now (its ``/metrics`` at ``web_port``), or why there are none."""
    url = worker_metrics_url(settings)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url) as resp,
        ):
            resp.raise_for_status()
            return worker_counts_of(await resp.text())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return f"no worker metrics at {url} ({type(exc).__name__}: {exc})".replace(": )", ")")


def worker_report(
    before: dict[str, int] | str,
    after: dict[str, int] | str,
    lateness: int,
    began: float | None = None,
) -> dict[str, Any]:
    """What the worker did during the replay: its counts' growth, and a note per kind of
    post that raised no alert. Counts cover all the worker's traffic in that time.

    ``began``: when ``before`` was asked (wall clock). A worker whose metrics did not
    answer then but which started at most :data:`STARTUP_SECONDS` before it (it was still
    starting) has counted everything since from zero."""
    fresh = None
    if (
        isinstance(before, str)
        and isinstance(after, dict)
        and began is not None
        and after.get("started", 0) >= began - STARTUP_SECONDS
    ):
        fresh = f"counted since the worker started (when the replay began: {before})"
        before = {**dict.fromkeys(_WORKER_COUNTS, 0), "started": after["started"]}
    if isinstance(before, str) or isinstance(after, str):
        return {"unknown": before if isinstance(before, str) else after}
    counts = {k: after[k] - before[k] for k in _WORKER_COUNTS}
    if any(n < 0 for n in counts.values()) or before.get("started") != after.get("started"):
        return {"unknown": "the worker restarted during the replay (its counters began again)"}
    notes = {
        "dead_lettered": "posts the worker put on dlq.v1 (see the reason of each record there)",
        "duplicates": "posts skipped as already seen: the detector counted the same post key "
        "before (a replay of the same file, or overlapping files, in this namespace)",
        "too_late": f"posts not counted: more than {lateness}s (detector.max_lateness_seconds) "
        "behind the detector's event time (a file older than one replayed before in this "
        "namespace; use a fresh --namespace to replay it)",
    }
    return {
        **counts,
        **{k: after[k] for k in _WORKER_GAUGES},
        "notes": [f"{counts[k]:,} {why}" for k, why in notes.items() if counts[k]]
        + ([fresh] if fresh else []),
    }


def why_no_alerts(report: dict[str, Any], params: DetectorParams) -> str:
    """Why a replay raised no alert, from what the worker did meanwhile
    (:func:`worker_report`), the worker's detector settings being ``params``."""
    if "unknown" in report:
        return f"the worker's counts are unknown: {report['unknown']}"
    if report["processed"] <= report["duplicates"] + report["too_late"]:  # (all skipped)
        why = "; ".join(report["notes"]) or "the worker classified none of them"
        return f"none of these posts was counted by the detector ({why})"
    watched, warmup = report.get("watched_seconds", 0), params.scale_warmup(1)
    if watched < warmup:
        return (
            f"the detector has watched {_duration(watched)} of event time and raises nothing "
            f"in its first {_duration(warmup)} (detector.warmup_seconds, warmup_buckets)"
        )
    return (
        "no word, phrase or tracked key of these posts rose far enough above its own "
        f"baseline (detector.min_score {params.min_score:g}): a quiet stream raises none"
    )


def _duration(seconds: float) -> str:
    """``2 h``, ``1 h 25 min``, ``40 min``, ``0 min``."""
    minutes = int(seconds // 60)
    h, m = divmod(minutes, 60)
    if not h:
        return f"{m} min"
    return f"{h} h" if not m else f"{h} h {m} min"
