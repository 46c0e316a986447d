"""``seismo eval bursts --report DIR``: one PNG per labelled event and ``DIR/index.html``.

Each plot covers two days either side of the onset (clipped to the stream), in hours from
the onset: the event's on-topic posts per hour (top), every post per hour (middle) and the
alerts (bottom, one row per time scale, i.e. the alert's ``window_seconds``; a line spans
each alert's window, a filled dot marks an on-topic alert, a cross an off-topic one). A
dashed line marks the onset, a dotted one the first on-topic post, a solid one the first
on-topic alert. Rendered with matplotlib's Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import html
import math
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from seismo.contracts import Alert, Post
from seismo.errors import SeismoError
from streams.evaluate import (
    TARGET_DELAY_MIN,
    TARGET_POSTS,
    EventResult,
    EventSpec,
    alert_on_topic,
    first_on_topic_alert,
    on_topic,
    opened_alerts,
)

BEFORE = timedelta(days=2)
AFTER = timedelta(days=2)
# one colour per time scale (window_seconds); scales not listed take the spare colours
SCALE_COLOURS = {600: "#1f77b4", 3600: "#2ca02c", 21600: "#9467bd", 86400: "#8c564b"}
SPARE_COLOURS = ("#17becf", "#bcbd22", "#e377c2", "#7f7f7f", "#ff7f0e")
ON_TOPIC = "#d62728"


def scale_name(seconds: int) -> str:
    """``600`` -> ``10 min``, ``3600`` -> ``1 h``, ``86400`` -> ``1 day``."""
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day" + ("s" if seconds > 86400 else "")
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def scale_colours(scales: list[int]) -> dict[int, str]:
    spare = iter(SPARE_COLOURS * (len(scales) // len(SPARE_COLOURS) + 1))
    return {s: SCALE_COLOURS.get(s) or next(spare) for s in sorted(scales)}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "event"


def _hours(t: datetime, onset: datetime) -> float:
    return (t - onset).total_seconds() / 3600


def event_figure(
    spec: EventSpec, result: EventResult, posts: list[Post], alerts: list[Alert]
) -> Figure:
    """The picture of one event (see the module docstring)."""
    onset = spec.onset
    lo = max(onset - BEFORE, posts[0].created_at) if posts else onset - BEFORE
    hi = min(onset + AFTER, posts[-1].created_at) if posts else onset + AFTER
    lo_h, hi_h = math.floor(_hours(lo, onset)), max(math.ceil(_hours(hi, onset)), 1)
    edges = np.arange(lo_h, hi_h + 1, dtype=float)
    shown = [p for p in posts if lo <= p.created_at <= hi]
    every = np.histogram([_hours(p.created_at, onset) for p in shown], bins=edges)[0]
    topical = np.histogram(
        [_hours(p.created_at, onset) for p in shown if on_topic(p, spec)], bins=edges
    )[0]
    every_alert = opened_alerts(alerts)
    opened = [a for a in every_alert if lo <= a.raised_at <= hi]
    scales = sorted({a.window_seconds for a in every_alert})  # the stream's, for one legend
    colour = scale_colours(scales)
    first = first_on_topic_alert(spec, alerts)

    fig = Figure(figsize=(12, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_on, ax_all, ax_al = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 0.6 + 0.45 * max(len(scales), 1)]}
    )
    ax_on.bar(edges[:-1], topical, width=1.0, align="edge", color=ON_TOPIC, alpha=0.8)
    ax_on.set_ylabel("on-topic posts / hour")
    ax_on.set_title("posts hitting: " + ", ".join(spec.keywords), fontsize=10, loc="left")
    ax_all.fill_between(edges[:-1], every, step="post", color="#999999", alpha=0.6)
    ax_all.step(edges[:-1], every, where="post", color="#555555", lw=1)
    ax_all.set_ylabel("all posts / hour")
    for ax in (ax_on, ax_all):
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
    _alert_rows(ax_al, opened, scales, colour, onset, spec)
    for ax in (ax_on, ax_all, ax_al):
        ax.axvline(0, color="black", ls="--", lw=1.5)
        if result.first_on_topic_post is not None:
            t = _hours(datetime.fromisoformat(result.first_on_topic_post), onset)
            ax.axvline(t, color=ON_TOPIC, ls=":", lw=1.8)
        if first is not None and first.raised_at <= hi:
            ax.axvline(_hours(first.raised_at, onset), color=colour[first.window_seconds], lw=1.8)
    ax_al.set_xlim(lo_h, hi_h)
    ax_al.set_xlabel(f"hours from onset ({onset:%Y-%m-%d %H:%M} UTC)")
    ax_on.legend(handles=_legend(first, colour), loc="upper left", fontsize=9, framealpha=0.9)
    fig.suptitle(f"{spec.event}   ({spec.replay})\n{headline(result)}", fontsize=12)
    return fig


def headline(r: EventResult) -> str:
    if r.posts_to_detection is None:
        return f"missed: no on-topic alert; {r.pre_onset_per_day} pre-onset alerts/day"
    return (
        f"first on-topic alert '{r.first_alert_label}' {r.delay_min} min after onset, "
        f"after {r.posts_to_detection} on-topic posts (target <= {TARGET_POSTS}); "
        f"{r.pre_onset_per_day} pre-onset alerts/day"
    )


def _alert_rows(
    ax: Axes,
    opened: list[Alert],
    scales: list[int],
    colour: dict[int, str],
    onset: datetime,
    spec: EventSpec,
) -> None:
    """One row per time scale: each alert's window as a line ending where it was raised."""
    row = {s: i for i, s in enumerate(scales)}
    for a in opened:
        y, c, end = row[a.window_seconds], colour[a.window_seconds], _hours(a.raised_at, onset)
        ax.hlines(y, end - a.window_seconds / 3600, end, color=c, lw=3, alpha=0.6)
        if alert_on_topic(a, spec.keywords):
            ax.plot(end, y, "o", ms=9, color=c, mec="black")
        else:
            ax.plot(end, y, "x", ms=7, mew=1.5, color=c)
    if scales:
        ax.set_yticks(range(len(scales)), [f"{scale_name(s)} alerts" for s in scales])
    else:
        ax.set_yticks([0], ["no alerts"])
    ax.set_ylim(-0.7, max(len(scales), 1) - 0.3)


