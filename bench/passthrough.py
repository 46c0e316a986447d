"""The floor under the worker's cost per post: Kafka and Faust moving records and nothing else.

Three figures, measured on the same broker and the same records as ``bench e2e``:

- ``raw-produce``: aiokafka producing the records with seismo's replay producer
  (``acks=all``, idempotent, 256 KiB batches), CPU of this process per record;
- ``raw-consume``: one aiokafka consumer reading them back with ``getmany``;
- ``faust-hop``: one faust-streaming agent reading topic A and sending each record to topic B
  (the cost of one Faust hop), CPU of the Faust process from its first record to its last.

The seismo worker makes about two such hops per post (raw -> classified -> alerts), so its
posts per CPU-second can be read against ``faust-hop``: the ratio is what seismo adds.

    python -m bench.passthrough faust BOOTSTRAP SOURCE_TOPIC DEST_TOPIC N OUT
        runs the Faust hop in this process and writes its figure (JSON) to OUT when N
        records moved (Faust redirects stdout to its log)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from seismo import kafka
from seismo.config import Settings


async def create_topics(bootstrap: str, names: Sequence[str]) -> None:
    """One-partition topics (the broker does not create topics on first use)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        await admin.close()


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    """seismo's own producer for a file of posts (:func:`seismo.kafka.make_producer`,
    ``replay``: every replica acks, idempotent, 256 KiB batches) to ``bootstrap``."""
    return kafka.make_producer(Settings(kafka_bootstrap=bootstrap), "replay")


async def _produce(bootstrap: str, topic: str, values: Sequence[bytes]) -> float:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        cpu = time.process_time()
        for i, value in enumerate(values):
            await producer.send(topic, value, key=str(i).encode())
        await producer.flush()
        return time.process_time() - cpu
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        cpu = time.process_time()
        got = 0
        while got < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            got += sum(len(records) for records in batches.values())
        return time.process_time() - cpu
    finally:
        await consumer.stop()


def _figure(name: str, records: int, cpu: float) -> dict[str, object]:
    return {
        "path": name,
        "records": records,
        "cpu_s": round(cpu, 3),
        "records_per_cpu_s": round(records / max(cpu, 1e-9)),
        "us_per_record": round(1e6 * cpu / max(records, 1), 1),
    }


def raw_figures(bootstrap: str, values: Sequence[bytes]) -> list[dict[str, object]]:
    """Produce ``values`` to a new topic, then consume them: the two raw aiokafka figures."""
    topic = f"pass.raw.{os.getpid()}.{time.monotonic_ns()}"

    async def go() -> tuple[float, float]:
        await create_topics(bootstrap, [topic])
        produced = await _produce(bootstrap, topic, values)
        consumed = await _consume(bootstrap, topic, len(values))
        return produced, consumed

    produced, consumed = asyncio.run(go())
    return [
        _figure("raw-produce", len(values), produced),
        _figure("raw-consume", len(values), consumed),
    ]


def faust_figure(
    bootstrap: str, values: Sequence[bytes], timeout: float = 600
) -> dict[str, object]:
    """Fill topic A with ``values``, then time a Faust worker moving them to topic B."""
    stamp = f"{os.getpid()}.{time.monotonic_ns()}"
    source, dest = f"pass.a.{stamp}", f"pass.b.{stamp}"

    async def fill() -> None:
        await create_topics(bootstrap, [source, dest])
        await _produce(bootstrap, source, values)

    asyncio.run(fill())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figure.json"
        cmd = [sys.executable, "-m", "bench.passthrough", "faust", bootstrap, source, dest]
        res = subprocess.run(
            [*cmd, str(len(values)), str(out)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if not out.exists():
            tail = (res.stdout + res.stderr)[-3000:]
            raise SystemExit(f"the Faust pass-through wrote no figure:\n{tail}")
        figure: dict[str, object] = json.loads(out.read_text())
        return figure


def _run_faust_hop(bootstrap: str, source: str, dest: str, n: int, out: Path) -> None:
    """A Faust app whose one agent sends every record of ``source`` on to ``dest``; writes
    the CPU it spent from the first record to the ``n``-th to ``out``, then stops itself."""
    import faust

    datadir = tempfile.mkdtemp(prefix="seismo-pass-")
    app = faust.App(
        f"bench-pass-{os.getpid()}",
        broker=f"kafka://{bootstrap}",
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        topic_partitions=1,
    )
    src = app.topic(source, partitions=1)
    dst = app.topic(dest, partitions=1)
    seen = 0
    started = 0.0

    @app.agent(src)
    async def hop(stream: faust.StreamT[bytes]) -> None:
        nonlocal seen, started
        async for event in stream.events():
            if seen == 0:
                started = time.process_time()
            await dst.send(key=event.key, value=event.value)
            seen += 1
            if seen == n:
                await app.producer.flush()
                figure = _figure("faust-hop", n, time.process_time() - started)
                out.write_text(json.dumps(figure))
                os.kill(os.getpid(), signal.SIGTERM)

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


def main(argv: Sequence[str]) -> None:
    if len(argv) != 6 or argv[0] != "faust":
        raise SystemExit(__doc__)
    _, bootstrap, source, dest, n, out = argv
    _run_faust_hop(bootstrap, source, dest, int(n), Path(out))


if __name__ == "__main__":
    main(sys.argv[1:])
