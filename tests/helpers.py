"""Test helpers: a worker process, a webhook receiver, synthetic post streams."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from models.keyword import KeywordClassifier
from seismo.config import load_settings
from seismo.contracts import Alert, Post
from seismo.watchlist import load_watchlist
from streams import core
from streams.pipeline import OfflinePipeline, detector_params

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def run_seismo(
    env: dict[str, str], *args: str, timeout: float = 300
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


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def replay_summary(env: dict[str, str], path: Path, *args: str, timeout: float = 300) -> Any:
    """``seismo replay PATH --speed max ARGS``; asserts success, returns its JSON summary."""
    res = run_seismo(env, "replay", str(path), "--speed", "max", *args, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


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

    def wait_for(self, predicate: Any, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = [r for r in self.requests if predicate(r)]
            if got:
                return got
            time.sleep(0.2)
        raise AssertionError(f"no matching webhook within {timeout}s; got {len(self.requests)}")


class WorkerProcess:
    """``seismo worker`` as a child process with its own env; waits until Faust is ready."""

    def __init__(self, env: dict[str, str], log_path: Path, *extra_args: str) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        self._log = self.log_path.open("ab")
        self._mark = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seismo.cli", "worker", *self.args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[self._mark :].decode("utf-8", "replace")
            if "[^Worker]: Ready" in text:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{text[-4000:]}")
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30.0) -> int | None:
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


def write_jsonl(path: Path, rows: list[dict[str, Any]], extra_lines: Iterable[str] = ()) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


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
