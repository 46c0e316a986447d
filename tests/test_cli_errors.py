"""Bad settings, bad input files and busy ports end in one clear line, not a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from seismo.cli import build_parser, main
from seismo.config import ENV_CHECKED, load_settings
from seismo.errors import ConfigError, SeismoError
from seismo.metrics import serve_metrics
from seismo.ports import PortError
from tests.helpers import REPO, synthetic_stream, write_jsonl
from tests.timeouts import COMMAND_FINISHES


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("SEISMO_"):
            monkeypatch.delenv(key)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def seismo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``seismo ARGS`` in a child process (for the top-level error path)."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SEISMO_")}
    return subprocess.run(
        [sys.executable, "-m", "seismo.cli", *args],
        env={**clean, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=COMMAND_FINISHES,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines and lines[-1].startswith("seismo: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    return lines[-1]


# --- settings from the environment and the file ----------------------------------------


@pytest.mark.parametrize("var", ["SEISMO_WEBHOOK_URLS", "SEISMO_RSS_FEEDS"])
def test_a_list_setting_in_env_that_is_not_json_names_the_variable(
    var: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, "http://x/hook")
    with pytest.raises(ConfigError) as info:
        load_settings()
    msg = str(info.value)
    assert var in msg and "JSON list" in msg
    assert f"""{var}='["http://x/hook"]'""" in msg  # the example is the fix
    monkeypatch.setenv(var, '["http://x/hook"]')
    assert load_settings().model_dump()[var.removeprefix("SEISMO_").lower()] == ["http://x/hook"]


def test_a_secret_list_setting_is_not_echoed_in_the_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEISMO_WEBHOOK_SECRETS", "hush-hush")
    with pytest.raises(ConfigError, match="SEISMO_WEBHOOK_SECRETS") as info:
        load_settings()
    assert "hush-hush" not in str(info.value)


def test_env_list_error_is_one_line_for_every_command() -> None:
    # config and replay both build settings through settings_from (replay fails before Kafka)
    for args in (["config"], ["replay", "nothing.jsonl"]):
        proc = seismo(*args, env={"SEISMO_WEBHOOK_URLS": "http://x/hook"})
        assert_one_line_error(proc, "SEISMO_WEBHOOK_URLS", "JSON list")
        assert len(proc.stderr.strip().splitlines()) == 1


def test_validation_errors_say_where_each_bad_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("webhook_urls: 3\nno_such_setting: 1\ndetector: {min_count: 2}\n")
    monkeypatch.setenv("SEISMO_DETECTOR__MIN_Z", "abc")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, web_port=70000)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid settings:"
    body = sorted(line.strip() for line in lines[1:])
    assert len(body) == 4, body
    assert body[0].startswith(
        "detector.min_z (SEISMO_DETECTOR__MIN_Z): Input should be a valid number"
    )
    assert body[1].startswith(f"no_such_setting ({cfg} key no_such_setting): unknown")
    assert body[2].startswith("web_port (command-line flag): Input should be less than")
    assert body[3].startswith(f"webhook_urls ({cfg} key webhook_urls): Input should be")
    assert "errors.pydantic.dev" not in str(info.value) and "abc" not in str(info.value)


def test_one_bad_field_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(detector={"min_z": "x"})
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("invalid settings: detector.min_z (command-line flag): ")


@pytest.mark.parametrize("field", ["broker_port", "web_port", "live_port", "x_push_port"])
def test_ports_are_validated(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("0", "65536", "99999"):
        monkeypatch.setenv(f"SEISMO_{field.upper()}", bad)
        with pytest.raises(ConfigError, match=f"{field} \\(SEISMO_{field.upper()}\\)"):
            load_settings()
    monkeypatch.setenv(f"SEISMO_{field.upper()}", "65535")
    assert getattr(load_settings(), field) == 65535


def test_broker_port_flag_out_of_range_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker", "--port", "99999"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("seismo: error: invalid settings: broker_port (command-line flag)")
    assert "\n" not in err


def test_unknown_seismo_env_var_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SEISMO_MIN_ZZ", "3")
    # read by the project outside Settings: no warning
    for other in ("SEISMO_CONFIG", "SEISMO_CACHE_DIR", "SEISMO_PURE_PYTHON"):
        monkeypatch.setenv(other, "")
    monkeypatch.setenv("SEISMO_DETECTOR__MIN_Z", "2.5")
    with caplog.at_level(logging.WARNING, logger="seismo.config"):
        assert load_settings().detector.min_z == 2.5
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert "SEISMO_MIN_ZZ" in warned[0] and "did you mean SEISMO_DETECTOR__MIN_Z?" in warned[0]


def test_the_children_of_run_do_not_warn_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SEISMO_CHILD_TYPO", "1")  # a name no other test warns about
    monkeypatch.setenv(ENV_CHECKED, "1")  # what `seismo run` gives its children
    with caplog.at_level(logging.WARNING, logger="seismo.config"):
        load_settings()
    assert not [r for r in caplog.records if "SEISMO_CHILD_TYPO" in r.getMessage()]


def test_unknown_seismo_env_var_warning_reaches_stderr() -> None:
    proc = seismo("config", env={"SEISMO_NO_SUCH_THING": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "SEISMO_NO_SUCH_THING" in proc.stderr and "not a seismo setting" in proc.stderr
    json.loads(proc.stdout)  # stdout stays machine-readable


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`seismo config | head`: the pipe's reader is gone before seismo writes; no traceback,
    the exit status a shell gives a process ended by SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before a byte was written
    err = tmp_path / "stderr"
    with err.open("wb") as stderr:
        proc = subprocess.run(
            [sys.executable, "-m", "seismo.cli", "config"],
            stdout=write_end,
            stderr=stderr,
            cwd=REPO,
            timeout=COMMAND_FINISHES,
            check=False,
        )
    os.close(write_end)
    assert proc.returncode == 141
    assert err.read_text() == ""


# --- the global --config and subcommands ------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _subparsers(child)


def test_no_subcommand_option_overwrites_a_global_one() -> None:
    """argparse lets a sub-parser's default overwrite the parent's value: an option a
    subcommand repeats from the top level must default to SUPPRESS."""
    parser = build_parser()
    top = {a.dest for a in parser._actions if a.option_strings} - {"help", "version"}
    for child in _subparsers(parser):
        for action in child._actions:
            if action.dest in top:
                assert action.default is argparse.SUPPRESS, (child.prog, action.dest)


@pytest.mark.parametrize(
    "command", [["replay", "x.jsonl"], ["eval", "bursts", "x.jsonl", "--events", "e.json"]]
)
def test_lang_takes_a_language_tag(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``--lang`` is a language tag (a usage error otherwise); one without a stop-word list
    is taken, with a note that its posts are read as English."""
    parser = build_parser()
    for bad in ("not a tag", "p", "pt-BR-extremely-long", "pt/BR"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*command, "--lang", bad])
        assert exc.value.code == 2
        assert f"--lang: takes a language tag such as es or pt-BR, got {bad!r}" in (
            capsys.readouterr().err
        )
    assert parser.parse_args([*command, "--lang", "pt-BR"]).lang == "pt-BR"
    assert capsys.readouterr().err == ""
    assert parser.parse_args([*command, "--lang", "tlh"]).lang == "tlh"
    assert "--lang tlh: no stop-word list for it" in capsys.readouterr().err


