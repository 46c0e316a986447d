"""Send the alert deliveries parked on ``alerts.dlq.v1`` again (``seismo alerts redeliver``).

The dead-letter topic is read with its own consumer group (``<group>.redeliver``) from the
group's committed offsets up to the end the topic had when the run started. Each record is
sent to its sink again (same body, same Idempotency-Key, so the receiver sees one accepted
delivery per alert version); its offset is committed once it was delivered or, when it fails
again, once it was put back on the topic with ``redeliveries`` + 1. A second run therefore
sends nothing twice, and a record never disappears without being delivered.

A dry run sends and commits nothing; it tells for each record what a real run would do:
``would_send`` (its sink is configured) or ``would_fail`` (it is not any more), or why it
would be skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata

from seismo.config import Settings
from seismo.contracts import ALERTS_DLQ, Alert, FailedDelivery, decode
from seismo.errors import ContractError
from seismo.kafka import bootstrap_of, end_offsets, make_producer
from streams.delivery import (
    AlertSinks,
    DeliveryFailure,
    FileSink,
    HttpSink,
    failed_delivery,
)

log = logging.getLogger(__name__)


@dataclass
class RedeliverStats:
    read: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    would_send: int = 0  # dry runs only
    would_fail: int = 0
    dry_run: bool = False
    items: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        """The tally; the ``would_*`` counts only for a dry run."""
        d = asdict(self)
        d.pop("items")
        if not d.pop("dry_run"):
            del d["would_send"], d["would_fail"]
        return d


def redeliver_group(settings: Settings) -> str:
    return f"{settings.group_id}.redeliver"


async def redeliver(
    settings: Settings,
    sinks: AlertSinks,
    *,
    to: str | None = None,
    dry_run: bool = False,
    group: str | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> RedeliverStats:
    """Redeliver every parked delivery not yet handled by ``group``; returns the tally.

    ``sinks`` are the configured sinks (a record is sent to the one it failed on); with
    ``to``, webhook records go to that URL instead (it must be among ``sinks``).
    """
    topic = settings.topic(ALERTS_DLQ)
    bootstrap = bootstrap_of(settings)
    ends = {tp: end for tp, end in (await end_offsets(bootstrap, [topic])).items() if end > 0}
    stats = RedeliverStats(dry_run=dry_run)
    if not ends:
        progress(f"{topic} is empty: nothing to redeliver")
        return stats
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group or redeliver_group(settings),
        enable_auto_commit=False,
    )
    producer = make_producer(settings, "redeliver")
    await consumer.start()
    await producer.start()
    done: set[tuple[str, int, str, str]] = set()
    try:
        consumer.assign(list(ends))
        pending = 0
        for tp, end in ends.items():
            committed = await consumer.committed(tp)
            start = committed if committed is not None else 0
            consumer.seek(tp, start)
            pending += max(end - start, 0)
        progress(f"{pending} parked deliveries to look at on {topic}")
        remaining = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= ends[tp]:
                        break
                    stats.read += 1
                    outcome = await _one(rec.value, sinks, producer, topic, to, dry_run, done)
                    stats.items.append(outcome)
                    setattr(stats, outcome["outcome"], getattr(stats, outcome["outcome"]) + 1)
                    progress(
                        f"[{stats.read}/{pending}] {outcome.get('request', '?')} -> "
                        f"{outcome.get('target', '?')}: {outcome['outcome'].replace('_', ' ')}"
                        + (f" ({outcome['reason']})" if outcome.get("reason") else "")
                    )
                    if not dry_run:
                        await consumer.commit({tp: OffsetAndMetadata(rec.offset + 1, "")})
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await sinks.close()
        await producer.stop()
        await consumer.stop()
    return stats


async def _one(
    value: bytes | None,
    sinks: AlertSinks,
    producer: AIOKafkaProducer,
    topic: str,
    to: str | None,
    dry_run: bool,
    done: set[tuple[str, int, str, str]],
) -> dict[str, Any]:
    try:
        fd = decode(FailedDelivery, value or b"")
        alert = decode(Alert, fd.alert)
    except ContractError as exc:
        log.warning("skipping unreadable parked delivery: %s", exc)
        return {"outcome": "skipped", "reason": exc.reason}
    sink = _sink_for(fd, sinks, to)
    item: dict[str, Any] = {
        "request": f"{alert.id}.v{alert.version}",
        "sink": fd.sink,
        "target": sink.target if sink is not None else fd.target,
    }
    ident = (alert.id, alert.version, fd.sink, item["target"])
    if ident in done:  # parked twice (e.g. after a crash): one delivery is enough
        return {**item, "outcome": "skipped", "reason": "already redelivered in this run"}
    failure: DeliveryFailure | None
    if sink is None:
        gone = f"{fd.sink} {fd.target} is not configured any more"
        if dry_run:
            return {**item, "outcome": "would_fail", "reason": gone}
        failure = DeliveryFailure(fd.sink, fd.target, gone, 0)
    elif dry_run:
        done.add(ident)  # like a delivery: a second copy in this run would be skipped
        return {**item, "outcome": "would_send"}
    else:
        failure = await sinks.deliver_to(sink, alert, fd.alert)
    if failure is None:
        done.add(ident)
        return {**item, "outcome": "sent"}
    again = failed_delivery(alert, fd.alert, failure, redeliveries=fd.redeliveries + 1)
    await producer.send_and_wait(topic, again.to_bytes(), key=alert.id.encode())
    return {**item, "outcome": "failed", "reason": failure.reason}


def _sink_for(fd: FailedDelivery, sinks: AlertSinks, to: str | None) -> HttpSink | FileSink | None:
    """The configured sink the delivery failed on (for webhooks: ``to`` instead, if given)."""
    if to is not None and fd.sink == "webhook":
        return sinks.find("webhook", to)
    return sinks.find(fd.sink, fd.target)
