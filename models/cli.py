"""``seismo train`` and ``seismo eval``: the model heads' training and evaluation commands."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from seismo.cliutil import EVAL_HELP, command_group, progress

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_DATA = {
    "stance": SHARED / "stance" / "rumoureval2017_traindev_pairs.jsonl",
    "topic": SHARED / "topic" / "tweettopicxl_en_1000.jsonl",
}


def _embedder(args: argparse.Namespace) -> Any:
    from models.embed import Embedder

    return Embedder(threads=args.threads)


def default_thread_file(data: Path) -> Path | None:
    """``X_threads.jsonl`` next to a ``X_pairs.jsonl`` training file, if it is there."""
    if not data.name.endswith("_pairs.jsonl"):
        return None
    path = data.with_name(data.name.removesuffix("_pairs.jsonl") + "_threads.jsonl")
    return path if path.is_file() else None


def cmd_train(args: argparse.Namespace) -> int:
    from models.classifier import TOPIC_HEAD
    from models.embed import ARTIFACTS
    from models.train import STANCE_OPTIONS, TOPIC_OPTIONS, train_stance, train_topic

    data: Path = args.data or DEFAULT_DATA[args.task]
    if not data.is_file():
        progress(
            f"no training data at {data}: pass --data FILE (the defaults live in ../shared/data, "
            "which a plain clone does not have); the bundled heads stay as they are"
        )
        return 2
    out: Path = args.out or ARTIFACTS
    defaults = STANCE_OPTIONS if args.task == "stance" else TOPIC_OPTIONS
    c = defaults.c if args.c is None else args.c
    opts = replace(defaults, c=c, progress=progress)
    if args.task == "stance":
        threads = args.thread_file or default_thread_file(data)
        if threads is None:
            progress("no thread file: training the text-only stance head only")
        heads = train_stance(data, _embedder(args), opts, threads)
    else:
        heads = {TOPIC_HEAD: train_topic(data, _embedder(args), opts)}
    for name, (head, _) in heads.items():
        head.save(out / name)
        progress(f"wrote {out / name}.npz and {out / name}.json (model card)")
    metrics = {name: m for name, (_, m) in heads.items()}
    print(json.dumps(metrics if len(metrics) > 1 else next(iter(metrics.values()))))
    return 0


def _print_report(report: dict[str, Any]) -> None:
    print(f"{'class':28s} {'precision':>9s} {'recall':>7s} {'f1':>6s} {'n':>6s}")
    for name, m in report["per_class"].items():
        print(f"{name:28s} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} {m['n']:6d}")
    extra = f"  micro-F1 {report['micro_f1']:.4f}" if "micro_f1" in report else ""
    print(f"macro-F1 {report['macro_f1']:.4f}  accuracy {report['accuracy']:.4f}{extra}")
    print(json.dumps({k: report[k] for k in ("macro_f1", "accuracy", "n")}))


def cmd_eval(args: argparse.Namespace) -> int:
    from models.classifier import load_heads
    from models.train import evaluate_stance, evaluate_topic

    stance, topics = load_heads(args.model_dir)
    embedder = _embedder(args)
    progress(f"evaluating the {args.task} head on {args.file}")
    if args.task == "stance":
        report = evaluate_stance(stance, embedder, args.file, args.thread_file)
        progress(f"{report['with_reply_depth']} of {report['n']} rows scored with a reply depth")
    else:
        if topics is None:
            progress("no topic head found: run `seismo train topic` first")
            return 2
        report = evaluate_topic(topics, embedder, args.file)
    _print_report(report)
    return 0


def register(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a model head (stance or topic) and write its artifacts",
        description="Train a linear head on MiniLM embeddings and write NAME.npz + NAME.json "
        "(model card: data, metrics, date). stance: RumourEval-2017 (claim, reply) pairs, "
        "5-fold CV grouped by event + the dev split, a text-only head (stance-v1) and, given "
        "the replies' thread structure, a depth-aware head (stance-depth-v1); topic: "
        "TweetTopic multi-label posts. Prints the metrics as JSON on stdout (stance with a "
        "thread file: one object per head, by artifact name).",
    )
    t.add_argument("task", choices=["stance", "topic"])
    t.add_argument("--data", type=Path, help="JSONL training file (default: ../shared/data/...)")
    t.add_argument("--out", type=Path, help="artifact directory (default: models/artifacts)")
    t.add_argument(
        "--c",
        type=float,
        default=None,
        help="inverse regularisation strength (default: stance 0.1, topic 4)",
    )
    t.add_argument(
        "--thread-file",
        type=Path,
        help="stance: JSONL rows {id, thread_id, in_reply_to} giving each pair's reply depth by "
        "id (default: X_threads.jsonl next to an X_pairs.jsonl --data, if present); without "
        "it (and without reply_depth fields) only the text-only head is trained",
    )
    t.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    t.set_defaults(func=cmd_train)

    group = command_group(sub, "eval", EVAL_HELP)
    for task, rows in (
        (
            "stance",
            "rows with claim, text, label (support/deny/query/comment) and optionally id and "
            "reply_depth (0 top-level, 1 direct reply to the thread's root, 2+ deeper, null "
            "unknown; or derived by id from --thread-file). Replies of depth 1 or 2 are scored "
            "by the depth-aware head when one is bundled; every other row (no depth: scored as "
            "unknown) by the text-only head",
        ),
        ("topic", "rows with text and topics (a list)"),
    ):
        e = group.add_parser(
            task,
            help=f"evaluate the {task} head on a labelled JSONL file",
            description=f"FILE: {rows}. Prints per-class precision/recall/F1, macro-F1 and "
            "accuracy; the last line is JSON {macro_f1, accuracy, n}.",
        )
        e.add_argument("file", type=Path, help="JSONL file of labelled rows")
        e.add_argument("--model-dir", type=Path, help="artifact directory (default: bundled)")
        if task == "stance":
            e.add_argument(
                "--thread-file",
                type=Path,
                help="JSONL rows {id, thread_id, in_reply_to}: reply depth of rows without "
                "reply_depth, by id",
            )
        e.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
        e.set_defaults(func=cmd_eval, task=task)
