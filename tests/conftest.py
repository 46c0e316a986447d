"""Shared fixtures. The real Kafka broker is started once per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers import SHARED_DATA, worker_env_for
from tests.timeouts import BROKER_START

# Property tests judge results, never speed: no per-example deadline and no "too slow"
# health check (on a loaded CI machine an example can take seconds). Example counts stay
# as each test sets them.
settings.register_profile(
    "seismo", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("seismo")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real single-node KRaft Kafka started for this session."""
    from seismo.broker import EmbeddedKafka

    broker = EmbeddedKafka(tmp_path_factory.mktemp("kafka"), port=0)
    broker.start(timeout=BROKER_START)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def namespace() -> str:
    """A fresh topic/group namespace, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def worker_env(kafka: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    return worker_env_for(kafka, namespace, tmp_path)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (evaluation data lives outside the repo)")
    return SHARED_DATA
