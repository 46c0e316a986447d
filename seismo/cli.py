"""The ``seismo`` command line. Every subcommand has ``--help``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from seismo import __version__
from seismo.cliutil import add_lang_argument, not_an_input
from seismo.cliutil import install_stop_handler as _install_stop_handler
from seismo.cliutil import progress as _progress
from seismo.cliutil import settings_from as _settings
from seismo.config import ENV_CHECKED, Settings
from seismo.errors import SeismoError

log = logging.getLogger("seismo")

# Modules that add subcommands: each has ``register(sub)`` taking the subparsers action
# and setting ``func`` on its parsers (see seismo/cliutil.py for the shared helpers).
COMMAND_MODULES: list[str] = [
    "connectors.cli",
    "seismo.alerts_cli",
    "models.cli",
    "streams.eval_cli",
]


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from seismo.kafka import quiet_kafka

    quiet_kafka()  # a broker outage: one line saying so, not ten aiokafka errors a second


# --- broker ---------------------------------------------------------------------------


def _start_embedded(settings: Settings) -> Any:
    from seismo.broker import EmbeddedKafka

    broker = EmbeddedKafka(
        settings.data_dir / "kafka",
        port=settings.broker_port,
        heap=settings.broker_heap,
        progress=_progress,
    )
    _progress(f"starting embedded Kafka (data in {settings.data_dir / 'kafka'})")
    broker.start()  # says "broker ready on HOST:PORT" itself
    return broker


def cmd_broker(args: argparse.Namespace) -> int:
    settings = _settings(args, data_dir=args.data_dir, broker_port=args.port)
    broker = _start_embedded(settings)
    stop = _install_stop_handler()
    try:
        while broker.running and not stop.is_set():
            time.sleep(0.2)
    finally:
        broker.stop()  # says what it does
    return 0


# --- worker ---------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    settings = _settings(
        args,
        alerts_out=args.alerts_out,
        webhook_urls=args.webhook or None,
        web_port=args.web_port,
    )
    run_worker(settings, loglevel=args.loglevel)
    return 0


# --- run ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Broker (unless external) + worker as child processes; Ctrl-C stops them all."""
    settings = _settings(args, alerts_out=args.alerts_out, webhook_urls=args.webhook or None)
    stop = _install_stop_handler()
    broker = None
    env = dict(os.environ)
    env[ENV_CHECKED] = "1"  # the children see the same environment: warned once, here
    if settings.kafka_bootstrap is None:
        broker = _start_embedded(settings)
        env["SEISMO_KAFKA_BOOTSTRAP"] = broker.bootstrap
    else:
        _progress(f"using external Kafka at {settings.kafka_bootstrap}")
    base_cmd = [sys.executable, "-m", "seismo.cli"]
    if args.config:
        base_cmd += ["--config", str(args.config)]
    worker_cmd = [*base_cmd, "worker"]
    if args.alerts_out:
        worker_cmd += ["--alerts-out", str(args.alerts_out)]
    for url in args.webhook or []:
        worker_cmd += ["--webhook", url]
    children: dict[str, subprocess.Popen[bytes]] = {"worker": subprocess.Popen(worker_cmd, env=env)}
    _progress(
        f"worker started (pid {children['worker'].pid}); web "
        f"http://{settings.web_host}:{settings.web_port}/metrics — Ctrl-C to stop"
    )
    if not args.no_live_page:
        children["live page"] = subprocess.Popen([*base_cmd, "alerts", "serve"], env=env)
        _progress(f"live alert page on http://{settings.live_host}:{settings.live_port}/")
    # connectors serve /metrics on consecutive ports from metrics_port (or web_port + 10)
    first_port = settings.metrics_port or settings.web_port + 10
    for i, name in enumerate(settings.connectors.enabled):
        port = first_port + i
        cmd = [*base_cmd, "connect", name, "--metrics-port", str(port)]
        children[f"connector {name}"] = subprocess.Popen(cmd, env=env)
        _progress(f"connector {name} started; metrics on port {port}")
    code = 0
    try:
        while not stop.is_set():
            ended = [(n, c) for n, c in children.items() if c.poll() is not None]
            if ended:
                name, child = ended[0]
                code = child.returncode or 1
                _progress(f"{name} exited with code {child.returncode}")
                break
            if broker is not None and not broker.running:
                _progress("Kafka exited unexpectedly")
                code = 1
                break
            time.sleep(0.3)
    finally:
        for name, child in children.items():
            if child.poll() is None:
                _progress(f"stopping {name}")
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if broker is not None:
            broker.stop()
    return code


