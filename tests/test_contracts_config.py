"""Wire contracts, settings and the watchlist file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from seismo.config import Settings, load_settings
from seismo.contracts import Alert, Post, dead_letter, decode
from seismo.errors import ConfigError, ContractError
from seismo.watchlist import load_watchlist
from tests.helpers import setting_names

GOOD = b'{"id":"1","source":"x","text":"hi","created_at":"2013-05-20T00:00:35Z"}'


def test_post_parses_and_tolerates_added_fields() -> None:
    p = decode(Post, GOOD[:-1] + b',"brand_new_field":{"a":1}}')
    assert p.key == "x:1"
    assert p.created_at == datetime(2013, 5, 20, 0, 0, 35, tzinfo=UTC)
    assert decode(Post, p.to_bytes()) == p


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid Post"),
        (b'{"id":"1","source":"x","created_at":"2013-05-20T00:00:35Z"}', "text: Field required"),
        (b'{"id":"1","source":"x","text":"a","created_at":"2013-05-20T00:00:35"}', "timezone"),
        (b'{"id":"1","source":"X Y","text":"a","created_at":"2013-05-20T00:00:35Z"}', "source"),
        (b'{"id":"","source":"x","text":"a","created_at":"2013-05-20T00:00:35Z"}', "id"),
    ],
)
def test_bad_posts_give_a_readable_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as ei:
        decode(Post, raw)
    assert reason in ei.value.reason


def test_dead_letter_keeps_value_and_reason() -> None:
    dl = dead_letter("ingest", "bad", "posts.raw.v1", b"\xff\xfegarbage", key=b"k", offset=3)
    assert dl.reason == "bad" and dl.offset == 3 and "garbage" in dl.value and dl.key == "k"


def test_alert_contract_requires_evidence_fields() -> None:
    with pytest.raises(ContractError):
        decode(Alert, b'{"id":"a","kind":"term"}')


def test_settings_precedence_and_masking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "seismo.yaml"
    cfg.write_text("web_port: 7000\nnamespace: fromfile\nwebhook_token: s3cret\n")
    monkeypatch.setenv("SEISMO_NAMESPACE", "fromenv")
    s = load_settings(cfg)
    assert s.web_port == 7000  # file
    assert s.namespace == "fromenv"  # env beats file
    assert load_settings(cfg, web_port=7001).web_port == 7001  # flags beat both
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.masked())
    assert s.webhook_token is not None and s.webhook_token.get_secret_value() == "s3cret"
    assert s.topic("posts.raw.v1") == "fromenv.posts.raw.v1"


def test_settings_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEISMO_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    monkeypatch.delenv("SEISMO_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="invalid settings"):
        load_settings(web_port="not-a-port")
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigError):
        load_settings(bad)


def test_bundled_watchlist_is_drawn_from_the_seeds() -> None:
    wl = load_watchlist()
    assert wl.dossier("china-ai-rising") is not None
    claim = wl.claim("glm5-trained-on-ascend")
    assert claim is not None and "Huawei Ascend" in claim.text


def test_watchlist_rejects_dangling_dossier(tmp_path: Path) -> None:
    p = tmp_path / "wl.yaml"
    p.write_text("claims:\n  - {id: c1, text: t, dossier: nope, keywords: [a]}\n")
    with pytest.raises(ConfigError, match="unknown dossier"):
        load_watchlist(p)


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("SEISMO_RSS_FEEDS", '["https://ok.example/feed", "example.org/feed.xml"]', "item 1"),
        ("SEISMO_HN_API_URL", "hacker-news.firebaseio.com/v0", "http:// or https://"),
        ("SEISMO_X_API_URL", "wss://api.x.com/2", "http:// or https://"),
        ("SEISMO_REDDIT_OAUTH_URL", "https://", "with a host"),
        ("SEISMO_BLUESKY_JETSTREAM_URL", "http://jetstream.example/xrpc", "ws:// or wss://"),
        ("SEISMO_BLUESKY_FIREHOSE_URL", "bsky.network", "ws:// or wss://"),
    ],
)
def test_connector_urls_without_a_usable_scheme_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=f"{env}.*{message}"):
        load_settings()


def test_connector_urls_with_their_schemes_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEISMO_RSS_FEEDS", '["http://a.example/feed", "HTTPS://b.example/x"]')
    monkeypatch.setenv("SEISMO_BLUESKY_FIREHOSE_URL", "ws://127.0.0.1:6008/xrpc")
    s = load_settings()
    assert s.rss_feeds[1] == "HTTPS://b.example/x"
    assert s.bluesky_firehose_url == "ws://127.0.0.1:6008/xrpc"


def test_every_setting_is_in_the_configuration_page_with_a_description() -> None:
    page = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    described: set[str] = set()
    for row in page.splitlines():
        cells = [c.strip() for c in row.split(" | ")]
        if row.startswith("| `") and len(cells) >= 5 and cells[-1].strip("| "):
            described.add(cells[0].strip("|` "))
    missing = [name for name in setting_names(Settings) if name not in described]
    assert not missing, (
        f"settings missing from docs/configuration.md (or without a description): {missing}; "
        "give them a Field(description=...) in seismo/config.py and regenerate the page: "
        ".venv/bin/python -m seismo.config_doc > docs/configuration.md"
    )


def test_webhook_and_chat_urls_without_a_scheme_are_one_config_error_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEISMO_WEBHOOK_URLS", '["http://ok.example/hook", "127.0.0.1:9000/hook"]')
    monkeypatch.setenv("SEISMO_CHAT_WEBHOOK_URLS", '["hooks.slack.com/services/T0/B0/sekrit"]')
    with pytest.raises(ConfigError) as err:
        load_settings()
    lines = str(err.value).splitlines()
    assert "webhook_urls (SEISMO_WEBHOOK_URLS): item 1: " in lines[1]
    assert "'127.0.0.1:9000/hook'" in lines[1] and "http:// or https://" in lines[1]
    assert "chat_webhook_urls (SEISMO_CHAT_WEBHOOK_URLS): item 0: " in lines[2]
    assert "sekrit" not in str(err.value)  # a chat URL is a secret: never echoed
    with pytest.raises(ConfigError, match=r"webhook_urls \(command-line flag\): item 0"):
        load_settings(webhook_urls=["example.org/hook"])  # `--webhook`, `alerts redeliver --to`


def test_a_yaml_key_typo_gets_a_did_you_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("min_zz: 3\nwebhook_url: ['http://x/hook']\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "min_zz (" in str(err.value) and "unknown field; did you mean detector.min_z?" in str(
        err.value
    )
    assert "did you mean webhook_urls?" in str(err.value)


def test_topic_replication_settings() -> None:
    s = load_settings(topic_replication_factor=3, topic_min_insync_replicas=2)
    assert (s.topic_replication_factor, s.topic_min_insync_replicas) == (3, 2)
    assert (Settings().topic_replication_factor, Settings().topic_min_insync_replicas) == (1, 1)
    with pytest.raises(ConfigError, match="cannot exceed topic_replication_factor"):
        load_settings(topic_replication_factor=1, topic_min_insync_replicas=2)
