"""The watchlist: dossiers we feed and the claims we track, loaded from YAML."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from seismo.errors import ConfigError

BUNDLED = Path(__file__).with_name("watchlist.example.yaml")


class Dossier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    description: str = ""
    keywords: list[str] = Field(min_length=1)
    examples: list[str] = Field(
        default_factory=list, description="example posts; the model classifier learns from them"
    )


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    text: str
    dossier: str | None = None
    keywords: list[str] = Field(min_length=1)
    min_keywords: int = Field(default=2, ge=1, description="distinct keywords a post must hit")


class Watchlist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dossiers: list[Dossier] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refs(self) -> Watchlist:
        ids = [d.id for d in self.dossiers]
        if len(set(ids)) != len(ids):
            raise ValueError("dossier ids must be unique")
        cids = [c.id for c in self.claims]
        if len(set(cids)) != len(cids):
            raise ValueError("claim ids must be unique")
        for c in self.claims:
            if c.dossier is not None and c.dossier not in ids:
                raise ValueError(f"claim {c.id!r} names unknown dossier {c.dossier!r}")
            if c.min_keywords > len(c.keywords):
                raise ValueError(f"claim {c.id!r}: min_keywords exceeds its keyword count")
        return self

    def dossier(self, dossier_id: str) -> Dossier | None:
        return next((d for d in self.dossiers if d.id == dossier_id), None)

    def claim(self, claim_id: str) -> Claim | None:
        return next((c for c in self.claims if c.id == claim_id), None)


def load_watchlist(path: Path | None = None) -> Watchlist:
    """Load and validate a watchlist file (the bundled example when ``path`` is None)."""
    p = path or BUNDLED
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read watchlist {p}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"watchlist {p} is not valid YAML: {exc}") from exc
    try:
        return Watchlist.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"watchlist {p} is invalid: {exc}") from exc
