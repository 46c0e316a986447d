"""seismo benchmarks.

    python -m bench offline [--file F] [--repeat N]   classify + detect in one process
    python -m bench detector [--file F] [--batch N]   the burst detector alone (pre-classified)
    python -m bench memory [--terms N]                detector memory at N distinct terms
    python -m bench e2e [--posts N] [--workers 1,2]  replay -> Kafka -> workers, and pass-through
    python -m bench delivery [--alerts N]             signed writer webhooks to a verifying receiver
    python -m bench sink-isolation [--rate R]         a webhook beside a refusing and a hanging one
    python -m bench connect [--source S] [--posts N]  connector clients vs loopback fakes
    python -m bench xpush [--posts N] [--batch B]     x-push endpoint -> embedded Kafka, acked
    python -m bench classify [--file F] [--posts N]   the classify step: keyword, cascade, full
    python -m bench heldout [--jobs N]                detector parameters chosen per held-out stream

Each prints one JSON object per measurement. Inputs are synthetic unless --file is given,
so the numbers can be reproduced without ../shared.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import resource
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

from bench import connectors, e2e, heldout, sinks, xpush
from models.keyword import KeywordClassifier
from seismo.config import load_settings
from seismo.contracts import Alert, Post
from seismo.watchlist import load_watchlist
from streams import core
from streams.detector import BurstEngine
from streams.pipeline import OfflinePipeline, detector_params

WORDS = (
    "ai chip model china huawei ascend nvidia export control deepseek glm zhipu training data "
    "center power grid open source weights benchmark leaderboard funding round valuation yuan "
    "policy senate hearing market stock launch release paper arxiv inference cost price gpu "
    "cloud outage storm flood tornado school city people today news report update video live"
).split()


def synthetic_posts(n: int, seed: int = 1) -> list[Post]:
    rng = Random(seed)
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    vocab = WORDS + [f"w{i}" for i in range(5000)]  # a long tail of rare words
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(8)] + [rng.choice(vocab) for _ in range(6)]
        out.append(
            Post(
                id=str(i),
                source="x",
                text=" ".join(words),
                created_at=t0 + timedelta(seconds=i * 3),
            )
        )
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_posts(args: argparse.Namespace) -> list[Post]:
    if args.file:
        with open(args.file) as f:
            return [Post.model_validate_json(line) for line in f]
    return synthetic_posts(args.posts)


def bench_offline(args: argparse.Namespace) -> None:
    posts = load_posts(args)
    clf = KeywordClassifier(load_watchlist())
    for _ in range(args.repeat):
        pipe = OfflinePipeline(clf, detector_params(load_settings()))
        t = time.perf_counter()
        alerts = sum(1 for _ in pipe.run(posts))
        dt = time.perf_counter() - t
        print(
            json.dumps(
                {
                    "bench": "offline",
                    "posts": len(posts),
                    "seconds": round(dt, 3),
                    "posts_per_s": round(len(posts) / dt),
                    "alerts": alerts,
                    "candidates": len(pipe.engine.candidates),
                    "peak_rss_mb": round(rss_mb()),
                }
            )
        )


SHARED_REPLAY = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "replay"
    / "crisislex_2013_Oklahoma_Tornado.jsonl"
)


def bench_classify(args: argparse.Namespace) -> None:
    """Posts/s, per-batch latency and peak RSS of the classify step in its three modes.

    Posts are classified in consecutive batches of ``--batch`` (what the ingest agent's
    dynamic batching produces under load); a post's latency is its batch's call time.
    ``cascade`` is then compared with ``full``: of the posts ``full`` puts in a dossier or
    links to a claim, how many the cascade also does.
    """
    from models.classifier import CascadeClassifier, load_heads
    from models.embed import Embedder

    path = Path(args.file) if args.file else SHARED_REPLAY if SHARED_REPLAY.exists() else None
    if path is not None:
        with path.open() as f:
            posts = [Post.model_validate_json(line) for line in itertools.islice(f, args.posts)]
    else:
        posts = synthetic_posts(args.posts)
    watchlist = load_watchlist()
    stance, topics = load_heads()
    embedder = Embedder(threads=args.threads, batch_size=args.onnx_batch)
    classifiers = {
        "keyword": KeywordClassifier(watchlist),
        "cascade": CascadeClassifier(watchlist, embedder, stance, topics, mode="cascade"),
        "full": CascadeClassifier(watchlist, embedder, stance, topics, mode="full"),
    }
    results = {}
    for mode, clf in classifiers.items():
        clf.classify_batch(posts[: args.batch])  # warm-up
        embedder.clear_cache()  # each mode starts cold (repeats within the stream still hit)
        lat: list[float] = []
        out = []
        t, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(posts), args.batch):
            t0 = time.perf_counter()
            out += clf.classify_batch(posts[i : i + args.batch])
            lat += [time.perf_counter() - t0] * len(posts[i : i + args.batch])
        dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
        results[mode] = out
        stage2 = getattr(clf, "stats", {"posts": 1, "stage2": 0})
        lat.sort()
        print(
            json.dumps(
                {
                    "bench": "classify",
                    "mode": mode,
                    "input": path.name if path else "synthetic",
                    "posts": len(posts),
                    "batch": args.batch,
                    "onnx_batch": args.onnx_batch,
                    "posts_per_s": round(len(posts) / dt, 1),
                    # CPU time of this process (all its threads): unaffected by other jobs
                    "posts_per_cpu_s": round(len(posts) / dcpu, 1),
                    "load_avg_1m": round(os.getloadavg()[0], 1),
                    "p50_ms": round(1000 * lat[len(lat) // 2], 1),
                    "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1),
                    "to_transformer": round(stage2["stage2"] / max(stage2["posts"], 1), 3),
                    "peak_rss_mb": round(rss_mb()),
                }
            ),
            flush=True,
        )
    full, cas, kw = results["full"], results["cascade"], results["keyword"]
    hit_full = [i for i, cp in enumerate(full) if cp.dossiers or cp.claims]
    kept = [i for i in hit_full if set(full[i].dossiers) <= set(cas[i].dossiers)]
    kw_kept = [i for i in hit_full if set(full[i].dossiers) <= set(kw[i].dossiers)]
    print(
        json.dumps(
            {
                "bench": "classify-cascade-vs-full",
                "posts_on_watchlist_full": len(hit_full),
                "cascade_recall_of_full": round(len(kept) / max(len(hit_full), 1), 3),
                "keyword_recall_of_full": round(len(kw_kept) / max(len(hit_full), 1), 3),
            }
        )
    )


def bench_detector(args: argparse.Namespace) -> None:
    """Posts/s of the detector alone (items, authenticity, sketch, alerts): ``observe`` one
    post at a time (as the worker calls it), then ``observe_many`` over ``--batch`` posts
    per call (the posts of one bucket are counted together; the same alerts)."""
    clf = KeywordClassifier(load_watchlist())
    classified = [clf.classify(p) for p in load_posts(args)]
    params = detector_params(load_settings())
    n = len(classified)
    if not args.default_gc:
        core.tune_gc()  # as the worker does
    rates: dict[str, list[int]] = {}
    for _ in range(args.repeat):
        for batch in (1, args.batch):
            engine = BurstEngine(params)
            t, cpu = time.perf_counter(), time.process_time()
            if batch == 1:
                alerts = [a for cp in classified for a in engine.observe(cp)]
            else:
                alerts = [
                    a
                    for i in range(0, n, batch)
                    for a in engine.observe_many(classified[i : i + batch])
                ]
            dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
            call = "observe" if batch == 1 else f"observe_many({batch})"
            rates.setdefault(call, []).append(round(n / dcpu))
            print(
                json.dumps(
                    {
                        "bench": "detector",
                        "call": call,
                        "posts": n,
                        "seconds": round(dt, 3),
                        "posts_per_s": round(n / dt),
                        # per core: CPU time, unaffected by other processes on a shared machine
                        "posts_per_cpu_s": round(n / dcpu),
                        "alert_versions": len(alerts),
                        "alerts_digest": _digest(alerts),
                        "gc": "default" if args.default_gc else "tuned",
                        "core": "python" if core.PURE_PYTHON else "compiled",
                        "fixed_state_bytes": engine.memory_bytes,
                        "checkpoint_bytes": len(engine.dumps()),
                        "peak_rss_mb": round(rss_mb()),
                    }
                ),
                flush=True,
            )

    # a shared machine's runs vary a lot: the median of the repeats is the steadier figure
    summary = {call: statistics.median(r) for call, r in rates.items()}
    print(json.dumps({"bench": "detector", "median_posts_per_cpu_s": summary}), flush=True)


def _digest(alerts: list[Alert]) -> str:
    """A short hash of the alert versions (minus the wall-clock ``detected_at``)."""
    raw = "".join(a.model_dump_json(exclude={"detected_at"}) for a in alerts)
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def bench_memory(args: argparse.Namespace) -> None:
    """Stream posts made of never-repeating terms until ``--terms`` distinct terms have
    gone through, reporting RSS as it goes: the detector's memory must stay flat."""
    from seismo.contracts import ClassifiedPost

    engine = BurstEngine(detector_params(load_settings()))
    if not args.default_gc:
        core.tune_gc()  # as the worker does
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    per_post = 40
    posts = args.terms // per_post
    start_rss = rss_mb()
    t = time.perf_counter()
    for i in range(posts):
        text = " ".join(f"t{i * per_post + j:x}z" for j in range(per_post))
        post = Post(id=str(i), source="x", text=text, created_at=t0 + timedelta(seconds=3 * i))
        engine.observe(ClassifiedPost(post=post))
        if (i + 1) % (posts // 40 or 1) == 0:
            print(
                json.dumps(
                    {
                        "bench": "memory",
                        "distinct_terms": (i + 1) * per_post,
                        "peak_rss_mb": round(rss_mb()),
                        "rss_growth_mb": round(rss_mb() - start_rss),
                        "fixed_state_bytes": engine.memory_bytes,
                        "candidates": len(engine.candidates),
                        "seconds": round(time.perf_counter() - t, 1),
                    }
                ),
                flush=True,
            )


def bench_delivery(args: argparse.Namespace) -> None:
    """Alerts/s through the webhook sink (body, signature, POST) to a receiver that verifies."""
    import asyncio

    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from seismo.metrics import Metrics
    from seismo.verify import verify_signature
    from streams.delivery import AlertSinks, RetryPolicy, WebhookSink

    alerts = sinks.bench_alerts(args.alerts, words=WORDS)

    async def go() -> float:
        got = 0

        async def hook(request: web.Request) -> web.Response:
            nonlocal got
            body = await request.read()
            verify_signature(body, request.headers.get("Seismo-Signature"), ["bench"])
            got += 1
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        sink = WebhookSink(
            f"http://127.0.0.1:{port}/hook",
            RetryPolicy(),
            secrets=["bench"],
            watchlist=load_watchlist(),
        )
        sinks = AlertSinks(Metrics(CollectorRegistry()), webhooks=[sink])
        t = time.perf_counter()
        for a in alerts:
            assert await sinks.deliver(a) == []
        dt = time.perf_counter() - t
        await sinks.close()
        await runner.cleanup()
        assert got == len(alerts)
        return dt

    dt = asyncio.run(go())
    print(
        json.dumps(
            {
                "bench": "delivery",
                "alerts": args.alerts,
                "evidence_posts": len(alerts[0].evidence),
                "seconds": round(dt, 3),
                "alerts_per_s": round(args.alerts / dt),
                "ms_per_alert": round(1000 * dt / args.alerts, 2),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("offline", help="classify + detect in one process")
    o.add_argument("--file", help="JSONL posts (default: synthetic)")
    o.add_argument("--posts", type=int, default=20_000)
    o.add_argument("--repeat", type=int, default=3)
    o.set_defaults(func=bench_offline)
    d = sub.add_parser("detector", help="the burst detector alone")
    d.add_argument("--file", help="JSONL posts (default: synthetic)")
    d.add_argument("--posts", type=int, default=20_000)
    d.add_argument("--repeat", type=int, default=3)
    d.add_argument("--batch", type=int, default=1000, help="posts per observe_many call")
    d.add_argument(
        "--default-gc",
        action="store_true",
        help="keep CPython's collector thresholds (default: tuned as the worker tunes them)",
    )
    d.set_defaults(func=bench_detector)
    m = sub.add_parser("memory", help="detector memory at N distinct terms")
    m.add_argument("--terms", type=int, default=10_000_000)
    m.add_argument("--default-gc", action="store_true", help="keep CPython's collector thresholds")
    m.set_defaults(func=bench_memory)
    e2e.register(sub, load_posts)
    dl = sub.add_parser("delivery", help="signed webhooks to a loopback verifying receiver")
    dl.add_argument("--alerts", type=int, default=2_000)
    dl.set_defaults(func=bench_delivery)
    connectors.register(sub)
    xpush.register(sub)
    sinks.register(sub)
    heldout.register(sub)
    c = sub.add_parser("classify", help="the classify step: keyword vs cascade vs full model")
    c.add_argument("--file", help="JSONL posts (default: the Oklahoma replay, else synthetic)")
    c.add_argument("--posts", type=int, default=2_000)
    c.add_argument("--batch", type=int, default=32)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--onnx-batch", type=int, default=8, help="posts per ONNX Runtime run")
    c.set_defaults(func=bench_classify)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
