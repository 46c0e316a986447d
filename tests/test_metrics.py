"""seismo.metrics: bounded labels, trend counters, alert events, the standalone endpoint."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from models.keyword import KeywordClassifier
from seismo.broker import free_port
from seismo.contracts import Alert, Post
from seismo.metrics import Metrics, TopTerms, serve_metrics
from seismo.watchlist import load_watchlist
from tests.helpers import REPO, http_get

T0 = datetime(2026, 5, 1, 10, tzinfo=UTC)


def fresh() -> Metrics:
    return Metrics(CollectorRegistry(), label_cap=2)


def value(m: Metrics, name: str, **labels: str) -> float | None:
    v = m.registry.get_sample_value(name, labels)
    return None if v is None else float(v)


def lifecycle_alert(id: str, version: int, status: str, severity: str, **extra: object) -> Alert:
    fields = {
        "id": id,
        "version": version,
        "status": status,
        "severity": severity,
        "kind": "claim",
        "key": f"claim:{id}",
        "label": id,
        "terms": [],
        "dossier": "china-ai-rising",
        "window_start": T0,
        "window_seconds": 3600,
        "raised_at": T0,
        "first_seen": T0,
        "observed": 9,
        "expected": 0.5,
        "score": 6.0,
        "detected_at": T0,
    }
    return Alert.model_validate(fields | extra)


def test_label_cap_folds_values_past_the_cap_into_other() -> None:
    m = fresh()
    assert [m.dossier(d) for d in ["a", "b", "c", "a", None, ""]] == [
        "a",
        "b",
        "other",
        "a",
        "none",
        "none",
    ]


def test_trend_counters_follow_the_classified_post() -> None:
    m = Metrics(CollectorRegistry())
    clf = KeywordClassifier(load_watchlist())
    texts = [
        "Zhipu says GLM-5 was trained on Huawei Ascend chips",
        "No evidence GLM-5 was trained on Ascend, misleading",
        "coffee and rain",
    ]
    for i, text in enumerate(texts):
        m.classified(clf.classify(Post(id=f"p{i}", source="x", text=text, created_at=T0)))
    assert value(m, "seismo_dossier_posts_total", dossier="china-ai-rising") == 2
    claim = {"claim": "glm5-trained-on-ascend", "dossier": "china-ai-rising"}
    assert value(m, "seismo_claim_posts_total", **claim, stance="deny") == 1
    stances = ["support", "query", "comment"]
    assert sum(value(m, "seismo_claim_posts_total", **claim, stance=s) or 0 for s in stances) == 1


def test_alert_events_by_kind_severity_status_and_dossier() -> None:
    m = fresh()
    tornado = {"kind": "term", "key": "term:tornado", "label": "tornado", "terms": ["tornado"]}
    m.alert(lifecycle_alert("a1", 1, "open", "low", **tornado, dossier=None, score=6.5))
    m.alert(lifecycle_alert("a1", 2, "update", "high", **tornado, dossier=None, score=12.0))
    opened = {"kind": "term", "severity": "low", "status": "open", "dossier": "none"}
    assert value(m, "seismo_alerts_total", **opened) == 1
    assert value(m, "seismo_alerts_total", **opened | {"severity": "high", "status": "update"}) == 1
    assert value(m, "seismo_burst_score_count", kind="term") == 2
    assert value(m, "seismo_burst_score_bucket", kind="term", le="8.0") == 1


def test_stage_done_sets_event_time_and_wall_clock() -> None:
    m = fresh()
    before = time.time()
    m.stage_done("ingest", T0.timestamp(), 0.2)
    m.stage_done("detect", T0.timestamp(), None)
    assert value(m, "seismo_event_time_seconds", stage="ingest") == T0.timestamp()
    assert (value(m, "seismo_last_processed_timestamp_seconds", stage="detect") or 0) >= before
    assert value(m, "seismo_processing_latency_seconds_count", stage="ingest") == 1
    assert value(m, "seismo_processing_latency_seconds_count", stage="detect") is None


def test_connector_helper_and_standalone_endpoint() -> None:
    m = fresh()
    m.connector("bluesky", "received", 3)
    m.connector("bluesky", "produced", 2)
    assert value(m, "seismo_connector_events_total", source="bluesky", outcome="produced") == 2
    assert value(m, "seismo_connector_last_event_timestamp_seconds", source="bluesky")
    port = free_port()
    serve_metrics(m.registry, "127.0.0.1", port)
    body = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    assert 'seismo_connector_events_total{outcome="received",source="bluesky"} 3.0' in body


def test_every_metric_is_in_the_operations_metric_table_with_its_labels() -> None:
    page = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(seismo_\w+)` \| \w+ \| ([^|]*) \|", page, re.M)}
    m = Metrics(CollectorRegistry(), process="all")
    for fam in m.registry.collect():
        name = fam.name + ("_total" if fam.type == "counter" else "")
        assert name in rows, f"{name} is not documented in docs/operations.md's metric table"
        collector = m.registry._names_to_collectors[name]
        labels = [x.strip() for x in rows[name].split(",") if x.strip() not in ("", "none")]
        want = collector.LABELS if isinstance(collector, TopTerms) else collector._labelnames
        assert labels == list(want), name


def test_top_terms_ranks_by_recent_rate_and_estimates_it() -> None:
    top = TopTerms(k=2, halflife_seconds=600)
    t = T0.timestamp()
    # "old" was busy an hour ago; "hot" runs at 6 posts a minute now; "warm" at 2
    for i in range(600):
        top.add(["old"], t + i)
    for s in range(3600, 3600 + 3 * 3600, 10):
        top.add(["hot"] + (["warm"] if s % 30 == 0 else []), t + s)
    (first, rate1), (second, rate2) = top.top()
    assert (first, second) == ("hot", "warm")
    assert 5.5 < rate1 < 6.5 and 1.7 < rate2 < 2.3


def test_top_terms_memory_is_bounded_and_rescaling_keeps_the_ranking() -> None:
    top = TopTerms(k=3, capacity=100, halflife_seconds=1)
    t = T0.timestamp()
    for i in range(1000):
        top.add([f"w{i}", "steady"], t + i * 0.01)
    assert len(top._weights) <= 100
    # 600 half-lives later: weights were rescaled, not overflowed
    for i in range(5):
        top.add(["steady", "late"], t + 600 + i)
    ranked = [term for term, _ in top.top()]
    assert ranked[:2] == ["steady", "late"]
    assert all(math.isfinite(r) for _, r in top.top())


def test_top_terms_are_exported_with_the_trend_counters() -> None:
    m = Metrics(CollectorRegistry())
    clf = KeywordClassifier(load_watchlist())
    for i in range(5):
        text = f"Tornado warning in Oklahoma, take shelter {i}"
        m.classified(clf.classify(Post(id=f"p{i}", source="x", text=text, created_at=T0)))
    assert (value(m, "seismo_top_terms_posts_per_minute", term="tornado") or 0) > 0


def test_open_alerts_follow_the_lifecycle_and_ignore_repeats() -> None:
    m = Metrics(CollectorRegistry())

    def open_now(severity: str) -> float | None:
        return value(m, "seismo_alerts_open", severity=severity, dossier="china-ai-rising")

    m.alert(lifecycle_alert("a", 1, "open", "low"))
    m.alert(lifecycle_alert("b", 1, "open", "low"))
    assert open_now("low") == 2
    m.alert(lifecycle_alert("a", 2, "update", "high"))  # severity moves
    assert (open_now("low"), open_now("high")) == (1, 1)
    # repeats after a restart or rebalance: same (id, version), or an older one
    m.alert(lifecycle_alert("a", 2, "update", "high"))
    m.alert(lifecycle_alert("a", 1, "open", "low"))
    assert (open_now("low"), open_now("high")) == (1, 1)
    m.alert(lifecycle_alert("a", 3, "resolved", "high"))
    m.alert(lifecycle_alert("a", 3, "resolved", "high"))
    m.alert(lifecycle_alert("a", 1, "open", "low"))  # a late repeat of a resolved alert
    assert (open_now("low"), open_now("high")) == (1, 0)
    # an alert first seen at an update (opened before this process started) counts too
    m.alert(lifecycle_alert("c", 4, "update", "critical"))
    assert open_now("critical") == 1
    m.alert(lifecycle_alert("b", 2, "resolved", "low"))
    m.alert(lifecycle_alert("c", 5, "resolved", "critical"))
    assert (open_now("low"), open_now("high"), open_now("critical")) == (0, 0, 0)
    assert not m._open  # bounded: nothing kept for resolved alerts but a capped id memory
    opened = {"kind": "claim", "severity": "low", "status": "open", "dossier": "china-ai-rising"}
    assert value(m, "seismo_alerts_total", **opened) == 2  # a, b: repeats are not events


def test_alerts_restored_from_a_checkpoint_fill_the_gauges_without_counting_events() -> None:
    m = Metrics(CollectorRegistry())
    m.alert_restored(lifecycle_alert("a", 2, "update", "high", score=11.0))
    m.alert_restored(lifecycle_alert("a", 2, "update", "high", score=11.0))  # twice: once
    assert value(m, "seismo_alerts_open", severity="high", dossier="china-ai-rising") == 1
    assert value(m, "seismo_burst_score_max", kind="claim", dossier="china-ai-rising") == 11.0
    assert value(m, "seismo_alerts_total", **{"kind": "claim", "severity": "high",
        "status": "update", "dossier": "china-ai-rising"}) is None  # fmt: skip
    m.alert(lifecycle_alert("a", 2, "update", "high"))  # the replay re-sends it: no change
    m.alert(lifecycle_alert("a", 3, "resolved", "high"))
    assert value(m, "seismo_alerts_open", severity="high", dossier="china-ai-rising") == 0


def test_burst_score_max_is_the_best_open_alert_per_kind_and_dossier() -> None:
    m = Metrics(CollectorRegistry())

    def best(kind: str, dossier: str = "china-ai-rising") -> float | None:
        return value(m, "seismo_burst_score_max", kind=kind, dossier=dossier)

    m.alert(lifecycle_alert("a", 1, "open", "low", score=5.0))
    m.alert(lifecycle_alert("b", 1, "open", "low", score=9.0))
    m.alert(lifecycle_alert("t", 1, "open", "low", kind="term", dossier=None, score=7.0))
    assert (best("claim"), best("term", "none")) == (9.0, 7.0)
    m.alert(lifecycle_alert("a", 2, "update", "high", score=12.0))
    assert best("claim") == 12.0
    m.alert(lifecycle_alert("a", 3, "resolved", "high", score=12.0))
    assert best("claim") == 9.0
    m.alert(lifecycle_alert("b", 2, "resolved", "low", score=9.0))
    assert (best("claim"), best("term", "none")) == (0.0, 7.0)


def samples(m: Metrics) -> set[str]:
    """Names of the samples a fresh process exports (series without labels)."""
    return {s.name for fam in m.registry.collect() for s in fam.samples}


def test_a_process_exports_only_its_own_series_without_labels() -> None:
    every = samples(Metrics(CollectorRegistry(), process="all"))
    worker = {
        "seismo_detector_keys",
        "seismo_rebalances_total",
        "seismo_rebalances_created",
        "seismo_merge_late_total",
        "seismo_merge_late_created",
        "seismo_merge_forced_total",
        "seismo_merge_forced_created",
        "seismo_merge_buffered_posts",
    }
    assert every == worker | {"seismo_live_clients"}
    assert samples(Metrics(CollectorRegistry(), process="worker")) == worker
    assert samples(Metrics(CollectorRegistry(), process="live")) == {"seismo_live_clients"}
    other = Metrics(CollectorRegistry())  # connectors, tools
    assert samples(other) == set()
    other.live_clients.inc()  # another process's series can be set, it is not exported
    other.detector_keys.set(3)
    assert samples(other) == set()


def test_the_connector_outcomes_in_help_are_the_ones_counted() -> None:
    m = Metrics(CollectorRegistry())
    help_text = m.connector_events._documentation
    # every outcome a connector counts: the runner's own and the sources' Checkpoint words
    code = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "connectors").glob("*.py"))
    # Checkpoint(cursor, "deleted" if ... else "dead"): the words after the cursor
    calls = re.findall(r"Checkpoint\([^,\n]*, ([^\n]*)", code)
    used = {w for call in calls for w in re.findall(r'(?:^|else )"(\w+)"', call)}
    used |= set(re.findall(r'connector_events\.labels\(name, "(\w+)"\)', code))
    used |= set(re.findall(r"for outcome in \(([^)]*)\)", code)[0].replace('"', "").split(", "))
    named = set(re.findall(r"\b[a-z]+\b", help_text.split("outcome", 1)[1]))
    assert used and used <= named, used - named
    assert not {"invalid"} & named
