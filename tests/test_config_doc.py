"""docs/configuration.md is generated from the settings (seismo/config_doc.py); these tests
keep the committed page equal to the generator's output and every setting described."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from seismo import config_doc
from seismo.config import Settings
from tests.helpers import setting_names

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "configuration.md"


def test_the_committed_configuration_page_is_the_generators_output() -> None:
    committed = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    assert committed == config_doc.render(), (
        "docs/configuration.md is stale (a setting changed in seismo/config.py); "
        f"regenerate it with: {config_doc.REGENERATE}"
    )


def test_every_setting_has_a_row_with_its_env_variable_and_a_description() -> None:
    page = config_doc.render()
    for name in setting_names(Settings):  # a setting of a group: "detector.min_score"
        env = "SEISMO_" + name.replace(".", "__").upper()
        assert f"| `{name}` | `{env}` |" in page, name
    undescribed = [r.name for r in config_doc.rows() if not r.description.strip()]
    assert not undescribed, (
        f"settings without a description: {undescribed}; give each a "
        "Field(description=...) in seismo/config.py, then regenerate with: "
        f"{config_doc.REGENERATE}"
    )


class _Detector(BaseModel):
    """Burst detection."""

    min_score: float = Field(default=4.0, gt=0, description="score a burst needs")
    scales: list[int] = Field(default_factory=lambda: [1, 6], description="time scales")


class _Delivery(BaseModel):
    secrets: list[SecretStr] = Field(default_factory=list, description="signing secrets")


class _Nested(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEISMO_", env_nested_delimiter="__")

    namespace: str = Field(default="", description="topic prefix")
    detector: _Detector = Field(default_factory=_Detector)
    delivery: _Delivery = Field(default_factory=_Delivery, description="Sinks and retries.")


def test_groups_of_settings_are_listed_by_dotted_name_and_nested_env_variable() -> None:
    got = {r.name: r for r in config_doc.rows(_Nested)}
    assert list(got) == setting_names(_Nested)
    assert list(got) == ["namespace", "detector.min_score", "detector.scales", "delivery.secrets"]
    assert got["detector.min_score"].env == "SEISMO_DETECTOR__MIN_SCORE"
    assert got["detector.min_score"].type == "float (> 0)"
    assert got["detector.scales"].default == "`[1, 6]`"
    assert got["delivery.secrets"].type == "list of secret"
    groups = config_doc.groups(_Nested)
    assert [(g, about) for g, about, _ in groups] == [
        ("", ""),
        ("detector", "Burst detection."),
        ("delivery", "Sinks and retries."),
    ]
    page = config_doc.render(_Nested)
    assert "\n## `detector`\n\nBurst detection.\n" in page
    assert (
        "| `detector.min_score` | `SEISMO_DETECTOR__MIN_SCORE` | float (> 0) | `4.0` "
        "| score a burst needs |"
    ) in page
