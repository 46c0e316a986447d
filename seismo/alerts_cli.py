"""``seismo alerts ...``: the live alert page and redelivery of parked alert deliveries."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
from typing import Any

from seismo.cliutil import progress, settings_from
from seismo.metrics import Metrics


def cmd_serve(args: argparse.Namespace) -> int:
    from seismo.kafka import ensure_topics
    from seismo.watchlist import load_watchlist
    from streams.live import run_live

    settings = settings_from(args, live_host=args.host, live_port=args.port)
    token = settings.live_token.get_secret_value() if settings.live_token else None
    if token:  # a secret setting: not printed
        with_token, token_note = "", " (token: the configured live_token)"
    else:
        token = secrets.token_urlsafe(18)
        progress("no live_token configured: using a fresh random token for this run")
        with_token, token_note = f"?token={token}", ""
    dossiers = [d.id for d in load_watchlist(settings.watchlist).dossiers]

    async def go() -> None:
        await ensure_topics(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_live(
            settings,
            token,
            dossiers,
            stop,
            on_listening=lambda url: progress(
                f"live alerts on {url}{with_token}{token_note} — Ctrl-C to stop"
            ),
        )

    asyncio.run(go())
    return 0


def cmd_redeliver(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from seismo.kafka import ensure_topics
    from seismo.watchlist import load_watchlist
    from streams.delivery import sinks_from_settings
    from streams.redeliver import redeliver, redeliver_group

    # --to is checked like the webhook_urls setting (a URL without a scheme is refused)
    settings = settings_from(args, webhook_urls=[args.to] if args.to else None)
    sinks = sinks_from_settings(
        settings, Metrics(CollectorRegistry()), load_watchlist(settings.watchlist)
    )
    group = args.group or redeliver_group(settings)
    progress(f"redelivering from {settings.topic('alerts.dlq.v1')} as consumer group {group}")

    async def go() -> Any:
        await ensure_topics(settings)  # a clear error when Kafka is not reachable
        return await redeliver(
            settings, sinks, to=args.to, dry_run=args.dry_run, group=group, progress=progress
        )

    stats = asyncio.run(go())
    for item in stats.items:
        print(json.dumps(item))
    summary = stats.as_dict()
    print(json.dumps(summary))
    return 1 if stats.failed else 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "alerts",
        help="live alert page; redeliver alerts a webhook did not take",
        description="Alert delivery tools. See `seismo alerts COMMAND --help`.",
    )
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="COMMAND")

    s = asub.add_parser(
        "serve",
        help="serve the live alert page (SSE), guarded by a token",
        description="Serve a web page that shows alerts as they open, update and resolve, "
        "live, with filters by dossier and severity. Reads alerts.v1 directly (every "
        "partition), so it shows recent alerts on start. Open the printed URL; the token "
        "is live_token (SEISMO_LIVE_TOKEN), or a random one per run when unset.",
    )
    s.add_argument("--host", help="listen address (default live_host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="listen port (default live_port, 6067)")
    s.set_defaults(func=cmd_serve)

    r = asub.add_parser(
        "redeliver",
        help="send the deliveries parked on alerts.dlq.v1 again",
        description="Read alerts.dlq.v1 from where the last run stopped (a consumer group's "
        "committed offsets) to its current end and send each parked alert version to its "
        "sink again, with the same Idempotency-Key and signature scheme. Delivered records "
        "are committed; records that fail again are parked again (redeliveries + 1). "
        "Progress on stderr; one JSON line per record, then a JSON summary, on stdout. "
        "Exit code 1 if any failed again.",
    )
    r.add_argument(
        "--to",
        metavar="URL",
        help="send webhook records to this URL instead of the one they failed on",
    )
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="tell what a real run would do with each record (would send / would fail: "
        "its sink is not configured any more); send and commit nothing",
    )
    r.add_argument("--group", help="consumer group (default <app group>.redeliver)")
    r.set_defaults(func=cmd_redeliver)