def _legend(first: Alert | None, colour: dict[int, str]) -> list[Line2D]:
    lines = [
        Line2D([], [], color="black", ls="--", label="onset"),
        Line2D([], [], color=ON_TOPIC, ls=":", lw=1.8, label="first on-topic post"),
    ]
    if first is not None:
        c = colour.get(first.window_seconds, "black")
        lines.append(Line2D([], [], color=c, lw=1.8, label=f"first on-topic alert: {first.label}"))
    lines += [
        Line2D([], [], marker="o", ls="", color="grey", mec="black", label="on-topic alert"),
        Line2D([], [], marker="x", ls="", color="grey", mew=1.5, label="off-topic alert"),
    ]
    lines += [
        Line2D([], [], color=c, lw=3, label=f"{scale_name(s)} window") for s, c in colour.items()
    ]
    return lines


class Report:
    """Collects one plot per event into ``out_dir``, then writes ``index.html``."""

    def __init__(self, out_dir: Path) -> None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create report folder {out_dir}: {exc.strerror or exc}"
            raise SeismoError(msg) from exc
        self.dir = out_dir
        self.rows: list[tuple[EventResult, str]] = []

    def plot_event(
        self, spec: EventSpec, result: EventResult, posts: list[Post], alerts: list[Alert]
    ) -> Path:
        path = self.dir / f"{len(self.rows) + 1:02d}-{slug(spec.event)}.png"
        try:
            event_figure(spec, result, posts, alerts).savefig(path)
        except OSError as exc:
            raise SeismoError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self.rows.append((result, path.name))
        return path

    def write_index(self, total: dict[str, Any]) -> Path:
        path = self.dir / "index.html"
        try:
            path.write_text(index_html(self.rows, total), encoding="utf-8")
        except OSError as exc:
            raise SeismoError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return path


def _cell(x: object) -> str:
    return f"<td>{html.escape(str(x))}</td>"


def index_html(rows: list[tuple[EventResult, str]], total: dict[str, Any]) -> str:
    """The summary table: one row per event with a linked thumbnail of its plot."""
    median = total["median_posts_to_detection"]
    body = []
    for r, png in rows:
        src = html.escape(png, quote=True)
        body.append(
            "<tr>"
            + _cell(r.event)
            + _cell(r.replay)
            + _cell("missed" if r.delay_min is None else r.delay_min)
            + _cell("missed" if r.posts_to_detection is None else r.posts_to_detection)
            + _cell(r.pre_onset_per_day)
            + f'<td><a href="{src}"><img src="{src}" width="360" alt="{src}"></a></td></tr>'
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>seismo eval bursts</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:middle}}</style></head><body>
<h1>seismo eval bursts</h1>
<p>{total["total"]} events: <b>{total[f"detected_within_{TARGET_POSTS}_posts"]} detected within
{TARGET_POSTS} on-topic posts</b>, median posts to detection
<b>{"missed (infinite)" if median is None else median}</b> (a miss counts as infinity),
{total["detected_in_target"]} detected within {TARGET_DELAY_MIN:g} minutes.</p>
<table><tr><th>event</th><th>stream</th><th>delay from onset (min)</th>
<th>posts to detection</th><th>pre-onset alerts/day</th><th>plot</th></tr>
{chr(10).join(body)}
</table></body></html>
"""
