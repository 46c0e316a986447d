"""Settings groups (detector, delivery, connectors): names, sources, the params objects
they build, and what a setting's name of before the groups gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from seismo import kafka
from seismo.config import (
    MOVED,
    ConnectorSettings,
    DeliverySettings,
    DetectorSettings,
    Settings,
    env_name,
    load_settings,
    setting_names,
)
from seismo.errors import ConfigError
from seismo.kafka import ProducerPurpose
from seismo.retry import RetryPolicy
from streams.params import BookParams, DetectorParams


def test_env_name_of_a_setting_in_a_group() -> None:
    assert env_name("web_port") == "SEISMO_WEB_PORT"
    assert env_name("detector.min_score") == "SEISMO_DETECTOR__MIN_SCORE"


def test_every_group_setting_has_a_description() -> None:
    for group in (DetectorSettings, DeliverySettings, ConnectorSettings):
        assert all(f.description for f in group.model_fields.values()), group
    assert {"detector.min_score", "delivery.attempts", "connectors.enabled"} <= set(setting_names())


def test_the_params_objects_are_built_from_the_groups_with_the_same_defaults() -> None:
    s = Settings()
    assert s.detector.params() == DetectorParams()
    assert s.detector.params().book() == BookParams()
    assert s.delivery.params() == RetryPolicy()


def test_a_group_setting_reaches_the_params_object() -> None:
    s = load_settings(detector={"min_score": 5.5, "scales": [1, 6], "sketch_width_bits": 12})
    p = s.detector.params()
    assert (p.min_score, p.scales, p.sketch_width) == (5.5, (1, 6), 1 << 12)
    assert p.beta == DetectorParams().beta  # not a setting: the detector's own default
    assert load_settings(**{"delivery.attempts": 2}).delivery.params().attempts == 2


def test_yaml_env_and_flags_merge_within_a_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("detector: {min_score: 5, min_count: 3}\nconnectors: {enabled: [rss]}\n")
    monkeypatch.setenv("SEISMO_DETECTOR__MIN_COUNT", "4")
    s = load_settings(cfg, detector={"min_z": 2.0})
    assert (s.detector.min_score, s.detector.min_count, s.detector.min_z) == (5.0, 4, 2.0)
    assert s.connectors.enabled == ["rss"]


def test_a_setting_of_before_the_groups_names_its_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("min_score: 5\n")
    with pytest.raises(ConfigError, match=r"min_score .*detector\.min_score now "):
        load_settings(cfg)
    monkeypatch.setenv("SEISMO_WEBHOOK_ATTEMPTS", "3")
    with pytest.raises(ConfigError, match=r"SEISMO_WEBHOOK_ATTEMPTS .*SEISMO_DELIVERY__ATTEMPTS"):
        load_settings()
    monkeypatch.delenv("SEISMO_WEBHOOK_ATTEMPTS")
    monkeypatch.setenv("SEISMO_CONNECTORS", '["rss"]')
    with pytest.raises(ConfigError, match=r"connectors\.enabled \(SEISMO_CONNECTORS__ENABLED\)"):
        load_settings()
    assert all(new in setting_names() for new in MOVED.values())


def test_a_list_setting_in_a_group_that_is_not_json_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEISMO_DETECTOR__MIN_Z", "abc")  # not JSON either, but no list
    monkeypatch.setenv("SEISMO_DETECTOR__SCALES", "1,6")
    with pytest.raises(ConfigError, match="SEISMO_DETECTOR__SCALES is not valid JSON"):
        load_settings()


def test_a_misspelt_group_setting_gets_a_did_you_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEISMO_DETECTOR__MIN_SCOR", "5")
    with pytest.raises(ConfigError, match=r"did you mean detector\.min_score"):
        load_settings()


@pytest.mark.parametrize("purpose", ["connector", "replay", "redeliver"])
def test_every_producer_is_idempotent_with_acks_all(
    purpose: ProducerPurpose, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(kafka, "AIOKafkaProducer", lambda **kw: made.append(kw))
    kafka.make_producer(Settings(kafka_bootstrap="k1:9092,k2:9092"), purpose)
    (kw,) = made
    assert kw["bootstrap_servers"] == "k1:9092,k2:9092" and kw["client_id"] == f"seismo-{purpose}"
    assert kw["acks"] == kafka.ACKS_ALL == -1 and kw["enable_idempotence"] is True
    assert kw["linger_ms"] == (0 if purpose == "redeliver" else 20)
