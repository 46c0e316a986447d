"""Test helpers: a worker process, a webhook receiver, synthetic post streams."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import BaseModel

from models.keyword import KeywordClassifier
from seismo.broker import free_port
from seismo.config import load_settings
from seismo.contracts import Alert, Post
from seismo.watchlist import load_watchlist
from streams import core
from streams.pipeline import OfflinePipeline, detector_params
from tests.timeouts import (
    COMMAND_FINISHES,
    HTTP_REQUEST,
    PIPELINE_DRAINS,
    POLL,
    PROCESS_STOPS,
    RECORD_ARRIVES,
    TASK_STOPS,
    WORKER_READY,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEPLOY = REPO / "deploy"
GRAFANA = DEPLOY / "grafana"
PROMETHEUS = DEPLOY / "prometheus"

T = TypeVar("T")


# --- waiting ------------------------------------------------------------------------------


def _said(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def wait_until(
    check: Callable[[], T | None],
    what: str | Callable[[], str],
    timeout: float,
    interval: float = POLL,
) -> T:
    """Call ``check`` until it returns something truthy, and return that. After ``timeout``
    seconds (one of tests/timeouts.py) fail, saying ``what`` was waited for (a callable is
    asked then, so it can describe the state reached)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {_said(what)}")
        time.sleep(interval)


async def wait_until_async(
    check: Callable[[], T | None],
    what: str | Callable[[], str],
    timeout: float,
    interval: float = 0.005,
) -> T:
    """:func:`wait_until` inside an event loop (the loop keeps running while we wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = check()
        if got:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {_said(what)}")
        await asyncio.sleep(interval)


async def finishes(task: Awaitable[T], what: str, timeout: float = TASK_STOPS) -> T:
    """Await ``task`` (by default one told to stop: a runner, a server); fail naming ``what``
    if it has not finished after ``timeout``."""
    try:
        return await asyncio.wait_for(task, timeout)
    except TimeoutError:
        raise AssertionError(
            f"timed out after {timeout:g}s waiting for {what} (to finish)"
        ) from None


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=HTTP_REQUEST) as resp:
        body: bytes = resp.read()
        return body


# --- Kafka --------------------------------------------------------------------------------


async def read_records(
    bootstrap: str,
    topic: str,
    want: int,
    timeout: float = RECORD_ARRIVES,
    alive: Callable[[], bool] = lambda: True,
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``want`` records of ``topic`` (from the earliest offset, no group); fails
    naming the topic when fewer arrive in ``timeout`` (or ``alive()`` turns false first:
    what should write them has ended; then the records so far are returned)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < want and alive():
            if loop.time() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:g}s waiting for {want} records on {topic}; "
                    f"got {len(got)}"
                )
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += records
    finally:
        await consumer.stop()
    return got


async def read_topic(
    bootstrap: str, topic: str, want: int, timeout: float = RECORD_ARRIVES
) -> list[bytes]:
    """The values of the first ``want`` records of ``topic``."""
    return [r.value for r in await read_records(bootstrap, topic, want, timeout)]


async def read_to_end(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record ``topic`` holds now, up to its end offsets taken at the start: a
    deterministic "and nothing more", for when whatever writes to it has finished."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:  # without a group the consumer is given every partition of the topic
        parts: set[TopicPartition] = await wait_until_async(
            consumer.assignment, f"the partitions of {topic}", RECORD_ARRIVES, 0.05
        )
        ends = await consumer.end_offsets(list(parts))

        async def at_end() -> bool:
            return all([await consumer.position(tp) >= ends[tp] for tp in parts])

        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_ARRIVES
        while not await at_end():
            assert loop.time() < deadline, f"{topic} not read to its end in {RECORD_ARRIVES:g}s"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += records
    finally:
        await consumer.stop()
    return sorted(got, key=lambda r: (r.partition, r.offset))


def worker_env_for(bootstrap: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a test's seismo processes: its Kafka, namespace, data dir, port."""
    return {
        "SEISMO_KAFKA_BOOTSTRAP": bootstrap,
        "SEISMO_NAMESPACE": namespace,
        "SEISMO_DATA_DIR": str(tmp_path / "seismo"),
        "SEISMO_WEB_PORT": str(free_port()),
        "SEISMO_TOPIC_PARTITIONS": "2",
        # the in-process reference pipeline of these tests classifies by keywords
        "SEISMO_CLASSIFIER": "keyword",
    }


