"""Kafka plumbing: topic creation (concurrent creators, refusals in Kafka's words) and the
per-stage lag a replay waits on."""

from __future__ import annotations

import asyncio

import pytest

from seismo.collect import pending_line
from seismo.config import Settings
from seismo.contracts import ALERTS, ALL_TOPICS, POSTS_CLASSIFIED, POSTS_RAW
from seismo.errors import SeismoError
from seismo.kafka import bootstrap_of, created_topics, ensure_topics, group_lag


def test_created_topics_counts_only_the_topics_this_call_made() -> None:
    errors = [("a", 0, None), ("b", 36, "Topic 'b' already exists."), ("c", 0, "")]
    assert created_topics(errors) == ["a", "c"]


def test_created_topics_stops_on_any_other_error_with_the_brokers_words() -> None:
    with pytest.raises(SeismoError, match=r"'c'.*InvalidConfigurationError: bad retention"):
        created_topics([("a", 0, None), ("c", 40, "bad retention")])
    with pytest.raises(SeismoError, match=r"'d' \(InvalidPartitionsError\)$"):
        created_topics([("d", 37)])  # v0 responses carry no message


@pytest.mark.broker
def test_two_creators_at_once_each_report_only_their_own_topics(kafka: str, namespace: str) -> None:
    settings = Settings(kafka_bootstrap=kafka, namespace=namespace)

    async def both() -> tuple[list[str], list[str]]:
        a, b = await asyncio.gather(ensure_topics(settings), ensure_topics(settings))
        return a, b

    a, b = asyncio.run(both())
    wanted = {settings.topic(t) for t in ALL_TOPICS}
    assert not set(a) & set(b)
    assert set(a) | set(b) == wanted
    assert asyncio.run(ensure_topics(settings)) == []


@pytest.mark.broker
def test_a_topic_kafka_refuses_is_a_clear_error(kafka: str, namespace: str) -> None:
    # Settings would refuse 0 partitions itself; bypass it to see what the broker says
    settings = Settings(kafka_bootstrap=kafka, namespace=namespace).model_copy(
        update={"raw_partitions": 0}
    )
    with pytest.raises(SeismoError, match=r"refused to create topic .*posts\.raw\.v1"):
        asyncio.run(ensure_topics(settings))


def test_pending_line_names_each_stage() -> None:
    line = pending_line({"raw": 12000, "classified": 345, "alerts": 0})
    assert line == "12,345 records pending (raw 12,000, classified 345, alerts 0)"


@pytest.mark.broker
def test_group_lag_is_per_topic(kafka: str, namespace: str) -> None:
    from aiokafka import AIOKafkaProducer

    settings = Settings(kafka_bootstrap=kafka, namespace=namespace)
    raw, classified, alerts = (settings.topic(t) for t in (POSTS_RAW, POSTS_CLASSIFIED, ALERTS))

    async def go() -> dict[str, int]:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(raw, b"{}", key=str(i).encode())
            await producer.send_and_wait(classified, b"{}", key=b"k")
        finally:
            await producer.stop()
        return await group_lag(bootstrap_of(settings), settings.group_id, [raw, classified, alerts])

    assert asyncio.run(go()) == {raw: 3, classified: 1, alerts: 0}