# --- replay ---------------------------------------------------------------------------


def _map_item(item: str) -> tuple[str, str]:
    """One ``--map FIELD=COLUMN`` (an argparse ``type``: a bad one is a usage error)."""
    from connectors.replay import MAPPABLE_FIELDS

    field, sep, col = item.partition("=")
    if not sep or not field or not col:
        raise argparse.ArgumentTypeError(f"takes FIELD=COLUMN, got {item!r}")
    if field not in MAPPABLE_FIELDS:
        raise argparse.ArgumentTypeError(
            f"{field!r} is not a post field; FIELD is one of {', '.join(MAPPABLE_FIELDS)}"
        )
    return field, col


def _field_map(items: list[tuple[str, str]]) -> dict[str, str]:
    """The ``--map`` items as post field -> column; a field mapped twice is an error."""
    fields = [f for f, _ in items]
    twice = sorted({f for f in fields if fields.count(f) > 1})
    if twice:
        raise SeismoError(f"--map gives {', '.join(twice)} more than once; give each field once")
    return dict(items)


def cmd_replay(args: argparse.Namespace) -> int:
    from connectors.replay import ReplayStats, check_readable, parse_speed, replay
    from seismo.collect import (
        alert_end_offsets,
        pending_line,
        read_alerts,
        wait_drained,
        why_no_alerts,
        worker_counts,
        worker_report,
    )
    from seismo.kafka import ensure_topics

    settings = _settings(args)
    field_map = _field_map(args.map or [])
    check_readable(args.path)  # before any broker call
    not_an_input(args.alerts_out, [args.path], "--alerts-out")
    speed = parse_speed(args.speed)

    def show(stats: ReplayStats) -> None:
        rate = stats.sent / stats.seconds if stats.seconds else 0.0
        _progress(
            f"replayed {stats.sent} posts ({stats.dead} dead-lettered), {rate:.0f}/s, "
            f"event time {stats.last_event.isoformat() if stats.last_event else '-'}"
        )

    async def go() -> dict[str, Any]:
        start: dict[int, int] = {}
        counts: dict[str, int] | str = "not asked"
        began: float | None = None
        if args.alerts_out:
            # topics first: asking for alerts.v1's offsets must not meet a missing topic
            await ensure_topics(settings)
            start = await alert_end_offsets(settings)
            began = time.time()
            counts = await worker_counts(settings)
        stats = await replay(
            settings,
            args.path,
            speed=speed,
            source=args.source,
            lang=args.lang,
            field_map=field_map,
            fmt=args.format,
            limit=args.limit,
            progress=show,
        )
        summary = stats.as_dict()
        if args.alerts_out:
            _progress("waiting for the pipeline to process everything…")
            await wait_drained(
                settings,
                timeout=args.wait_timeout,
                progress=lambda pending: (
                    _progress(pending_line(pending)) if sum(pending.values()) else None
                ),
            )
            alerts = await read_alerts(settings, start)
            args.alerts_out.parent.mkdir(parents=True, exist_ok=True)
            with args.alerts_out.open("a", encoding="utf-8") as f:
                for a in alerts:
                    f.write(a.model_dump_json(exclude_none=True) + "\n")
            summary["alerts"] = len(alerts)
            summary["alerts_out"] = str(args.alerts_out)
            lateness = settings.detector.max_lateness_seconds
            summary["worker"] = worker_report(
                counts, await worker_counts(settings), lateness, began
            )
            for note in summary["worker"].get("notes", []):
                _progress(f"worker: {note}")
            if not alerts:
                why = why_no_alerts(summary["worker"], settings.detector.params())
                summary["why_no_alerts"] = why
                _progress(f"no alert: {why}")
        return summary

    summary = asyncio.run(go())
    print(json.dumps(summary))
    if summary["read"] and not summary["sent"]:
        _progress(f"none of the {summary['read']} rows read was a valid post (all dead-lettered)")
        return 1
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(_settings(args).masked(), indent=2))
    return 0


# --- parser ---------------------------------------------------------------------------


def _sink_flags(p: argparse.ArgumentParser) -> None:
    """The flags that add alert sinks to the settings' (``worker`` and ``run``)."""
    p.add_argument("--alerts-out", type=Path, help="also append alerts to this JSONL file")
    p.add_argument("--webhook", action="append", metavar="URL", help="POST alerts here")


