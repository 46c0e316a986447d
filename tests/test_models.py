"""Model heads, training and evaluation harness, and the cascade with the real MiniLM model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.classifier import (
    CascadeClassifier,
    StanceModel,
    TopicModel,
    build_classifier,
    load_heads,
    model_text,
)
from models.features import cue_features, stance_features
from models.heads import ArtifactError, LinearHead
from models.train import (
    STANCE_CLASSES,
    STANCE_OPTIONS,
    TOPIC_OPTIONS,
    DataError,
    evaluate_stance,
    evaluate_topic,
    stance_report,
    train_stance,
    train_topic,
    tune_bias,
)
from seismo.contracts import Post
from seismo.watchlist import load_watchlist
from tests.helpers import run_seismo


class HashEmbedder:
    """Deterministic bag-of-words embeddings: a fixed random vector per word, summed."""

    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace("?", " ? ").split():
                seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "little")
                out[i] += np.random.default_rng(seed).standard_normal(self.dim)
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-9)
        return out


def post(text: str, i: int = 1) -> Post:
    return Post(id=str(i), source="bluesky", text=text, created_at=datetime(2026, 5, 1, tzinfo=UTC))


# --- heads -------------------------------------------------------------------------------


def test_linear_head_roundtrip_and_decisions(tmp_path: Path) -> None:
    head = LinearHead(
        classes=["a", "b", "c"],
        coef=np.array([[1, 0], [0, 1], [-1, -1]], dtype=np.float32),
        intercept=np.zeros(3, dtype=np.float32),
        card={"note": "fixture"},
    )
    x = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, -2.0]], dtype=np.float32)
    p = head.proba(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert head.decide(p).tolist() == [0, 1, 2]
    head.bias = np.array([0.0, 0.0, 10.0], dtype=np.float32)  # a big offset wins every row
    assert head.decide(p).tolist() == [2, 2, 2]
    head.save(tmp_path / "h")
    back = LinearHead.load(tmp_path / "h")
    assert back.classes == ["a", "b", "c"] and back.card["note"] == "fixture"
    np.testing.assert_array_equal(back.proba(x), p)
    assert back.decide(p).tolist() == [2, 2, 2]
    with pytest.raises(ArtifactError):
        LinearHead.load(tmp_path / "missing")


def test_sigmoid_head_thresholds_per_class() -> None:
    head = LinearHead(
        classes=["x", "y"],
        coef=np.array([[1.0], [1.0]], dtype=np.float32),
        intercept=np.zeros(2, dtype=np.float32),
        kind="sigmoid",
        thresholds=np.array([0.6, 0.9], dtype=np.float32),
    )
    on = head.decide(head.proba(np.array([[1.0]], dtype=np.float32)))  # sigmoid(1) = 0.73
    assert on.tolist() == [[True, False]]


def test_tune_bias_raises_macro_f1_on_skewed_classes() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 180)
    # a weak, under-confident signal for the rare class
    p1 = np.clip(0.7 + rng.normal(0, 0.05, 200) - 0.25 * (y == 0), 0, 1)
    proba = np.stack([1 - p1, p1], axis=1).astype(np.float32)
    before = stance_report_f1(y, proba.argmax(1))
    bias = tune_bias(proba, y)
    after = stance_report_f1(y, np.argmax(np.log(proba + 1e-9) + bias, axis=1))
    assert after > before


def test_tune_bias_keeps_the_accuracy_floor() -> None:
    rng = np.random.default_rng(1)
    y = np.array([0] * 20 + [1] * 180)
    # a noisy signal: pushing recall of the rare class up costs many majority answers
    p1 = np.clip(0.75 + rng.normal(0, 0.15, 200) - 0.2 * (y == 0), 0, 1)
    proba = np.stack([1 - p1, p1], axis=1).astype(np.float32)
    logp = np.log(proba + 1e-9)
    free = np.argmax(logp + tune_bias(proba, y), axis=1)
    floored = np.argmax(logp + tune_bias(proba, y, min_accuracy=0.9), axis=1)
    assert (free == y).mean() < 0.9  # the floor binds (0.9 = always the majority class)
    assert (floored == y).mean() >= 0.9
    assert stance_report_f1(y, floored) <= stance_report_f1(y, free)


def stance_report_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="macro"))


def test_stance_features_and_cues() -> None:
    e = HashEmbedder()
    texts = ["Is this true?", "This is fake, never happened"]
    x = stance_features(e.embed(["claim", "claim"]), e.embed(texts), texts)
    assert x.shape == (2, 384 * 2 + 1 + len(cue_features("x")))
    q, d = cue_features(texts[0]), cue_features(texts[1])
    assert q[0] == 1.0 and d[0] == 0.0  # ends with '?'
    assert d[3] == 1.0 and q[3] == 0.0  # denial word
    assert model_text("@bob look https://t.co/x at this") == "@user look at this"


# --- training and the eval harness on tiny fixtures ----------------------------------------


def _stance_rows() -> list[dict[str, str]]:
    claim = "The bridge collapsed this morning"
    templates = {
        "support": "yes confirmed the bridge collapsed {}",
        "deny": "fake news nothing collapsed {}",
        "query": "is this true {} ?",
        "comment": "thoughts with everyone {}",
    }
    rows = []
    for i in range(12):
        for label, t in templates.items():
            rows.append(
                {
                    "claim": claim,
                    "text": t.format(f"w{i}"),
                    "label": label,
                    "event": f"e{i % 3}",
                    "split": "dev" if i >= 10 else "train",
                }
            )
    return rows


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_stance_on_a_tiny_fixture(tmp_path: Path) -> None:
    data = _write(tmp_path / "stance.jsonl", _stance_rows())  # type: ignore[arg-type]
    heads = train_stance(data, HashEmbedder(), replace(STANCE_OPTIONS, folds=3))
    assert list(heads) == ["stance-v1"]  # no reply depths: no depth-aware head
    head, metrics = heads["stance-v1"]
    assert head.classes == STANCE_CLASSES
    assert metrics["cv"]["macro_f1"] > 0.9 and metrics["dev"]["macro_f1"] > 0.9
    assert metrics["cv_grouped_by"] == "event"
    head.save(tmp_path / "stance-v1")
    card = json.loads((tmp_path / "stance-v1.json").read_text())
    assert card["data"]["file"] == "stance.jsonl" and len(card["data"]["sha256"]) == 64
    assert card["metrics"]["dev"]["n"] == 8 and "trained_at" in card
    model = StanceModel(LinearHead.load(tmp_path / "stance-v1"))
    e = HashEmbedder()
    texts = ["is this true w99 ?", "fake news nothing collapsed w98"]
    got = model.predict(e.embed(["The bridge collapsed this morning"] * 2), e.embed(texts), texts)
    assert [s for s, _ in got] == ["query", "deny"]


def _depth_rows() -> list[dict[str, Any]]:
    """The same words are a query right under the claim and a comment deeper in the thread."""
    rows: list[dict[str, Any]] = []
    for i in range(12):
        for depth, label in ((1, "query"), (2, "comment")):
            rows.append(
                {
                    "id": f"{depth}-{i}",
                    "claim": "The bridge collapsed this morning",
                    "text": f"wait what about the bridge w{i}",
                    "label": label,
                    "event": f"e{i % 3}",
                    "split": "dev" if i >= 10 else "train",
                }
            )
    return rows


def _heads(c: str, d: str) -> tuple[LinearHead, LinearHead]:
    """A text head that always answers ``c`` and a depth head that always answers ``d``."""

    def const(label: str, n: int) -> LinearHead:
        intercept = np.array([5.0 if k == label else 0.0 for k in STANCE_CLASSES], np.float32)
        return LinearHead(STANCE_CLASSES, np.zeros((4, n), np.float32), intercept)

    e, texts = HashEmbedder(), ["x"]
    n_text = stance_features(e.embed(texts), e.embed(texts), texts).shape[1]
    n_depth = stance_features(e.embed(texts), e.embed(texts), texts, [1]).shape[1]
    return const(c, n_text), const(d, n_depth)


def test_stance_model_sends_replies_of_known_depth_to_the_depth_head() -> None:
    model = StanceModel(*_heads("comment", "deny"))
    e = HashEmbedder()
    texts = ["a", "b", "c", "d"]
    got = model.predict(e.embed(["claim"] * 4), e.embed(texts), texts, [1, 2, 0, None])
    assert [s for s, _ in got] == ["deny", "deny", "comment", "comment"]
    assert [s for s, _ in model.predict(e.embed(["claim"]), e.embed(["a"]), ["a"])] == ["comment"]
    assert [
        s
        for s, _ in StanceModel(_heads("comment", "deny")[0]).predict(
            e.embed(["claim"]), e.embed(["a"]), ["a"], [1]
        )
    ] == ["comment"]  # no depth head bundled: the text head answers
    other = LinearHead(["yes", "no"], np.zeros((2, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="classes"):
        StanceModel(_heads("comment", "deny")[0], other)


def test_depth_head_learns_what_the_text_cannot(tmp_path: Path) -> None:
    rows = _stance_rows() + _depth_rows()  # type: ignore[operator]
    data = _write(tmp_path / "stance_pairs.jsonl", rows)
    threads = _write(
        tmp_path / "stance_threads.jsonl",
        [{"id": "root", "thread_id": "root", "in_reply_to": None, "is_source": True}]
        + [
            {
                "id": r["id"],
                "thread_id": "root",
                "in_reply_to": "root" if r["id"][0] == "1" else "x",
            }
            for r in _depth_rows()
        ],
    )
    heads = train_stance(data, HashEmbedder(), replace(STANCE_OPTIONS, folds=3), threads)
    assert list(heads) == ["stance-v1", "stance-depth-v1"]
    dhead, dmetrics = heads["stance-depth-v1"]
    assert dmetrics["cv"]["n"] == 20 and dmetrics["dev"]["n"] == 4  # the rows of known depth
    assert dhead.card["thread_data"]["file"] == "stance_threads.jsonl"
    assert dhead.card["features"].startswith(heads["stance-v1"][0].card["features"])
    for name, (head, _) in heads.items():
        head.save(tmp_path / name)
    model, _ = load_heads(tmp_path)
    assert model.depth_head is not None
    # the text alone cannot tell the two apart; the depth can
    tiny = [{**r, "split": "dev"} for r in _depth_rows() if r["split"] == "dev"]
    path = _write(tmp_path / "tiny.jsonl", tiny)
    text_only = evaluate_stance(model, HashEmbedder(), path)
    assert text_only["with_reply_depth"] == 0 and text_only["accuracy"] <= 0.5
    by_file = evaluate_stance(model, HashEmbedder(), path, threads)
    assert by_file["with_reply_depth"] == 4 and by_file["accuracy"] == 1.0
    inline = _write(
        tmp_path / "inline.jsonl",
        [{**r, "reply_depth": 1 if r["label"] == "query" else 2} for r in tiny],
    )
    assert evaluate_stance(model, HashEmbedder(), inline)["accuracy"] == 1.0
    # a row's own reply_depth wins over the thread file; null means unknown
    unknown = _write(tmp_path / "unknown.jsonl", [{**r, "reply_depth": None} for r in tiny])
    assert evaluate_stance(model, HashEmbedder(), unknown, threads)["with_reply_depth"] == 0


def test_train_topic_on_a_tiny_fixture(tmp_path: Path) -> None:
    rows = []
    for i in range(15):
        rows.append({"text": f"football match goal w{i}", "topics": ["Sports"]})
        rows.append({"text": f"guitar album song w{i}", "topics": ["Music"]})
        rows.append({"text": f"football anthem song w{i}", "topics": ["Sports", "Music"]})
    data = _write(tmp_path / "topic.jsonl", rows)  # type: ignore[arg-type]
    head, metrics = train_topic(data, HashEmbedder(), replace(TOPIC_OPTIONS, folds=3))
    assert head.classes == ["Music", "Sports"] and head.kind == "sigmoid"
    assert metrics["cv"]["macro_f1"] > 0.9
    pred = TopicModel(head).predict(HashEmbedder().embed(["goal match football", "album guitar"]))
    assert pred == [["Sports"], ["Music"]]


def test_eval_stance_cli_prints_json_last_line(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"claim": "The bridge collapsed", "text": "Is that really true?", "label": "query"},
        {"claim": "The bridge collapsed", "text": "So sad, thoughts with them", "label": "comment"},
        {"claim": "The bridge collapsed", "text": "This is fake, it never fell", "label": "deny"},
    ]
    path = _write(tmp_path / "tiny.jsonl", rows)
    res = run_seismo({}, "-q", "eval", "stance", str(path))
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    last = json.loads(lines[-1])
    assert set(last) == {"macro_f1", "accuracy", "n"} and last["n"] == 3
    assert 0.0 <= last["macro_f1"] <= 1.0 and 0.0 <= last["accuracy"] <= 1.0
    assert any(line.startswith("query") for line in lines)
    assert "0 of 3 rows scored with a reply depth" in res.stderr
    # with reply depths: one row's own field, one by id from a thread file, one unknown
    rows[0] |= {"id": "r0", "reply_depth": 1}
    rows[1] |= {"id": "r1"}
    threads = _write(
        tmp_path / "threads.jsonl",
        [{"id": "r1", "thread_id": "s", "in_reply_to": "r0"}],
    )
    path = _write(tmp_path / "tiny.jsonl", rows)
    res = run_seismo({}, "eval", "stance", str(path), "--thread-file", str(threads))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2 of 3 rows scored with a reply depth" in res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["n"] == 3
    bad = _write(tmp_path / "bad.jsonl", [{"claim": "c", "text": "t"}])  # type: ignore[arg-type]
    res = run_seismo({}, "-q", "eval", "stance", str(bad))
    assert res.returncode == 2 and "missing field(s) label" in res.stderr


def test_labelled_files_with_a_wrong_label_are_refused_by_line(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"text": "football match goal", "topics": ["Sports"]},
        {"text": "guitar album song", "topics": ["Music"]},
    ] * 6
    head, _ = train_topic(
        _write(tmp_path / "t.jsonl", rows), HashEmbedder(), replace(TOPIC_OPTIONS, folds=3)
    )
    model, emb = TopicModel(head), HashEmbedder()
    cases = [
        ({"text": "goal", "topics": "Sports"}, r"t2\.jsonl:2: topics must be a list of strings"),
        (
            {"text": "goal", "topics": ["Sport"]},
            r"t2\.jsonl:2: topic\(s\) \['Sport'\] unknown to the head",
        ),
    ]
    for row, msg in cases:
        with pytest.raises(DataError, match=msg):
            evaluate_topic(model, emb, _write(tmp_path / "t2.jsonl", [rows[0], row]))
    with pytest.raises(DataError, match=r"t3\.jsonl:2: topics must be a list of strings"):
        train_topic(_write(tmp_path / "t3.jsonl", [rows[0], {"text": "x", "topics": [1]}]), emb)
    stance = [
        {"claim": "c", "text": "t", "label": "comment"},
        {"claim": "c", "text": "t", "label": "Deny"},
    ]
    with pytest.raises(DataError, match=r"s\.jsonl:2: label \"Deny\" is not one of support, deny"):
        train_stance(_write(tmp_path / "s.jsonl", stance), emb)  # type: ignore[arg-type]


def test_report_counts_every_class() -> None:
    r = stance_report(["query", "comment", "comment"], ["query", "comment", "deny"])
    assert r["n"] == 3 and r["accuracy"] == pytest.approx(2 / 3, abs=1e-3)
    assert r["per_class"]["deny"]["n"] == 0 and r["per_class"]["query"]["f1"] == 1.0


# --- the real model (bundled artifacts, MiniLM int8 ONNX) ---------------------------------


@pytest.fixture(scope="module")
def cascade() -> CascadeClassifier:
    clf = build_classifier(load_watchlist(), mode="cascade")
    assert isinstance(clf, CascadeClassifier)
    return clf


def test_embedder_is_deterministic_and_semantic(cascade: CascadeClassifier) -> None:
    e = cascade.embedder
    a = e.embed(["A tornado hit Moore, Oklahoma", "Twister strikes Oklahoma town", "pasta recipe"])
    assert a.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-4)
    assert float(a[0] @ a[1]) > float(a[0] @ a[2]) + 0.2
    # alone (other padding), not from the cache
    np.testing.assert_allclose(e.embed_uncached(["pasta recipe"])[0], a[2], atol=1e-5)


def test_embedder_runs_each_distinct_text_once(cascade: CascadeClassifier) -> None:
    e = cascade.embedder
    rt = "RT @user: Tornado warning for Moore until 4:15pm, take cover now"
    before = e.computed
    a = e.embed([rt, "Hail the size of golf balls in Norman", rt])
    assert e.computed - before == 2  # the repeat within the call ran once
    np.testing.assert_array_equal(a[0], a[2])
    b = e.embed(["Hail the size of golf balls in Norman", rt])
    assert e.computed - before == 2  # both from the cache
    np.testing.assert_array_equal(b, a[[1, 0]])
    np.testing.assert_allclose(e.embed_uncached([rt])[0], a[0], atol=1e-5)


def test_cascade_classifies_claims_stance_and_skips_chatter(cascade: CascadeClassifier) -> None:
    posts = [
        post("Is it true that GLM-5 was trained entirely on Huawei Ascend chips?", 1),
        post("Zhipu confirms: GLM-5 was trained on Huawei Ascend hardware", 2),
        post("Lovely sunset at the beach today", 3),
        post("Washington tightens rules on selling advanced AI accelerators to Beijing", 4),
    ]
    before = dict(cascade.stats)
    out = cascade.classify_batch(posts)
    assert [cp.post.id for cp in out] == ["1", "2", "3", "4"]
    q, s, chatter, policy = out
    assert [c.claim for c in q.claims] == ["glm5-trained-on-ascend"]
    assert q.claims[0].stance == "query"
    assert s.claims[0].claim == "glm5-trained-on-ascend" and s.claims[0].stance != "query"
    assert "china-ai-rising" in q.dossiers and q.dossier_scores
    assert chatter.dossiers == [] and chatter.claims == [] and chatter.dossier_scores == {}
    # the gate sent 3 posts to the transformer; chatter kept stage 1's answer
    assert cascade.stats["stage2"] - before["stage2"] == 3
    # no watchlist keyword in the policy post: the embedding finds its dossier
    assert policy.dossier_scores["ai-export-controls"] == max(policy.dossier_scores.values())
    assert all(cp.classifier == "minilm-cascade-v1" for cp in out)
    assert cascade.classify(posts[0]) == q  # one by one == batched
    for cp in out:
        assert all(isinstance(t, str) for t in cp.topics)


def test_bundled_artifacts_have_cards() -> None:
    stance, topics = load_heads()
    assert stance.head.classes == STANCE_CLASSES
    assert "cv" in stance.head.card["metrics"] and "dev" in stance.head.card["metrics"]
    assert stance.depth_head is not None and "dev" in stance.depth_head.card["metrics"]
    assert stance.depth_head.card["thread_data"]["file"].endswith("_threads.jsonl")
    assert topics is not None and len(topics.head.classes) == 19


@pytest.mark.slow
def test_train_stance_on_rumoureval(
    shared_data: Path, tmp_path: Path, cascade: CascadeClassifier
) -> None:
    _, metrics = train_stance(
        shared_data / "stance" / "rumoureval2017_traindev_pairs.jsonl", cascade.embedder
    )["stance-v1"]
    # well above chance (0.25) and above always-"comment" (macro-F1 ~0.21)
    assert metrics["cv"]["macro_f1"] >= 0.40
    assert metrics["dev"]["macro_f1"] >= 0.45


def test_train_without_data_explains_and_keeps_bundled_heads(tmp_path: Path) -> None:
    res = run_seismo({}, "-q", "train", "stance", "--data", str(tmp_path / "absent.jsonl"))
    assert res.returncode == 2
    assert "no training data" in res.stderr and "bundled heads stay" in res.stderr
