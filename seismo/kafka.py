"""Kafka plumbing shared by every process: bootstrap choice, producers, topic creation,
group lag."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code
from aiokafka.structs import TopicPartition

from seismo.config import Settings
from seismo.contracts import ALL_TOPICS, DLQ
from seismo.errors import SeismoError

log = logging.getLogger(__name__)


def bootstrap_of(settings: Settings) -> str:
    """The external cluster when configured, else the embedded broker's address."""
    return settings.kafka_bootstrap or f"127.0.0.1:{settings.broker_port}"


# a write is acknowledged once every in-sync replica has it (acks=all; -1 is its number,
# the form Faust's ``producer_acks`` takes, in streams/app.py): with
# ``topic_min_insync_replicas`` of 2 or more an acknowledged record survives losing a broker
ACKS_ALL = -1

ProducerPurpose = Literal["connector", "replay", "redeliver"]

# the most a producer batches per partition before it sends (aiokafka's default is 16 KiB)
_BATCH_BYTES: dict[ProducerPurpose, int] = {
    "connector": 16 * 1024,
    "replay": 256 * 1024,
    "redeliver": 16 * 1024,
}
# how long a record may wait for its batch to fill
_LINGER_MS: dict[ProducerPurpose, int] = {"connector": 20, "replay": 20, "redeliver": 0}


def make_producer(settings: Settings, purpose: ProducerPurpose) -> AIOKafkaProducer:
    """An aiokafka producer to this deployment's Kafka (not started), for every process
    that writes records outside the Faust worker.

    Every one is idempotent with ``acks=all``: a retried send is written once, and a send
    is acknowledged only once every in-sync replica has it. ``purpose`` changes only the
    batching and names the client (``seismo-<purpose>``, as brokers log it):

    - ``connector``: live posts, a few at a time; they wait at most 20 ms for a batch.
    - ``replay``: a whole file as fast as Kafka takes it; batches of up to 256 KiB per
      partition (16x the default) carry the same posts in far fewer requests.
    - ``redeliver``: parks a failed delivery again one record at a time, waiting for each
      (``send_and_wait``), so a record does not linger for a batch that never fills.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_of(settings),
        client_id=f"seismo-{purpose}",
        acks=ACKS_ALL,
        enable_idempotence=True,
        linger_ms=_LINGER_MS[purpose],
        max_batch_size=_BATCH_BYTES[purpose],
    )


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    # Records carry their event time as timestamp (a replay of 2013 posts is "old"), so
    # time-based retention would delete them at once: retention is by size instead.
    cfg = {
        "retention.ms": "-1",
        "retention.bytes": str(settings.topic_retention_bytes),
        "message.timestamp.type": "CreateTime",
    }
    if name == DLQ:
        cfg["retention.bytes"] = str(max(settings.topic_retention_bytes // 4, 1 << 20))
    return cfg


@dataclass(frozen=True)
class TopicSpec:
    """A topic seismo creates: its full name, partition count and topic configs."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def pipeline_topics(settings: Settings) -> list[TopicSpec]:
    """The contract topics (``seismo/contracts.py``) as this deployment creates them."""
    return [
        TopicSpec(settings.topic(t), settings.partitions(t), topic_configs(settings, t))
        for t in ALL_TOPICS
    ]


async def ensure_topics(
    settings: Settings, timeout: float = 30.0, extra: Sequence[TopicSpec] = ()
) -> list[str]:
    """Create the pipeline's topics (and ``extra`` ones, e.g. the worker's changelogs) if
    missing, and wait until Kafka shows each with its partitions led; returns the ones
    created. Only seismo creates topics (the embedded broker does not auto-create them): a
    topic that exists with another partition count was made by something else, and is a
    SeismoError saying so, since the worker's tables can't work on it."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_of(settings), request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (KafkaConnectionError, TimeoutError) as exc:
        await admin.close()
        # a socket that accepts but never answers times out with an empty message
        reason = str(exc) or f"no answer within {timeout:g}s"
        raise SeismoError(
            f"cannot reach Kafka at {bootstrap_of(settings)}: {reason}. Start it with "
            "`seismo broker` (or `seismo run`), or set SEISMO_KAFKA_BOOTSTRAP."
        ) from exc
    except asyncio.CancelledError:  # stopped (Ctrl-C) while connecting
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 2.0)
        raise
    created: list[str] = []
    wanted = [*pipeline_topics(settings), *extra]
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs={
                    **spec.configs,
                    "min.insync.replicas": str(settings.topic_min_insync_replicas),
                },
            )
            for spec in wanted
            if spec.name not in existing
        ]
        if new:
            response = await admin.create_topics(new)
            created = created_topics(response.topic_errors)
            if created:
                log.info("created topics %s", ", ".join(created))
        await _wait_ready(admin, {spec.name: spec.partitions for spec in wanted}, timeout)
    finally:
        await admin.close()
    return created


async def _wait_ready(admin: AIOKafkaAdminClient, want: dict[str, int], timeout: float) -> None:
    """Until the metadata shows every topic of ``want`` with its partitions, each led.

    A topic just created can be listed for a moment with no partitions yet; a consumer that
    starts then reads it as 0 partitions (Faust: PartitionsMismatch on every record)."""
    deadline = time.monotonic() + timeout
    while True:
        pending: dict[str, str] = {}
        for d in await admin.describe_topics(list(want)):
            name, parts = d["topic"], d.get("partitions") or []
            if d.get("error_code") or not parts:
                pending[name] = "not visible yet"
            elif len(parts) != want[name]:
                raise SeismoError(
                    f"topic {name!r} has {len(parts)} partition(s), seismo creates it with "
                    f"{want[name]}: it was made by something else (e.g. a broker with "
                    "auto.create.topics.enable). Delete it, or use a fresh SEISMO_NAMESPACE."
                )
            elif any(p.get("error_code") or p.get("leader", 0) < 0 for p in parts):
                pending[name] = "partitions without a leader"
        if not pending:
            return
        if time.monotonic() >= deadline:
            detail = ", ".join(f"{n} ({why})" for n, why in sorted(pending.items()))
            raise SeismoError(f"Kafka did not make the topics ready within {timeout:g}s: {detail}")
        await asyncio.sleep(0.1)


def created_topics(topic_errors: list[tuple[Any, ...]]) -> list[str]:
    """The topics a CreateTopics response says were created.

    Each entry is ``(topic, error_code[, message])``. A topic that already exists was made
    by a concurrent creator (a worker and the live page start together): not an error, and
    not ours. Any other error (a bad config, too few brokers) stops here with the broker's
    own words, instead of surfacing later as a consumer that waits for a missing topic.
    """
    created: list[str] = []
    for topic, code, *message in topic_errors:
        if code == 0:
            created.append(topic)
        elif code != TopicAlreadyExistsError.errno:
            name = for_code(code).__name__
            detail = f": {message[0]}" if message and message[0] else ""
            raise SeismoError(f"Kafka refused to create topic {topic!r} ({name}{detail})")
    return created


def _partitions(described: list[dict[str, Any]]) -> list[TopicPartition]:
    """The partitions of the topics ``describe_topics`` found."""
    return [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if not d.get("error_code")
        for p in d["partitions"]
    ]


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    """The next offset to be written, for every partition of ``topics`` that exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    tps = _partitions(described)
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return ends
    finally:
        await consumer.stop()


