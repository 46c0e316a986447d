"""Topic creation: concurrent creators, and a refusal from Kafka reported in its own words."""

from __future__ import annotations

import asyncio

import pytest

from seismo.config import Settings
from seismo.contracts import ALL_TOPICS
from seismo.errors import SeismoError
from seismo.kafka import created_topics, ensure_topics


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
