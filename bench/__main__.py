"""seismo benchmarks.

    python -m bench offline [--file F] [--repeat N]   classify + detect in one process
    python -m bench detector [--file F] [--repeat N]  the burst detector alone (pre-classified)
    python -m bench memory [--terms N]                detector memory at N distinct terms
    python -m bench e2e [--posts N]                   replay -> embedded Kafka -> worker, to drain

Each prints one JSON object per measurement. Inputs are synthetic unless --file is given,
so the numbers can be reproduced without ../shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

from models.keyword import KeywordClassifier
from seismo.config import load_settings
from seismo.contracts import Post
from seismo.watchlist import load_watchlist
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


def bench_detector(args: argparse.Namespace) -> None:
    """Posts/s of BurstEngine.observe alone: items, authenticity, sketch, alerts."""
    clf = KeywordClassifier(load_watchlist())
    classified = [clf.classify(p) for p in load_posts(args)]
    params = detector_params(load_settings())
    for _ in range(args.repeat):
        engine = BurstEngine(params)
        t, cpu = time.perf_counter(), time.process_time()
        versions = sum(len(engine.observe(cp)) for cp in classified)
        dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
        print(
            json.dumps(
                {
                    "bench": "detector",
                    "posts": len(classified),
                    "seconds": round(dt, 3),
                    "posts_per_s": round(len(classified) / dt),
                    # per core: CPU time, unaffected by other processes on a shared machine
                    "posts_per_cpu_s": round(len(classified) / dcpu),
                    "alert_versions": versions,
                    "fixed_state_bytes": engine.memory_bytes,
                    "checkpoint_bytes": len(engine.dumps()),
                    "peak_rss_mb": round(rss_mb()),
                }
            )
        )


def bench_memory(args: argparse.Namespace) -> None:
    """Stream posts made of never-repeating terms until ``--terms`` distinct terms have
    gone through, reporting RSS as it goes: the detector's memory must stay flat."""
    from seismo.contracts import ClassifiedPost

    engine = BurstEngine(detector_params(load_settings()))
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


def bench_e2e(args: argparse.Namespace) -> None:
    from seismo.broker import EmbeddedKafka

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        path = d / "posts.jsonl"
        with path.open("w") as f:
            for p in synthetic_posts(args.posts):
                f.write(p.model_dump_json() + "\n")
        with EmbeddedKafka(d / "kafka", port=0) as kafka:
            env = {
                **os.environ,
                "SEISMO_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "SEISMO_NAMESPACE": "bench",
                "SEISMO_DATA_DIR": str(d / "seismo"),
                "SEISMO_WEB_PORT": "0",
            }
            log = (d / "worker.log").open("wb")
            worker = subprocess.Popen(
                [sys.executable, "-m", "seismo.cli", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 90
                while b"[^Worker]: Ready" not in (d / "worker.log").read_bytes():
                    if time.monotonic() > deadline or worker.poll() is not None:
                        raise SystemExit("worker did not start")
                    time.sleep(0.2)
                t = time.perf_counter()
                res = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "seismo.cli",
                        "-q",
                        "replay",
                        str(path),
                        "--alerts-out",
                        str(d / "a.jsonl"),
                        "--wait-timeout",
                        "1800",
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                dt = time.perf_counter() - t
                summary = json.loads(res.stdout.strip().splitlines()[-1])
                print(
                    json.dumps(
                        {
                            "bench": "e2e",
                            "posts": args.posts,
                            "seconds": round(dt, 2),
                            "posts_per_s": round(args.posts / dt, 1),
                            "replay_posts_per_s": summary["posts_per_second"],
                            "alerts": summary["alerts"],
                        }
                    )
                )
            finally:
                worker.terminate()
                worker.wait(30)


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
    d.set_defaults(func=bench_detector)
    m = sub.add_parser("memory", help="detector memory at N distinct terms")
    m.add_argument("--terms", type=int, default=10_000_000)
    m.set_defaults(func=bench_memory)
    e = sub.add_parser("e2e", help="replay through the embedded broker and a worker")
    e.add_argument("--posts", type=int, default=5_000)
    e.set_defaults(func=bench_e2e)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