class GroupOffsets:
    """End offsets of topics and the offsets a consumer group committed there, over one
    admin client and one consumer kept open between reads (:meth:`close` them)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self, topics: list[str]) -> dict[TopicPartition, tuple[int, int]]:
        """Per partition of ``topics``: (end offset, the offset committed; 0: none)."""
        if self._admin is None or self._consumer is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False
            )
            await self._admin.start()
            await self._consumer.start()
        tps = _partitions(await self._admin.describe_topics(topics))
        if not tps:
            return {}
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(self.group)
        out = {}
        for tp, end in ends.items():
            meta = committed.get(tp)
            out[tp] = (end, meta.offset if meta is not None and meta.offset >= 0 else 0)
        return out

    async def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()


async def group_offsets(
    bootstrap: str, group: str, topics: list[str]
) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition of ``topics``: (end offset, the offset ``group`` committed; 0: none)."""
    reader = GroupOffsets(bootstrap, group)
    try:
        return await reader.read(topics)
    finally:
        await reader.close()


async def group_lag(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    """Per topic, the messages that ``group`` has not committed yet (uncommitted = lag)."""
    lag = dict.fromkeys(topics, 0)
    for tp, (end, done) in (await group_offsets(bootstrap, group, topics)).items():
        lag[tp.topic] += max(end - done, 0)
    return lag


async def read_range(
    bootstrap: str, topic: str, partition: int, start: int, end: int
) -> list[tuple[int, bytes | None]]:
    """(offset, value) of the records of one partition in [start, end), oldest first."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[int, bytes | None]] = []
    try:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        consumer.seek(tp, max(start, first))
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for rec in batch.get(tp, []):
                if rec.offset < end:
                    out.append((rec.offset, rec.value))
        return out
    finally:
        await consumer.stop()


# aiokafka logs an ERROR per connection attempt (tens a second with the broker down): the
# first of each kind is kept, repeats within a minute are counted into the next one shown
KAFKA_LOGGERS = ("aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.producer.sender")


class FirstOfRepeats(logging.Filter):
    """Pass a message (by logger and format string) at most once per ``window`` seconds;
    the next one shown says how many were held back."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window, self.clock = window, clock
        self._shown: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._shown.get(key)
        if last is not None and now - last < self.window:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._shown[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.window:.0f}s)"
        return True


class SayKafkaUnreachable(logging.Filter):
    """On aiokafka's first connection error (then at most once per ``window``), one line of
    our own saying what it means: Kafka is unreachable and the client keeps retrying."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window, self.clock = window, clock
        self._said: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg).lower()
        if record.levelno >= logging.WARNING and ("connect" in text or "metadata" in text):
            now = self.clock()
            if self._said is None or now - self._said >= self.window:
                self._said = now
                log.warning(
                    "Kafka unreachable, retrying (%s); its client's repeated errors are shown "
                    "once a minute",
                    record.getMessage()[:200],
                )
        return True


def quiet_kafka() -> None:
    """Install both filters on aiokafka's loggers (once per process)."""
    unreachable, repeats = SayKafkaUnreachable(), FirstOfRepeats()
    for name in KAFKA_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, FirstOfRepeats) for f in logger.filters):
            logger.addFilter(unreachable)  # first: it sees every record
            logger.addFilter(repeats)