def build_parser() -> argparse.ArgumentParser:
    from connectors.replay import MAPPABLE_FIELDS

    p = argparse.ArgumentParser(
        prog="seismo",
        description="Real-time social-signal stream processor: posts in, burst alerts out.",
        epilog="Settings come from --config FILE (YAML), SEISMO_* environment variables and "
        "flags; see `seismo config`. A setting in a group, e.g. detector.min_score, is "
        "`detector: {min_score: 5}` in YAML and SEISMO_DETECTOR__MIN_SCORE in the environment.",
    )
    p.add_argument("--version", action="version", version=f"seismo {__version__}")
    p.add_argument("--config", type=Path, help="YAML settings file (or SEISMO_CONFIG)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser(
        "broker",
        help="run the embedded Kafka broker in the foreground",
        description="Start a single-node KRaft Apache Kafka on loopback "
        "(jars from Maven Central, cached); Ctrl-C stops it cleanly.",
    )
    b.add_argument("--data-dir", type=Path, help="where broker data lives (default .seismo)")
    b.add_argument("--port", type=int, help="listener port (default 9092)")
    b.set_defaults(func=cmd_broker)

    w = sub.add_parser(
        "worker",
        help="run the stream-processing worker",
        description="Run the Faust worker: ingest -> classify -> detect -> "
        "alert. Needs a reachable Kafka.",
    )
    _sink_flags(w)
    w.add_argument("--web-port", type=int, help="port of the web server (/metrics)")
    w.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser(
        "run",
        help="run the whole pipeline (broker + worker)",
        description="Start the embedded broker (unless SEISMO_KAFKA_BOOTSTRAP "
        "names a cluster) and a worker; Ctrl-C stops everything.",
    )
    _sink_flags(r)
    r.add_argument(
        "--no-live-page", action="store_true", help="don't start the live alert page process"
    )
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser(
        "replay",
        help="produce posts from a JSONL/CSV file into Kafka",
        description="Replay posts with their event time as the Kafka "
        "timestamp. Rows that are not valid posts (also lines that are not UTF-8) go to the "
        "DLQ; the JSON summary on stdout counts them by kind. Exits 1 when rows were read "
        "but none was a valid post.",
    )
    rp.add_argument("path", type=Path, help="JSONL or CSV file of posts")
    rp.add_argument(
        "--speed", default="max", help="'max' (default) or N: replay N times faster than real time"
    )
    rp.add_argument("--source", help="set every post's source (e.g. x, reddit)")
    add_lang_argument(rp)
    rp.add_argument(
        "--map",
        action="append",
        metavar="FIELD=COLUMN",
        type=_map_item,
        help="read post FIELD from COLUMN, e.g. --map text=body (FIELD: "
        f"{', '.join(MAPPABLE_FIELDS)})",
    )
    rp.add_argument("--format", choices=["jsonl", "csv"], help="default: from the extension")
    rp.add_argument("--limit", type=int, help="stop after N rows")
    rp.add_argument(
        "--alerts-out",
        type=Path,
        help="wait for the pipeline to drain, then append the alerts it raised",
    )
    rp.add_argument(
        "--wait-timeout",
        type=float,
        default=900.0,
        help="seconds to wait for the pipeline to drain (default 900)",
    )
    rp.set_defaults(func=cmd_replay)

    c = sub.add_parser("config", help="print the effective settings (secrets masked)")
    c.set_defaults(func=cmd_config)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    _config_after_subcommand(p)
    return p


def _config_after_subcommand(parser: argparse.ArgumentParser) -> None:
    """Let every (sub)subcommand take the global ``--config`` after its name too:
    ``seismo --config F replay X`` and ``seismo replay X --config F`` are the same.
    SUPPRESS: a subcommand given no --config must not overwrite the global one."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in action.choices.values():
            if not any("--config" in a.option_strings for a in child._actions):
                child.add_argument(
                    "--config",
                    type=Path,
                    default=argparse.SUPPRESS,
                    help="YAML settings file (same as the global --config)",
                )
            _config_after_subcommand(child)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    try:
        code: int = args.func(args)
        return code
    except SeismoError as exc:
        print(f"seismo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`seismo config | head`): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a process killed by it


if __name__ == "__main__":
    sys.exit(main())