def test_alerts_out_must_not_be_an_input_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--alerts-out`` naming the file being replayed (or an events file) is refused before
    anything is written: the file would be emptied or extended."""
    stream = write_jsonl(tmp_path / "s.jsonl", synthetic_stream(hours=1, burst_posts=0))
    events = _events(tmp_path)
    before = stream.read_bytes(), events.read_bytes()
    same = str(tmp_path / "." / "s.jsonl")
    for argv in (
        ["eval", "bursts", str(stream), "--events", str(events), "--alerts-out", same],
        ["eval", "bursts", str(stream), "--events", str(events), "--alerts-out", str(events)],
        ["replay", str(stream), "--alerts-out", same],
    ):
        assert main(argv) == 2
        assert "is an input file of this command; write elsewhere" in capsys.readouterr().err
    assert (stream.read_bytes(), events.read_bytes()) == before


def _events(tmp_path: Path, replay: str = "s.jsonl") -> Path:
    events = tmp_path / "events.json"
    events.write_text(
        json.dumps(
            [
                {
                    "replay": replay,
                    "event": "GLM-5 on Ascend",
                    "onset": "2026-05-01T10:00:00Z",
                    "keywords": ["glm-5", "ascend"],
                }
            ]
        )
    )
    return events


def test_global_config_reaches_eval_bursts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = write_jsonl(tmp_path / "s.jsonl", synthetic_stream())
    events = _events(tmp_path)
    strict = tmp_path / "strict.yaml"
    strict.write_text("detector: {min_count: 1000}\n")  # no burst can reach it
    run = ["eval", "bursts", str(stream), "--events", str(events)]
    assert main(run) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["detected_in_target"] == 1
    for argv in (["--config", str(strict), *run], [*run, "--config", str(strict)]):
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["detected_in_target"] == 0
    assert main(["--config", str(tmp_path / "missing.yaml"), *run]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


# --- eval bursts on bad input -----------------------------------------------------------


def _eval_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], stream: Path) -> str:
    code = main(["eval", "bursts", str(stream), "--events", str(_events(tmp_path, stream.name))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    return err[-1]


def test_eval_bursts_bad_replay_rows_name_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = synthetic_stream(hours=1)
    stream = write_jsonl(tmp_path / "s.jsonl", rows[:3], extra_lines=["{not json"])
    err = _eval_error(tmp_path, capsys, stream)
    assert err.startswith(f"seismo: error: {stream}:4: not a valid post: Invalid JSON")
    no_time = {k: v for k, v in rows[0].items() if k != "created_at"}
    stream = write_jsonl(tmp_path / "s.jsonl", [rows[0], no_time])
    err = _eval_error(tmp_path, capsys, stream)
    assert err == f"seismo: error: {stream}:2: not a valid post: created_at: Field required"
    stream.write_bytes(b"\xff\xfe\n")
    assert "not UTF-8" in _eval_error(tmp_path, capsys, stream)
    stream.unlink()
    assert f"cannot read {stream}" in _eval_error(tmp_path, capsys, stream)


def test_eval_bursts_alerts_out_that_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = write_jsonl(tmp_path / "s.jsonl", synthetic_stream(hours=1))
    out = tmp_path / "no" / "dir" / "alerts.jsonl"
    argv = ["eval", "bursts", str(stream), "--events", str(_events(tmp_path))]
    assert main([*argv, "--alerts-out", str(out)]) == 2
    assert f"seismo: error: cannot write {out}: " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (None, "cannot read events file"),
        ('[{"replay": "s.jsonl",\n  "event": }]', "events.json:2: not valid JSON"),
        ('{"replay": "s.jsonl"}', "not a list of events: Input should be a valid list"),
        ('[{"replay": "s.jsonl", "event": "e", "keywords": ["a"]}]', "0.onset: Field required"),
        (
            '[{"replay": "s.jsonl", "event": "e", "onset": "2026-05-01T10:00", "keywords": ["a"]}]',
            "0.onset: Input should have timezone info",
        ),
    ],
)
def test_eval_bursts_bad_events_file(
    text: str | None, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = write_jsonl(tmp_path / "s.jsonl", synthetic_stream(hours=1))
    events = tmp_path / "events.json"
    if text is not None:
        events.write_text(text)
    assert main(["eval", "bursts", str(stream), "--events", str(events)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("seismo: error: ") and expect in err and str(events) in err


@pytest.mark.parametrize(
    ("line", "expect"), [(b"3", "not a JSON object"), (b'{"text": "caf\xe9"}', "not JSON")]
)
def test_labelled_rows_that_are_not_json_objects(line: bytes, expect: str, tmp_path: Path) -> None:
    from models.train import read_jsonl

    data = tmp_path / "rows.jsonl"
    data.write_bytes(b'{"text": "ok"}\n\n' + line + b"\n")
    with pytest.raises(SeismoError, match=f"rows.jsonl:3: {expect}"):
        read_jsonl(data, ["text"])


# --- busy ports -------------------------------------------------------------------------


def test_worker_on_a_busy_web_port_is_one_line(busy_port: int) -> None:
    proc = seismo("worker", "--web-port", str(busy_port))
    line = assert_one_line_error(proc)
    assert line == f"seismo: error: port {busy_port} on 127.0.0.1 is already in use"


def test_metrics_server_on_a_busy_port(busy_port: int) -> None:
    from prometheus_client import CollectorRegistry

    with pytest.raises(PortError, match=f"^port {busy_port} on 127.0.0.1 is already in use$"):
        serve_metrics(CollectorRegistry(), "127.0.0.1", busy_port)


def test_live_page_on_a_busy_port(busy_port: int, tmp_path: Path) -> None:
    from streams.live import run_live

    # an unreachable Kafka: the port is what must fail, and first
    settings = load_settings(live_port=busy_port, kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path)
    with pytest.raises(PortError, match=f"^port {busy_port} on 127.0.0.1 is already in use$"):
        asyncio.run(
            asyncio.wait_for(run_live(settings, "t", [], asyncio.Event()), COMMAND_FINISHES)
        )


def test_a_host_that_is_not_ours_is_one_line() -> None:
    from seismo.ports import require_free

    with pytest.raises(PortError, match=r"^cannot listen on 192\.0\.2\.1:6066: "):
        require_free("192.0.2.1", 6066)  # TEST-NET-1: no address of this machine


# the arguments each subcommand needs besides --config (a new subcommand must be added here)
_ARGS = {
    "broker": [],
    "worker": [],
    "run": [],
    "replay": ["posts.jsonl"],
    "config": [],
    "connect": ["rss"],
    "alerts serve": [],
    "alerts redeliver": [],
    "train": ["stance"],
    "eval stance": ["f.jsonl"],
    "eval topic": ["f.jsonl"],
    "eval bursts": ["s.jsonl", "--events", "e.json"],
}


def _leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[str]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield " ".join(path)
    for group in groups:
        for name, child in group.choices.items():
            yield from _leaf_commands(child, (*path, name))


def test_every_subcommand_takes_the_global_config_before_and_after_its_name() -> None:
    parser = build_parser()
    assert sorted(_leaf_commands(parser)) == sorted(_ARGS)
    for command, rest in _ARGS.items():
        words = command.split()
        for argv in (
            ["--config", "c.yaml", *words, *rest],
            [*words, *rest, "--config", "c.yaml"],
            [*words, "--config", "c.yaml", *rest],
        ):
            assert parser.parse_args(argv).config == Path("c.yaml"), argv
        assert parser.parse_args([*words, *rest]).config is None
