"""The embedded Kafka broker: real JVM, real Kafka protocol, data surviving restarts."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from seismo.broker import EmbeddedKafka, check_java
from seismo.errors import BrokerError
from tests.helpers import read_topic
from tests.timeouts import BROKER_START, RECORD_ARRIVES

TOPIC = "seismo.test.broker"
GROUP = "seismo-test-broker"

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")


async def _produce(bootstrap: str, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)  # the broker creates no topic
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, value, key=b"k1")
    finally:
        await producer.stop()


async def _consume(bootstrap: str, *, commit: bool) -> list[bytes]:
    """The next records for GROUP (one fetch, once any arrive); commits them if asked."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_ARRIVES
        while not values:
            assert loop.time() < deadline, f"nothing for {GROUP} in {RECORD_ARRIVES:g}s"
            batches = await consumer.getmany(timeout_ms=500, max_records=10)
            values = [m.value for ms in batches.values() for m in ms if m.value is not None]
        if commit:
            await consumer.commit()
        return values
    finally:
        await consumer.stop()


async def _topics_and_offsets(bootstrap: str) -> tuple[list[str], dict[str, int]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = await admin.list_topics()
        offsets = await admin.list_consumer_group_offsets(GROUP)
        return topics, {f"{tp.topic}:{tp.partition}": meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


@contextmanager
def started(broker: EmbeddedKafka) -> Iterator[EmbeddedKafka]:
    """The broker, started (waiting up to BROKER_START) for the block, then stopped."""
    broker.start(timeout=BROKER_START)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.broker
@needs_java
def test_broker_round_trip_survives_restart(tmp_path: Path) -> None:
    data = tmp_path / "kafka"

    t0 = time.monotonic()
    with started(EmbeddedKafka(data, port=0)) as kafka:
        first_start = time.monotonic() - t0
        assert kafka.running
        assert kafka.bootstrap.startswith("127.0.0.1:")
        assert (data / "kraft" / "meta.properties").is_file()

        # the data dir is locked while the broker runs
        with pytest.raises(BrokerError, match="already in use"):
            EmbeddedKafka(data, port=0).start()

        asyncio.run(_produce(kafka.bootstrap, b"hello seismo"))
        assert asyncio.run(_consume(kafka.bootstrap, commit=True)) == [b"hello seismo"]
    assert not kafka.running
    kafka.stop()  # idempotent

    cluster_id = (data / "cluster.id").read_text()
    t1 = time.monotonic()
    with started(EmbeddedKafka(data, port=0)) as again:
        restart = time.monotonic() - t1
        assert again.bootstrap != ""
        topics, offsets = asyncio.run(_topics_and_offsets(again.bootstrap))
        assert TOPIC in topics
        assert offsets.get(f"{TOPIC}:0") == 1  # the committed offset survived
        assert asyncio.run(read_topic(again.bootstrap, TOPIC, 1)) == [b"hello seismo"]
        # nothing new for the group after its commit: the next record it gets is a marker
        # written now, not the one it committed before the restart
        asyncio.run(_produce(again.bootstrap, b"marker"))
        assert asyncio.run(_consume(again.bootstrap, commit=False)) == [b"marker"]
    assert (data / "cluster.id").read_text() == cluster_id
    assert (data / "logs" / "server.log").stat().st_size > 0
    print(f"first start {first_start:.1f}s, restart {restart:.1f}s")  # figures, not asserted


@pytest.mark.broker
def test_check_java_without_java_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(BrokerError, match="Java 17"):
        check_java()


@pytest.mark.broker
def test_check_java_rejects_old_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(BrokerError, match=r"1\.8\.0_392"):
        check_java()


@pytest.mark.broker
@needs_java
def test_check_java_reports_version() -> None:
    version = check_java()
    assert version[0].isdigit()


@pytest.mark.broker
@needs_java
def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        kafka = EmbeddedKafka(tmp_path / "kafka", port=port)
        with pytest.raises(BrokerError, match="already in use"):
            kafka.start()
        assert not kafka.running
    # the failed start released the data-dir lock
    assert (tmp_path / "kafka" / "broker.lock").read_text() == ""


def test_a_broker_message_reaches_the_user_once(caplog: pytest.LogCaptureFixture) -> None:
    from seismo.broker import _say

    shown: list[str] = []
    with caplog.at_level("INFO", logger="seismo.broker"):
        _say("Kafka jars ready", shown.append)  # a command shows progress lines itself
        _say("broker up", None)  # a library caller only has the log
    assert shown == ["Kafka jars ready"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "INFO"] == ["broker up"]


def test_free_port_never_hands_out_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS may pick a port it just gave (nothing listens on it yet): two servers started
    a moment apart were once both given one port, and the second failed to bind."""
    from seismo import broker

    picks = iter([41001, 41001, 41001, 41002])

    class OneSocket:
        def __init__(self, *args: object) -> None:
            self.port = next(picks)

        def __enter__(self) -> OneSocket:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def bind(self, address: tuple[str, int]) -> None:
            pass

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(broker, "_HANDED_OUT", set())
    monkeypatch.setattr(broker.socket, "socket", OneSocket)
    assert [broker.free_port(), broker.free_port()] == [41001, 41002]