def run_seismo(
    env: dict[str, str], *args: str, timeout: float = COMMAND_FINISHES
) -> subprocess.CompletedProcess[str]:
    """Run the ``seismo`` CLI in a child process with ``env`` on top of ours."""
    return subprocess.run(
        [sys.executable, "-m", "seismo.cli", *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn_seismo(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``seismo ARGS`` in the background with ``env`` on top of ours, output to a log."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "seismo.cli", *args],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen[Any], timeout: float = PROCESS_STOPS) -> int:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def replay_summary(
    env: dict[str, str], path: Path, *args: str, timeout: float = COMMAND_FINISHES
) -> Any:
    """``seismo replay PATH --speed max ARGS``; asserts success, returns its JSON summary.
    With ``--alerts-out`` it waits up to PIPELINE_DRAINS for the pipeline to drain."""
    res = run_seismo(
        env, "replay", str(path), "--speed", "max", *DRAIN_WAIT, *args, timeout=timeout
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


DRAIN_WAIT = ("--wait-timeout", f"{PIPELINE_DRAINS:g}")
"""The replay option bounding its wait for the pipeline to drain (with ``--alerts-out``)."""


def offline_alerts(posts: Iterable[Post]) -> list[Alert]:
    """The alerts the pipeline's logic raises for ``posts``, computed in this process."""
    pipe = OfflinePipeline(
        KeywordClassifier(load_watchlist()),
        detector_params(load_settings()),
        clock=lambda: datetime(2026, 11, 23, tzinfo=UTC),
    )
    return list(pipe.run(posts))


def alert_of(body: dict[str, Any]) -> dict[str, Any]:
    """The alert in a webhook body: a dossier-update request wraps it, a plain alert is it."""
    if body.get("contract", "").startswith("dossier-update-requested."):
        return {**body["alert"], "evidence": body["evidence"]}
    return body


class WebhookReceiver:
    """A loopback HTTP server recording JSON POSTs; can fail the first N requests.

    ``fail_first`` counts every request; ``fail_first_per_key`` counts per Idempotency-Key.
    ``requests`` holds the alerts accepted (unwrapped from the writer's request body),
    ``bodies``/``raw`` the accepted bodies as JSON and as bytes.
    """

    def __init__(
        self, fail_first: int = 0, fail_status: int = 503, fail_first_per_key: int = 0
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.attempts = 0
        self.per_key: dict[str, int] = {}
        self.fail_first = fail_first
        self.fail_first_per_key = fail_first_per_key
        self.fail_status = fail_status
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Idempotency-Key", "")
                with receiver._lock:
                    receiver.attempts += 1
                    receiver.per_key[key] = receiver.per_key.get(key, 0) + 1
                    fail = receiver.attempts <= receiver.fail_first or (
                        receiver.per_key[key] <= receiver.fail_first_per_key
                    )
                    if not fail:
                        receiver.bodies.append(json.loads(body))
                        receiver.requests.append(alert_of(receiver.bodies[-1]))
                        receiver.raw.append(body)
                        receiver.headers.append(dict(self.headers))
                self.send_response(receiver.fail_status if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(
        self, predicate: Any, what: str = "a matching alert", timeout: float = RECORD_ARRIVES
    ) -> list[dict[str, Any]]:
        """The accepted alerts matching ``predicate``, once there is one."""

        def matching() -> list[dict[str, Any]]:
            with self._lock:
                return [r for r in self.requests if predicate(r)]

        return wait_until(
            matching, lambda: f"{what} at the webhook ({len(self.requests)} received)", timeout
        )


class WorkerProcess:
    """``seismo worker`` as a child process with its own env; ready when its ``/healthz``
    answers and it holds partitions (it has joined its consumer group)."""

    def __init__(self, env: dict[str, str], log_path: Path, *extra_args: str) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = WORKER_READY) -> WorkerProcess:
        self._log = self.log_path.open("ab")
        self._mark = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seismo.cli", "worker", *self.args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            wait_until(self._ready, "the worker's /healthz to show partitions held", timeout)
        except AssertionError as exc:
            self.stop()
            text = self.log_path.read_bytes()[self._mark :].decode("utf-8", "replace")
            raise AssertionError(f"{exc}; its log:\n{text[-4000:]}") from None
        return self

    def healthz(self) -> dict[str, Any] | None:
        """The worker's ``/healthz`` answer, or None while it does not answer."""
        url = f"http://127.0.0.1:{self.env['SEISMO_WEB_PORT']}/healthz"
        try:
            answer: dict[str, Any] = json.loads(http_get(url))
            return answer
        except (OSError, ValueError):
            return None

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            text = self.log_path.read_bytes()[self._mark :].decode("utf-8", "replace")
            raise AssertionError(f"worker exited early:\n{text[-4000:]}")
        health = self.healthz()
        return health is not None and any(health.get("partitions", {}).values())

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = PROCESS_STOPS) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._log.close()


_FILLER = """coffee morning traffic weekend football pizza movie rain music concert garden
train office meeting lunch birthday puppy sunset beach book series podcast gym running recipe
bread market holiday flight airport hotel museum painting camera guitar festival""".split()


def synthetic_stream(
    *,
    start: datetime = datetime(2026, 5, 1, tzinfo=UTC),
    hours: int = 12,
    per_hour: int = 20,
    burst_at_hour: float = 10.0,
    burst_posts: int = 15,
    burst_minutes: int = 20,
    burst_texts: list[str] | None = None,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """Background chatter plus one burst of on-claim posts; sorted by time."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    n = hours * per_hour
    for i in range(n):
        t = start + timedelta(seconds=rng.uniform(0, hours * 3600))
        words = rng.sample(_FILLER, 5)
        rows.append(
            {
                "id": f"bg{i}",
                "source": "x",
                "text": " ".join(words),
                "created_at": t.isoformat().replace("+00:00", "Z"),
                "author": f"user{rng.randrange(200)}",
            }
        )
    texts = burst_texts or [
        "GLM-5 was trained entirely on Huawei Ascend chips, says Zhipu",
        "Zhipu claims GLM-5 training ran only on Huawei Ascend hardware",
        "Is it true GLM-5 was trained on Ascend? Huawei silicon only?",
        "Huawei Ascend powered the whole GLM-5 training run according to Zhipu",
        "No evidence GLM-5 was trained only on Ascend, this looks misleading",
    ]
    b0 = start + timedelta(hours=burst_at_hour)
    for j in range(burst_posts):
        t = b0 + timedelta(seconds=burst_minutes * 60 * j / burst_posts)
        rows.append(
            {
                "id": f"burst{j}",
                "source": "bluesky",
                "text": f"{texts[j % len(texts)]} #{_FILLER[j % len(_FILLER)]}",
                "created_at": t.isoformat().replace("+00:00", "Z"),
                "author": f"author{j}",
                "url": f"https://bsky.app/post/{j}",
            }
        )
    rows.sort(key=lambda r: r["created_at"])
    return rows


def _extra_burst(
    prefix: str, at_hour: float, posts: int, seed: int, texts: list[str]
) -> list[dict]:
    """One more burst (no background), its ids prefixed so they don't clash."""
    burst = synthetic_stream(
        hours=0, burst_at_hour=at_hour, burst_posts=posts, seed=seed, burst_texts=texts
    )
    return [r | {"id": f"{prefix}{i}"} for i, r in enumerate(burst)]


def multi_burst_rows() -> list[dict]:
    """Background chatter with three bursts: GLM-5, DeepSeek V4 (both on Ascend), Cloudflare."""
    rows = synthetic_stream(hours=12, per_hour=30, burst_at_hour=4)
    rows += _extra_burst(
        "d",
        7.5,
        12,
        3,
        [
            "DeepSeek V4 Pro trained on Huawei Ascend chips",
            "Huawei Ascend ran DeepSeek V4",
            "DeepSeek V4 on Ascend? Huawei says yes",
        ],
    )
    rows += _extra_burst(
        "c",
        10.5,
        14,
        4,
        [
            "Cloudflare outage takes down half the web",
            "Is Cloudflare down for everyone?",
            "Massive Cloudflare outage right now",
            "cloudflare 502 errors everywhere",
        ],
    )
    rows.sort(key=lambda r: r["created_at"])
    return rows


def expected_ids(rows: list[dict]) -> set[tuple[str, int]]:
    """(id, version) of every alert version the posts cause that the webhooks get (the story
    throttle's decision is part of the version), computed offline."""
    alerts = offline_alerts(Post.model_validate(r) for r in rows)
    return {(a.id, a.version) for a in alerts if a.deliver is not False}


def write_jsonl(path: Path, rows: list[dict[str, Any]], extra_lines: Iterable[str] = ()) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


# --- deployment files ---------------------------------------------------------------------


def dashboards() -> dict[str, dict[str, Any]]:
    """The Grafana dashboards shipped in deploy/, by file name."""
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dash["panels"] if p["type"] != "row"]


# --- alert delivery ---------------------------------------------------------------------

WRITER_SCHEMA = json.loads(
    (REPO / "contracts" / "dossier-update-requested.v1.schema.json").read_text(encoding="utf-8")
)
T_ALERT = datetime(2026, 5, 1, 10, tzinfo=UTC)


def make_alert(version: int = 1, status: str = "open", **extra: Any) -> Alert:
    """A claim alert on china-ai-rising with two evidence posts (support and deny)."""
    fields: dict[str, Any] = dict(
        id="abc123",
        version=version,
        status=status,
        severity="high",
        kind="claim",
        key="claim:glm5-trained-on-ascend",
        label="glm5-trained-on-ascend",
        terms=["glm-5", "ascend"],
        dossier="china-ai-rising",
        claim="glm5-trained-on-ascend",
        window_start=T_ALERT,
        window_seconds=3600,
        raised_at=T_ALERT,
        first_seen=T_ALERT,
        observed=6,
        expected=0.3,
        score=5.1,
        sources={"bluesky": 2},
        stance_mix={"support": 1, "deny": 1},
        evidence=[
            {
                "post_id": "bluesky:2",
                "source": "bluesky",
                "created_at": T_ALERT.replace(minute=5),
                "text": "No evidence GLM-5 was trained only on Ascend",
                "author": "skeptic",
                "url": "https://bsky.app/post/2",
                "stance": "deny",
            },
            {
                "post_id": "bluesky:1",
                "source": "bluesky",
                "created_at": T_ALERT,
                "text": "GLM-5 trained entirely on Huawei Ascend",
                "author": "reporter",
                "url": "https://bsky.app/post/1",
                "stance": "support",
            },
        ],
        detected_at=T_ALERT,
    )
    return Alert.model_validate({**fields, **extra})


@contextmanager
def pure_python() -> Iterator[None]:
    """Run the detector's pure-Python references (not the compiled twins) in the block."""
    old = core.PURE_PYTHON
    core.PURE_PYTHON = True
    try:
        yield
    finally:
        core.PURE_PYTHON = old


def setting_names(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every setting's dotted name (``web_port``, ``detector.min_score`` in a group), walked
    here rather than by ``seismo.config_doc`` so the tests of the page do not share its walk."""
    names = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names += setting_names(ann, f"{prefix}{name}.")
        else:
            names.append(prefix + name)
    return names
