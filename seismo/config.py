"""Settings: one frozen pydantic-settings class per process.

Precedence (highest first): explicit overrides (CLI flags) > ``SEISMO_*`` environment
variables > the YAML config file (``--config`` or ``SEISMO_CONFIG``) > defaults.
Secrets are ``SecretStr`` and print masked.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from seismo.errors import ConfigError

_CONFIG_ENV = "SEISMO_CONFIG"
_config_file: ContextVar[Path | None] = ContextVar("seismo_config_file", default=None)


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``SEISMO_CONFIG`` (set by ``--config`` too)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        p = _config_file.get()
        if p is None:
            env = os.environ.get(_CONFIG_ENV)
            if not env:
                return {}
            p = Path(env)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        return data


class Settings(BaseSettings):
    """Everything a seismo process can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="SEISMO_",
        frozen=True,
        extra="forbid",
        env_nested_delimiter="__",
    )

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port] of an external Kafka; unset = embedded broker",
    )
    namespace: str = Field(
        default="",
        description="prefix for topic names and the consumer group (isolates deployments)",
    )
    topic_partitions: int = Field(
        default=4, ge=1, description="partitions of keyed topics (signals, alerts, DLQ)"
    )
    raw_partitions: int = Field(
        default=1,
        ge=1,
        description="partitions of posts.raw.v1: 1 keeps posts in event order end to end, "
        "so the detector's results do not depend on consumer timing",
    )
    topic_retention_bytes: int = Field(
        default=1 << 30,
        description="per-partition size cap; time retention is off since records carry event time",
    )

    # --- embedded broker ---------------------------------------------------------------
    data_dir: Path = Field(default=Path(".seismo"), description="broker data, caches, state")
    broker_port: int = 9092
    broker_heap: str = "512m"

    # --- worker ------------------------------------------------------------------------
    app_id: str = "seismo"
    watchlist: Path | None = Field(
        default=None, description="watchlist YAML; unset = the bundled example watchlist"
    )
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    worker_fast_join: bool = Field(
        default=True, description="short session/heartbeat timeouts: quick starts on one node"
    )

    # --- burst detection (event time) -------------------------------------------------
    bucket_seconds: int = Field(default=3600, ge=1)
    baseline_halflife_buckets: float = Field(default=12.0, gt=0)
    baseline_floor: float = Field(default=0.3, gt=0)
    min_count: int = Field(default=4, ge=1)
    min_score: float = Field(default=4.0, gt=0, description="-log10 of the Poisson p-value")
    cooldown_seconds: int = Field(default=6 * 3600, ge=0)
    warmup_seconds: int = Field(
        default=2 * 3600, ge=0, description="event time watched before anything is raised"
    )
    evidence_size: int = Field(default=12, ge=1)
    max_terms_per_post: int = Field(default=16, ge=1)

    # --- alerts out --------------------------------------------------------------------
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_token: SecretStr | None = None
    webhook_timeout_seconds: float = 5.0
    alerts_out: Path | None = None

    # --- models (classify step) ------------------------------------------------------------
    classifier: Literal["keyword", "cascade", "full"] = Field(
        default="cascade",
        description="keyword: watchlist matching only; full: MiniLM on every post; "
        "cascade: MiniLM only on posts the keyword/vocabulary gate lets through",
    )
    model_dir: Path | None = Field(
        default=None, description="trained heads (stance-v1, topic-v1); unset = bundled ones"
    )
    model_threads: int = Field(default=2, ge=1, description="ONNX Runtime intra-op threads")
    classify_batch_size: int = Field(
        default=1, ge=1, description="posts per model batch in the ingest agent; 1 = no batching"
    )
    classify_batch_wait_ms: float = Field(
        default=50.0, ge=0, description="longest a post waits for its batch to fill"
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_ok(cls, v: str) -> str:
        if v and not all(c.isalnum() or c in "-_." for c in v):
            raise ValueError("namespace may hold letters, digits, '-', '_' and '.' only")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))

    def partitions(self, name: str) -> int:
        """Partition count of a contract topic."""
        return self.raw_partitions if name == "posts.raw.v1" else self.topic_partitions

    def topic(self, name: str) -> str:
        """The full topic name for a contract topic, with the namespace prefix."""
        return f"{self.namespace}.{name}" if self.namespace else name

    @property
    def group_id(self) -> str:
        return f"{self.namespace}.{self.app_id}" if self.namespace else self.app_id

    def masked(self) -> dict[str, Any]:
        """Settings as a JSON-able dict, secrets shown as ``**********``."""
        return self.model_dump(mode="json")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings; ``config_file`` wins over ``SEISMO_CONFIG``. Raises ConfigError."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    token = _config_file.set(config_file)
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc
    finally:
        _config_file.reset(token)
