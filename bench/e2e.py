"""``python -m bench e2e``: replay -> embedded Kafka -> 1..N workers, and the floor beside it.

One embedded broker serves every figure of a run, so the ratios are measured side by side:

- for each worker count (``--workers 1,2``): that many ``seismo worker`` processes share a
  fresh namespace (``--raw-partitions`` of ``posts.raw.v1``); once the group has settled,
  the synthetic posts are produced to ``posts.raw.v1``; posts per wall-second (first send
  to the group's last commit of raw and classified records), posts classified per
  wall-second (to the last commit of raw records) and posts per worker CPU-second (the sum
  over the workers, from /proc, over the whole span);
- the pass-through floor (``bench/passthrough.py``): raw aiokafka produce and consume, and
  one Faust hop, on the same records.

Each figure is one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import passthrough
from bench.passthrough import make_producer
from seismo.collect import consumed_topics
from seismo.config import Settings, load_settings
from seismo.contracts import POSTS_RAW, Post
from seismo.kafka import group_lag

READY_TIMEOUT = 180.0  # a worker's start plus the group's rebalance, on a loaded machine


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _held(port: int) -> dict[str, list[int]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            held: dict[str, list[int]] = json.loads(r.read()).get("partitions", {})
            return held
    except (OSError, ValueError):
        return None


def _group_settled(ports: Sequence[int], raw_topic: str, partitions: int) -> bool:
    """Every worker answers and the raw partitions are held once each, by someone each."""
    helds = [_held(p) for p in ports]
    if any(h is None for h in helds):
        return False
    owned = [tp for h in helds if h is not None for tp in h.get(raw_topic, [])]
    busy = sum(1 for h in helds if h and h.get(raw_topic)) == min(len(ports), partitions)
    return sorted(owned) == list(range(partitions)) and busy


class Workers:
    """``count`` worker processes of one namespace, each with its own web port and log."""

    def __init__(self, env: dict[str, str], count: int, log_dir: Path) -> None:
        from seismo.broker import free_port

        self.ports = [free_port() for _ in range(count)]
        self.logs = [log_dir / f"worker{i}.log" for i in range(count)]
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "seismo.cli", "worker"],
                env={**env, "SEISMO_WEB_PORT": str(port)},
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            for port, log in zip(self.ports, self.logs, strict=True)
        ]

    def wait_settled(self, raw_topic: str, partitions: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _group_settled(self.ports, raw_topic, partitions):
            procs = zip(self.procs, self.logs, strict=True)
            dead = [log for p, log in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                log = dead[0] if dead else self.logs[0]
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"the workers did not settle ({log.name}):\n{tail}")
            time.sleep(0.5)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


async def _feed_and_drain(
    bootstrap: str, settings: Settings, lines: Sequence[bytes], keys: Sequence[bytes]
) -> tuple[float, float]:
    """Produce the posts to ``posts.raw.v1`` (keyed by post key, as the connectors do), then
    wait until the group has committed every raw record (all classified), and then every
    classified one (all counted): the wall seconds from the first send to each (commits
    land every second, so up to ~1 s late)."""
    stages = consumed_topics(settings)
    del stages["alerts"]  # few records, and not the posts' path
    raw = settings.topic(POSTS_RAW)
    topics = [settings.topic(t) for t in stages.values()]
    producer = make_producer(bootstrap)
    await producer.start()
    t = time.perf_counter()
    try:
        for key, value in zip(keys, lines, strict=True):
            await producer.send(raw, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    classified_at = None
    while True:
        lag = await group_lag(bootstrap, settings.group_id, topics)
        if classified_at is None and not lag[raw]:
            classified_at = time.perf_counter() - t
        if not any(lag.values()):
            return classified_at, time.perf_counter() - t
        await asyncio.sleep(0.2)


def run_workers(
    args: argparse.Namespace, bootstrap: str, posts: Sequence[Post], count: int, d: Path
) -> dict[str, Any]:
    namespace = f"bench{count}w"
    env = {
        **os.environ,
        "SEISMO_KAFKA_BOOTSTRAP": bootstrap,
        "SEISMO_NAMESPACE": namespace,
        "SEISMO_DATA_DIR": str(d / namespace),
        "SEISMO_CLASSIFIER": args.classifier,
        "SEISMO_RAW_PARTITIONS": str(args.raw_partitions),
    }
    if args.batch:
        env["SEISMO_CLASSIFY_BATCH_SIZE"] = str(args.batch)
    settings = load_settings(
        kafka_bootstrap=bootstrap, namespace=namespace, raw_partitions=args.raw_partitions
    )
    lines = [p.model_dump_json().encode() for p in posts]
    keys = [p.key.encode() for p in posts]
    workers = Workers(env, count, d)
    try:
        workers.wait_settled(settings.topic(POSTS_RAW), args.raw_partitions)
        cpu0 = workers.cpu()
        classified_s, wall = asyncio.run(_feed_and_drain(bootstrap, settings, lines, keys))
        cpu = workers.cpu() - cpu0
    finally:
        workers.stop()
    return {
        "bench": "e2e",
        "path": "seismo-worker",
        "workers": count,
        "raw_partitions": args.raw_partitions,
        "classifier": args.classifier,
        "classify_batch_size": settings.classify_batch_size if not args.batch else args.batch,
        "posts": len(posts),
        "file": Path(args.file).name if args.file else None,
        "seconds": round(wall, 2),
        "posts_per_wall_s": round(len(posts) / wall, 1),
        "classified_s": round(classified_s, 2),
        "classified_per_wall_s": round(len(posts) / classified_s, 1),
        "workers_cpu_s": round(cpu, 2),
        "posts_per_worker_cpu_s": round(len(posts) / max(cpu, 1e-9), 1),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }


def bench_e2e(args: argparse.Namespace, posts: Sequence[Post]) -> None:
    from seismo.broker import EmbeddedKafka

    counts = [int(c) for c in str(args.workers).split(",") if c.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        with EmbeddedKafka(d / "kafka", port=0) as kafka:
            for count in counts:
                print(json.dumps(run_workers(args, kafka.bootstrap, posts, count, d)), flush=True)
            if args.passthrough:
                lines = [p.model_dump_json().encode() for p in posts]
                for figure in passthrough.raw_figures(kafka.bootstrap, lines):
                    print(json.dumps({"bench": "e2e", **figure}), flush=True)
                hop = passthrough.faust_figure(kafka.bootstrap, lines)
                print(json.dumps({"bench": "e2e", **hop}))


def register(sub: Any, load: Any) -> None:
    """``load(args)``: the posts to feed (``--file``, else ``--posts`` synthetic ones)."""
    e = sub.add_parser("e2e", help="replay through the embedded broker and 1..N workers")
    e.add_argument("--file", help="JSONL posts (default: synthetic)")
    e.add_argument("--posts", type=int, default=5_000, help="synthetic posts (without --file)")
    e.add_argument(
        "--classifier",
        choices=["keyword", "cascade", "full"],
        default="cascade",
        help="the worker's classifier (default: cascade, the product default)",
    )
    e.add_argument(
        "--batch", type=int, help="classify_batch_size of the worker (default: its setting)"
    )
    e.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2 (default)")
    e.add_argument("--raw-partitions", type=int, default=4, help="partitions of posts.raw.v1")
    e.add_argument(
        "--no-passthrough",
        dest="passthrough",
        action="store_false",
        help="skip the raw aiokafka and Faust pass-through figures",
    )
    e.set_defaults(func=lambda args: bench_e2e(args, load(args)))
