"""Deployment files checked offline: dashboards, provisioning, alert rules, compose, image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

from connectors.base import CursorStore, FatalSourceError
from connectors.cli import SOURCES, build_source
from seismo.config import Settings, env_name, setting_names
from seismo.metrics import ConsumerOffsets, Metrics
from tests.helpers import DEPLOY, GRAFANA, PROMETHEUS, REPO, dashboards, panels
from tests.timeouts import COMMAND_FINISHES

# a metric name, not part of a recording rule's level:metric:operation name
METRIC_NAME = re.compile(r"(?<![:\w])(seismo_[a-z0-9_]+)(?![:\w])")
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


def dashboard_exprs() -> list[str]:
    return [t["expr"] for d in dashboards().values() for p in panels(d) for t in p["targets"]]


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def exported_names() -> set[str]:
    """Every sample name the worker can export: seismo_* and Faust's seismo_faust_*."""
    registry = CollectorRegistry()
    Metrics(registry, process="all")
    registry.register(ConsumerOffsets(lambda: [("t", 0, 2, 1)]))
    FaustMetrics.create(registry, "seismo_faust")  # with faust_metrics on
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    return {
        fam.name + suffix for fam in registry.collect() for suffix in suffixes.get(fam.type, [""])
    }


def test_dashboards_are_generated_from_the_committed_script() -> None:
    res = subprocess.run(
        [sys.executable, str(GRAFANA / "build_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("args", [["--help"], ["--bogus"]])
def test_dashboard_script_help_and_bad_options_write_nothing(args: list[str]) -> None:
    before = {p: p.stat().st_mtime_ns for p in (GRAFANA / "dashboards").glob("*.json")}
    res = subprocess.run(
        [sys.executable, str(GRAFANA / "build_dashboards.py"), *args],
        capture_output=True,
        text=True,
    )
    assert res.returncode == (0 if args == ["--help"] else 2), res.stderr
    assert "--check" in res.stdout + res.stderr
    assert {p: p.stat().st_mtime_ns for p in (GRAFANA / "dashboards").glob("*.json")} == before


def test_dashboards_are_well_formed_and_use_the_provisioned_datasource() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    found = dashboards()
    assert {"pipeline.json", "trends.json"} <= set(found)
    uids = [d["uid"] for d in found.values()]
    assert len(set(uids)) == len(uids)
    for name, dash in found.items():
        defined = {v["name"] for v in dash["templating"]["list"]} | GRAFANA_BUILTINS
        ids = [p["id"] for p in dash["panels"]]
        assert len(set(ids)) == len(ids), name
        assert panels(dash), name
        for p in panels(dash):
            where = f"{name}: {p['title']}"
            assert p["datasource"]["uid"] == uid, where
            assert p["targets"], where
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24 and g["h"] > 0, where
            for t in p["targets"]:
                assert t["datasource"]["uid"] == uid, where
                assert t["expr"].strip(), where
                used = set(re.findall(r"\$(\w+)", t["expr"]))
                assert used <= defined, f"{where}: undefined variables {used - defined}"
        for v in dash["templating"]["list"]:
            assert v["datasource"]["uid"] == uid
            assert re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])


def test_dashboard_provider_points_where_compose_mounts_the_dashboards() -> None:
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/seismo.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


@pytest.mark.parametrize("source", ["dashboards", "alert rules"])
def test_every_metric_queried_is_one_the_worker_exports(source: str) -> None:
    exprs = dashboard_exprs() if source == "dashboards" else rule_exprs()
    names = {n for e in exprs for n in METRIC_NAME.findall(e)}
    assert names, source
    assert names <= exported_names(), f"unknown metrics: {sorted(names - exported_names())}"


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool not installed (Debian package prometheus; `make system-deps`)")
    return exe


@pytest.mark.parametrize(
    "args",
    [
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["check", "config", "local.yml"],
        ["test", "rules", "alerts.test.yml"],
    ],
    ids=["check-rules", "check-config", "check-local-config", "test-rules"],
)
def test_promtool(args: list[str]) -> None:
    res = subprocess.run(
        [promtool(), *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=COMMAND_FINISHES,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


# compose profiles: `connectors` starts the connectors that need no settings, the others
# one connector each (named after it)
PROFILES = ["connectors", "tools", "reddit", "x", "x-push", "rss", "bluesky", "hackernews"]


def compose_config(tmp_path: Path) -> dict[str, Any]:
    """``docker-compose config`` of the repository's file, every profile, with .env and
    seismo.env from their examples."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose not installed (Debian package docker-compose)")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    shutil.copy(REPO / "seismo.env.example", tmp_path / "seismo.env")
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    cmd = [exe, "--project-directory", str(tmp_path), "-f", str(tmp_path / "docker-compose.yml")]
    every = [arg for p in PROFILES for arg in ("--profile", p)]
    for extra in (["config", "-q"], [*every, "config"]):
        res = subprocess.run(
            [*cmd, *extra], capture_output=True, text=True, timeout=COMMAND_FINISHES
        )
        assert res.returncode == 0, res.stderr
    parsed: dict[str, Any] = yaml.safe_load(res.stdout)
    return parsed


def test_compose_file_is_valid_and_complete(tmp_path: Path) -> None:
    services = compose_config(tmp_path)["services"]
    assert {"kafka", "worker", "prometheus", "grafana", "replay"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    # the worker scales to N replicas: no fixed host port, no container name
    worker = services["worker"]
    assert "ports" not in worker and "container_name" not in worker
    assert worker["environment"]["SEISMO_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    # each connector runs `seismo connect SOURCE` and is scraped by Prometheus
    prom = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    scraped = set(jobs["seismo-connectors"]["dns_sd_configs"][0]["names"])
    connectors = {n: s for n, s in services.items() if n.startswith("connector-")}
    assert set(connectors) == scraped
    for name, svc in connectors.items():
        source = name.removeprefix("connector-")
        assert svc["command"] == ["connect", source]
        assert source in svc["profiles"] and set(svc["profiles"]) <= set(PROFILES)
        port = jobs["seismo-connectors"]["dns_sd_configs"][0]["port"]
        assert svc["environment"]["SEISMO_METRICS_PORT"] == str(port)
    assert jobs["seismo-worker"]["dns_sd_configs"][0]["names"] == ["worker"]
    # docker-compose 1.29 prints volumes as "source:target:mode" strings
    assert any(":/etc/prometheus:" in str(v) for v in services["prometheus"]["volumes"])
    # Grafana's provisioned datasource is that Prometheus
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    url_var = re.fullmatch(r"\$\{(\w+)\}", ds["datasources"][0]["url"])
    assert url_var, ds
    assert services["grafana"]["environment"][url_var[1]] == "http://prometheus:9090"


def test_compose_needs_the_grafana_password_from_env(tmp_path: Path) -> None:
    compose_config(tmp_path)  # skips without docker-compose
    env = (tmp_path / ".env").read_text().replace("GRAFANA_ADMIN_PASSWORD=", "#")
    (tmp_path / ".env").write_text(env)
    res = subprocess.run(
        ["docker-compose", "--project-directory", str(tmp_path), "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_FINISHES,
    )
    assert res.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in res.stderr


def test_dockerfile_copies_every_package_the_project_installs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set()
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for s in sources:
                assert (REPO / s).exists(), s
                copied.add(s)
    assert {p.rstrip("*") for p in packages} <= copied
    assert "pyproject.toml" in copied


def test_the_image_installs_the_locked_versions() -> None:
    """The image gets what CI tested: requirements.lock constrains its install, build
    dependencies included (PIP_CONSTRAINT reaches pip's isolated build environment)."""
    text = (DEPLOY / "Dockerfile").read_text()
    copied = [line.split()[1:-1] for line in text.splitlines() if line.startswith("COPY ")]
    assert any("requirements.lock" in sources for sources in copied)
    assert "PIP_CONSTRAINT=requirements.lock pip install --no-cache-dir ." in text


def connector_services(tmp_path: Path) -> dict[str, dict[str, Any]]:
    services = compose_config(tmp_path)["services"]
    return {n.removeprefix("connector-"): s for n, s in services.items() if "connector-" in n}


def test_the_connectors_profile_starts_only_connectors_that_need_no_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a connector without its settings exits at start and restarts over and over
    for key in [k for k in os.environ if k.startswith("SEISMO_")]:
        monkeypatch.delenv(key)
    services = connector_services(tmp_path)
    assert set(services) == set(SOURCES)
    by_default = set()
    for source, svc in services.items():
        try:
            build_source(source, Settings())
            by_default.add(source)
        except FatalSourceError:
            assert svc["profiles"] == [source], source
    assert by_default == {s for s, svc in services.items() if "connectors" in svc["profiles"]}
    assert by_default, "no connector starts without settings"


def env_example_settings() -> dict[str, str]:
    """Every SEISMO_* line of seismo.env.example, commented placeholders included."""
    text = (REPO / "seismo.env.example").read_text(encoding="utf-8")
    found = re.findall(r"^#? ?(SEISMO_\w+)=(.*)$", text, flags=re.M)
    return {name: value for name, value in found}


def test_seismo_env_example_documents_every_connectors_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = env_example_settings()
    assert settings.keys() <= {env_name(f) for f in setting_names()}
    for key in [k for k in os.environ if k.startswith("SEISMO_")]:
        monkeypatch.delenv(key)
    for name, value in settings.items():
        if name != "SEISMO_WATCHLIST":  # a path inside the container
            monkeypatch.setenv(name, value or "placeholder")
    # with every placeholder filled in, every connector starts
    for source in SOURCES:
        assert build_source(source, Settings()).name, source


def test_x_push_listens_on_all_addresses_and_is_published_on_loopback(tmp_path: Path) -> None:
    svc = connector_services(tmp_path)["x-push"]
    env = svc["environment"]
    assert env["SEISMO_X_PUSH_HOST"] == "0.0.0.0"
    # docker-compose 1.29 prints ports as "host_ip:published:target/proto"
    published = [str(p) for p in svc["ports"]]
    assert len(published) == 1, published
    host_ip, _port, target = published[0].removesuffix("/tcp").split(":")
    assert host_ip == "127.0.0.1" and target == env["SEISMO_X_PUSH_PORT"]


def image_env(name: str) -> str:
    """A variable the Dockerfile sets with ENV."""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            found = re.search(rf"\b{name}=(\S+)", line)
            if found:
                return found[1]
    raise AssertionError(f"Dockerfile sets no {name}")


def test_connector_cursors_are_on_a_named_volume(tmp_path: Path) -> None:
    config = compose_config(tmp_path)
    data_dir = Path(image_env("SEISMO_DATA_DIR"))
    # the image creates the data dir for its user: a new named volume copies its owner
    assert f"install -d -o nobody -g nogroup {data_dir}" in (DEPLOY / "Dockerfile").read_text()
    assert "USER nobody" in (DEPLOY / "Dockerfile").read_text()
    cursors = set()
    for source, svc in connector_services(tmp_path).items():
        data = Path(svc["environment"].get("SEISMO_DATA_DIR", data_dir))
        cursor = CursorStore.for_source(Settings(data_dir=data), source).path
        mounts = [str(v).split(":") for v in svc["volumes"]]
        named = [(src, Path(dst)) for src, dst, *_ in mounts if src in config["volumes"]]
        assert any(cursor.is_relative_to(dst) for _src, dst in named), (source, mounts)
        cursors.add(cursor)
    assert len(cursors) == len(SOURCES)  # one volume may hold them all


def test_seismo_containers_get_only_seismo_settings(tmp_path: Path) -> None:
    services = compose_config(tmp_path)["services"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "change-me"
    for name, svc in services.items():
        if svc.get("image") == "seismo:latest":
            env = svc.get("environment", {})
            assert all(key.startswith("SEISMO_") for key in env), (name, sorted(env))
