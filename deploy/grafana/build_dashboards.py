"""Grafana dashboards as code: writes deploy/grafana/dashboards/*.json.

    python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check  # exit 1 if they are out of date

Plain dicts in Grafana's dashboard JSON model (schemaVersion 39), no dependency. Every
panel queries the provisioned Prometheus datasource (uid ``seismo-prometheus``); a test
runs each expression against a real Prometheus scraping a real worker.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "seismo-prometheus"}
RATE = "$__rate_interval"
WIDTH, HEIGHT = 12, 8

Panel = dict[str, Any]


def panel(
    title: str,
    *exprs: str | tuple[str, str],
    unit: str = "short",
    kind: str = "timeseries",
    description: str = "",
    width: int = WIDTH,
) -> Panel:
    """One panel; each expr is PromQL or (PromQL, legend format)."""
    targets = []
    for i, e in enumerate(exprs):
        expr, legend = e if isinstance(e, tuple) else (e, "")
        targets.append(
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend or "__auto",
                "instant": kind in ("table", "bargauge", "stat"),
                "range": kind not in ("table", "bargauge", "stat"),
            }
        )
    p: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right", "showLegend": True}},
        "gridPos": {"w": width, "h": HEIGHT},
    }
    if kind == "table":
        p["transformations"] = [{"id": "merge", "options": {}}]
        p["options"] = {"showHeader": True}
    return p


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24}}


def layout(panels: list[Panel]) -> list[Panel]:
    """Left-to-right, top-to-bottom grid positions; rows span the width."""
    x = y = 0
    out = []
    for i, p in enumerate(panels, start=1):
        w = p["gridPos"]["w"]
        h = 1 if p["type"] == "row" else p["gridPos"].get("h", HEIGHT)
        if x + w > 24 or p["type"] == "row":
            if x:
                y += HEIGHT
            x = 0
        out.append(p | {"id": i, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x += w
        if p["type"] == "row":
            y, x = y + 1, 0
    return out


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-var"},
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard(
    uid: str, title: str, panels: list[Panel], variables: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["seismo"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "panels": layout(panels),
    }


# Records not yet committed per topic. A partition's gauges can linger on a worker that
# lost it in a rebalance: take the max over workers (alerts.yml records the same).
CONSUMER_LAG = (
    "sum by (topic) ("
    "max by (topic, partition) (seismo_consumer_end_offset)"
    " - max by (topic, partition) (seismo_consumer_committed_offset))"
)


def _quantiles(metric: str, by: str) -> list[str | tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket[{RATE}])))",
            f"p{int(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def pipeline() -> dict[str, Any]:
    return dashboard(
        "seismo-pipeline",
        "seismo — pipeline health",
        [
            row("Throughput"),
            panel(
                "Records per second by stage",
                (f"sum by (stage) (rate(seismo_posts_in_total[{RATE}]))", "{{stage}} in"),
                (f"sum by (stage) (rate(seismo_posts_out_total[{RATE}]))", "{{stage}} out"),
                unit="ops",
            ),
            panel(
                "Posts ingested per second by source",
                (
                    f'sum by (source) (rate(seismo_posts_in_total{{stage="ingest"}}[{RATE}]))',
                    "{{source}}",
                ),
                unit="ops",
                description="A source dropping to zero is a stalled connector "
                "(alert SeismoSourceStalled).",
            ),
            panel(
                "Signals per second by kind",
                (f"sum by (kind) (rate(seismo_signals_total[{RATE}]))", "{{kind}}"),
                unit="ops",
            ),
            panel(
                "Records written per second by stage",
                (f"sum by (stage) (rate(seismo_posts_out_total[{RATE}]))", "{{stage}}"),
                unit="ops",
            ),
            panel(
                "Worker CPU (cores)",
                (f"rate(process_cpu_seconds_total[{RATE}])", "{{instance}}"),
                description="CPU seconds per second of each worker process (ingest, "
                "classification, detection and delivery together).",
            ),
            panel(
                "Worker resident memory",
                ("process_resident_memory_bytes", "{{instance}}"),
                unit="bytes",
                description="The detector's state is fixed (about 22 MB of sketches per "
                "classified partition, whatever the vocabulary) and the models load once: "
                "steady growth is a leak.",
            ),
            row("Lag and latency"),
            panel(
                "Consumer lag (records) by topic",
                (CONSUMER_LAG, "{{topic}}"),
                description="End offset minus committed offset, summed over partitions.",
            ),
            panel(
                "Processing latency from ingestion",
                *_quantiles("seismo_processing_latency_seconds", "stage"),
                unit="s",
            ),
            panel(
                "Event-time lag by stage",
                ("time() - max by (stage) (seismo_event_time_seconds)", "{{stage}}"),
                unit="s",
                description="Wall clock minus the newest event time a stage processed "
                "(large during a replay of old data).",
            ),
            panel(
                "Seconds since a stage last processed a record",
                ("time() - max by (stage) (seismo_last_processed_timestamp_seconds)", "{{stage}}"),
                unit="s",
            ),
            panel(
                "Classifier latency per call",
                *_quantiles("seismo_classify_latency_seconds", "classifier"),
                unit="s",
            ),
            panel(
                "Classifier batch size (mean)",
                (
                    f"sum by (classifier) (rate(seismo_classify_batch_size_sum[{RATE}]))"
                    f" / sum by (classifier) (rate(seismo_classify_batch_size_count[{RATE}]))",
                    "{{classifier}}",
                ),
            ),
            row("Failures and delivery"),
            panel(
                "Dead-lettered records per minute by stage",
                (f"sum by (stage) (rate(seismo_dlq_total[{RATE}])) * 60", "{{stage}}"),
            ),
            panel(
                "Duplicates skipped per minute by stage",
                (
                    f"sum by (stage) (rate(seismo_duplicates_skipped_total[{RATE}])) * 60",
                    "{{stage}}",
                ),
            ),
            panel(
                "Detector merge of raw partitions: posts waiting, late and forced per minute",
                ("sum(seismo_merge_buffered_posts)", "waiting"),
                (f"sum(rate(seismo_merge_late_total[{RATE}])) * 60", "late"),
                (f"sum(rate(seismo_merge_forced_total[{RATE}])) * 60", "forced"),
            ),
            panel(
                "Alert deliveries per minute by sink and outcome",
                (
                    f"sum by (sink, outcome) (rate(seismo_alert_deliveries_total[{RATE}])) * 60",
                    "{{sink}} {{outcome}}",
                ),
            ),
            panel(
                "Workers up, rebalances",
                ('sum(up{job="seismo-worker"})', "workers up"),
                (f"sum(increase(seismo_rebalances_total[{RATE}]))", "rebalances"),
            ),
            row("Connectors"),
            panel(
                "Connector events per second by source and outcome",
                (
                    f"sum by (source, outcome) (rate(seismo_connector_events_total[{RATE}]))",
                    "{{source}} {{outcome}}",
                ),
                unit="ops",
                description="received, produced, duplicate, skipped, invalid (to the DLQ).",
            ),
            panel(
                "Connectors up",
                ("max by (source) (seismo_connector_up)", "{{source}}"),
                kind="stat",
                description="1 while a connector's loop runs (alert SeismoConnectorDown).",
            ),
            panel(
                "Connector lag: wall clock minus event time",
                ("max by (source) (seismo_connector_lag_seconds)", "{{source}}"),
                unit="s",
            ),
            panel(
                "Seconds since a connector last produced a post",
                (
                    "time() - max by (source) (seismo_connector_last_event_timestamp_seconds)",
                    "{{source}}",
                ),
                unit="s",
            ),
            panel(
                "Connector reconnects, errors and gaps in the time range",
                (
                    "sum by (source) (increase(seismo_connector_reconnects_total[$__range]))",
                    "{{source}} reconnects",
                ),
                (
                    "sum by (source) (increase(seismo_connector_errors_total[$__range]))",
                    "{{source}} errors",
                ),
                (
                    "sum by (source) (increase(seismo_connector_gaps_total[$__range]))",
                    "{{source}} gaps",
                ),
                kind="table",
                description="A gap: the upstream could not resume at the cursor, posts may be "
                "missing (alert SeismoConnectorGap).",
            ),
            row("Alerts"),
            panel(
                "Alert events per hour by severity",
                (f"sum by (severity) (rate(seismo_alerts_total[{RATE}])) * 3600", "{{severity}}"),
            ),
            panel(
                "Alerts in the time range by kind and status",
                ("sum by (kind, status) (increase(seismo_alerts_total[$__range]))", ""),
                kind="table",
            ),
            panel(
                "Event time each detector has watched",
                ("max by (partition) (seismo_detector_watched_seconds)", "partition {{partition}}"),
                unit="s",
                description="Since its first post. A detector raises nothing before "
                "detector.warmup_seconds (2 h), and a longer time scale not before 12 of its "
                "buckets (6 h, 36 h, 6 days): after a start without a checkpoint (or a change "
                "to a setting its state is shaped by) this says when alerts become possible.",
            ),
        ],
    )


TREND_SEL = 'dossier=~"$dossier", claim=~"$claim", stance=~"$stance"'


def trends() -> dict[str, Any]:
    per_min = "* 60"
    return dashboard(
        "seismo-trends",
        "seismo — dossier and claim trends",
        [
            row("Dossiers"),
            panel(
                "Posts per minute by dossier",
                (
                    "sum by (dossier) (rate(seismo_dossier_posts_total"
                    f'{{dossier=~"$dossier"}}[{RATE}])) {per_min}',
                    "{{dossier}}",
                ),
            ),
            panel(
                "Top dossiers, posts per minute over 15 minutes",
                (
                    "topk(5, sum by (dossier) (rate(seismo_dossier_posts_total"
                    f'{{dossier=~"$dossier"}}[15m])) {per_min})',
                    "{{dossier}}",
                ),
                kind="bargauge",
            ),
            panel(
                "Top terms now, posts per minute (event time)",
                ("topk(10, max by (term) (seismo_top_terms_posts_per_minute))", "{{term}}"),
                kind="table",
                description="The worker's current top 10 terms by decayed rate; terms are "
                "labels only while in its top 10.",
            ),
            panel(
                "Posts per minute, selected dossiers",
                (
                    "sum(rate(seismo_dossier_posts_total"
                    f'{{dossier=~"$dossier"}}[{RATE}])) {per_min}',
                    "all selected",
                ),
            ),
            row("Claims and stance"),
            panel(
                "Posts per minute by claim",
                (
                    f"sum by (claim) (rate(seismo_claim_posts_total{{{TREND_SEL}}}[{RATE}]))"
                    f" {per_min}",
                    "{{claim}}",
                ),
            ),
            panel(
                "Posts per minute by stance",
                (
                    f"sum by (stance) (rate(seismo_claim_posts_total{{{TREND_SEL}}}[{RATE}]))"
                    f" {per_min}",
                    "{{stance}}",
                ),
            ),
            panel(
                "Stance share of claim posts, last hour",
                (
                    f"sum by (stance) (increase(seismo_claim_posts_total{{{TREND_SEL}}}[1h]))"
                    f" / scalar(sum(increase(seismo_claim_posts_total{{{TREND_SEL}}}[1h])))",
                    "{{stance}}",
                ),
                unit="percentunit",
            ),
            panel(
                "Top claims by stance, posts per minute over 15 minutes",
                (
                    "topk(10, sum by (claim, stance) (rate(seismo_claim_posts_total"
                    f"{{{TREND_SEL}}}[15m])) {per_min})",
                    "",
                ),
                kind="table",
            ),
            row("Bursts and alerts"),
            panel(
                "Alert events per hour by dossier and severity",
                (
                    'sum by (dossier, severity) (rate(seismo_alerts_total{dossier=~"$dossier"}'
                    f"[{RATE}])) * 3600",
                    "{{dossier}} {{severity}}",
                ),
            ),
            panel(
                "Burst score of alerts (p50, p90) by kind, last hour",
                *[
                    (
                        f"histogram_quantile({q}, sum by (le, kind) "
                        "(rate(seismo_burst_score_bucket[1h])))",
                        f"p{int(q * 100)} {{{{kind}}}}",
                    )
                    for q in (0.5, 0.9)
                ],
                description="-log10 p of each alert's burst test; 4 is the default threshold.",
            ),
            panel(
                "Alerts in the time range by dossier, kind and severity",
                (
                    'sum by (dossier, kind, severity) (increase(seismo_alerts_total{dossier=~"'
                    '$dossier"}[$__range]))',
                    "",
                ),
                kind="table",
                width=24,
            ),
        ],
        variables=[
            variable("dossier", "label_values(seismo_dossier_posts_total, dossier)", "Dossier"),
            variable(
                "claim",
                'label_values(seismo_claim_posts_total{dossier=~"$dossier"}, claim)',
                "Claim",
            ),
            variable("stance", "label_values(seismo_claim_posts_total, stance)", "Stance"),
        ],
    )


DASHBOARDS = {"pipeline.json": pipeline, "trends.json": trends}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=Path(__file__).name,
        description=f"Write the Grafana dashboards ({', '.join(DASHBOARDS)}) to "
        "deploy/grafana/dashboards/ (docker-compose.yml provisions them).",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a dashboard file is not what this script generates",
    )
    check = parser.parse_args(argv).check
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}", file=sys.stderr)
    if stale:
        print(f"out of date: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
