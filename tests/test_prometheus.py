"""A real Prometheus scrapes a real worker fed by a replay; every dashboard query has data.

Uses Debian's ``prometheus`` (``/usr/bin/prometheus``, see deploy/apt-packages.txt). The
queries are read from the dashboard JSON files, with Grafana's variables substituted, so a
panel whose query matches nothing fails here rather than showing "No data" in Grafana.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from connectors.xpush import PATH
from models.keyword import KeywordClassifier
from seismo.broker import free_port
from seismo.contracts import Post
from seismo.watchlist import load_watchlist
from tests.fakes.x import ndjson, x_post
from tests.helpers import (
    PROMETHEUS,
    WorkerProcess,
    dashboards,
    http_get,
    multi_burst_rows,
    panels,
    replay_summary,
    spawn_seismo,
    stop_process,
    wait_until,
    write_jsonl,
)
from tests.timeouts import HTTP_REQUEST, RECORD_ARRIVES, SERVICE_READY

pytestmark = [pytest.mark.broker, pytest.mark.slow]

# Grafana's variables -> values Prometheus accepts: every dossier/claim/stance, windows that
# cover the whole test run
GRAFANA_VARS = {
    "$__rate_interval": "2m",
    "$__interval": "15s",
    "$__range": "1h",
    "$dossier": ".*",
    "$claim": ".*",
    "$stance": ".*",
}


def substitute(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


class Prometheus:
    """``prometheus`` on a free loopback port, scraping ``jobs`` (name -> port) every second."""

    def __init__(self, tmp: Path, jobs: dict[str, int]) -> None:
        self.exe = shutil.which("prometheus")
        if self.exe is None:
            pytest.skip("prometheus not installed (Debian package prometheus; make system-deps)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(PROMETHEUS / "alerts.yml")],
                    "scrape_configs": [
                        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                        for job, port in jobs.items()
                    ],
                }
            )
        )
        self.data = tmp / "prometheus-data"
        self.log = tmp / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.exe),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            self._ready, lambda: f"prometheus ready:\n{self.log.read_text()[-3000:]}", SERVICE_READY
        )

    def _ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            http_get(f"{self.url}/-/ready")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        body = json.loads(http_get(url))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), data
        return data["result"] if data["resultType"] == "vector" else [data["result"]]

    def wait_for(self, expr: str) -> list[dict[str, Any]]:
        return wait_until(lambda: self.query(expr), f"data for {expr}", RECORD_ARRIVES, 1.0)


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i, v in enumerate(values):
            await producer.send_and_wait(topic, v, key=f"bad{i}".encode())
    finally:
        await producer.stop()


@pytest.fixture
def x_push(worker_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real ``seismo connect x-push`` process serving its metrics; yields its settings."""
    env = {
        **worker_env,
        "SEISMO_X_PUSH_PORT": str(free_port()),
        "SEISMO_X_PUSH_TOKEN": "push-secret",
        "SEISMO_METRICS_PORT": str(free_port()),
    }
    proc = spawn_seismo(env, tmp_path / "x-push.log", "connect", "x-push")
    try:
        yield env
    finally:
        stop_process(proc)


def push(env: dict[str, str], body: bytes) -> None:
    """POST ``body`` to the x-push endpoint once it listens; it answers after Kafka acks."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{env['SEISMO_X_PUSH_PORT']}{PATH}",
        data=body,
        headers={"Authorization": "Bearer push-secret", "Content-Type": "application/x-ndjson"},
    )

    def answered() -> bool:
        try:
            with urllib.request.urlopen(req, timeout=HTTP_REQUEST) as resp:
                assert resp.status == 200
                return True
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError:
            return False  # not listening yet

    wait_until(answered, "the x-push endpoint accepting a push", SERVICE_READY)


@pytest.fixture
def prometheus(
    worker_env: dict[str, str], x_push: dict[str, str], tmp_path: Path
) -> Iterator[Prometheus]:
    jobs = {
        "seismo-worker": int(worker_env["SEISMO_WEB_PORT"]),
        "seismo-connectors": int(x_push["SEISMO_METRICS_PORT"]),
    }
    prom = Prometheus(tmp_path, jobs)
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


def test_every_dashboard_query_returns_data_from_a_real_pipeline(
    worker_env: dict[str, str], x_push: dict[str, str], prometheus: Prometheus, tmp_path: Path
) -> None:
    rows = multi_burst_rows()
    stream = write_jsonl(tmp_path / "stream.jsonl", rows)
    worker = WorkerProcess(
        worker_env, tmp_path / "worker.log", "--alerts-out", str(tmp_path / "alerts.jsonl")
    ).start()
    try:
        prometheus.wait_for('up{job="seismo-worker"} == 1')
        # records the worker itself must dead-letter (replay checks the rows it sends)
        raw = f"{worker_env['SEISMO_NAMESPACE']}.posts.raw.v1"
        asyncio.run(produce(worker_env["SEISMO_KAFKA_BOOTSTRAP"], raw, [b"\xffnot a post"] * 2))
        first = replay_summary(worker_env, stream, "--alerts-out", str(tmp_path / "a1.jsonl"))
        assert first["alerts"] >= 2
        # the same posts again: all recognised as copies by detect (the duplicates panel)
        replay_summary(worker_env, stream, "--alerts-out", str(tmp_path / "a2.jsonl"))

        # what Prometheus must have seen: the classifier's own count per dossier
        clf = KeywordClassifier(load_watchlist())
        per_dossier = Counter(
            d for r in rows for d in clf.classify(Post.model_validate(r)).dossiers
        )
        # the copies of the second replay are counted once: the trend series are detect's
        want = per_dossier["china-ai-rising"]
        assert want > 0
        expr = 'sum(seismo_dossier_posts_total{dossier="china-ai-rising"})'
        wait_until(
            lambda: float(prometheus.wait_for(expr)[0]["value"][1]) == want,
            lambda: f"{expr} == {want}; at {prometheus.query(expr)}",
            RECORD_ARRIVES,
            1.0,
        )

        # posts pushed through a real connector (the connector panels;
        # after the dossier count above, which they would change); one invalid line
        push(x_push, ndjson(x_post(1), x_post(2), {"data": {"id": "no text"}}))
        prometheus.wait_for('rate(seismo_connector_events_total{outcome="produced"}[2m]) > 0')

        empty = []
        checked = 0
        for name, dash in dashboards().items():
            for p in panels(dash):
                for t in p["targets"]:
                    expr = substitute(t["expr"])
                    checked += 1
                    if not prometheus.query(expr):
                        empty.append(f"{name} / {p['title']}: {expr}")
            for v in dash["templating"]["list"]:
                m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])
                assert m, v
                values = prometheus.api(f"label/{m[2]}/values", **{"match[]": substitute(m[1])})
                if not values:
                    empty.append(f"{name} / variable {v['name']}: {v['query']['query']}")
        assert checked >= 20
        assert not empty, "queries without data:\n" + "\n".join(empty)

        # the alert rules evaluate without errors against the real series
        groups = prometheus.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) >= 9
        assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
        assert prometheus.query("topic:seismo_consumer_lag_records:sum")
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
