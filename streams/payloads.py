"""Bodies seismo sends for an alert: the writer's "dossier update requested" request and a
Slack-compatible chat message. Pure functions of the alert (no I/O, no clock).

The writer contract is ``contracts/dossier-update-requested.v1.schema.json``. Its body
carries the alert as it was produced (``alert``, every field, including ones a newer
detector adds) next to a stable, documented digest for the writer: the dossier, why it
fired, claims and their stance breakdown, the lead source, voices and evidence posts.
The same alert version always gives the same body, so a redelivery is byte-identical.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from seismo.contracts import Alert, Changes
from seismo.watchlist import Watchlist
from streams.stories import domain_of, links_in

CONTRACT = "dossier-update-requested.v1"
EVENT_TYPE = "dossier.update_requested"
SEVERITY_ORDER = ("low", "medium", "high", "critical")


def idempotency_key(alert: Alert) -> str:
    """One key per alert version: a receiver accepts each key once."""
    return f"{alert.id}.v{alert.version}"


def why_summary(alert: Alert) -> str:
    """One readable sentence: what fired and on what numbers."""
    scope = f"dossier {alert.dossier}" if alert.dossier else "no dossier"
    return (
        f"{alert.kind} burst on {alert.label!r} ({scope}): {alert.observed} posts in the "
        f"{alert.window_seconds // 60}-minute window from {alert.window_start.isoformat()} "
        f"against {alert.expected:.1f} expected (score {alert.score:.1f} = -log10 p)"
    )


# Optional evidence-packet fields of newer alerts, copied into ``why`` when present.
WHY_EXTRAS = (
    "z",
    "counts_curve",
    "related_keys",
    "posts_seen",
    "unique_authors",
    "independent_posts",
    "discounted",
)


def reason_of(alert: Alert, raw: dict[str, Any]) -> str:
    """The detector's own words for why it fired when it gives them, else our summary."""
    reason = raw.get("reason")
    return reason if isinstance(reason, str) and reason else why_summary(alert)


def _lead(evidence: list[dict[str, Any]], raw: dict[str, Any]) -> dict[str, Any] | None:
    """Who had it first: the alert's ``lead_source`` when it names one, with the earliest
    evidence post of that source (else the earliest evidence post overall)."""
    named = raw.get("lead_source") if isinstance(raw.get("lead_source"), str) else None
    dated = [e for e in evidence if e.get("created_at")]
    pool = [e for e in dated if e.get("source") == named] if named else dated
    lead: dict[str, Any] = {}
    if pool:
        first = min(pool, key=lambda e: str(e["created_at"]))
        keys = ("source", "author", "url", "post_id", "created_at")
        lead = {k: first[k] for k in keys if first.get(k) is not None}
    if named:
        lead["source"] = named
        seen = raw.get("source_first_seen")
        if isinstance(seen, dict) and seen.get(named):
            lead["created_at"] = seen[named]
    return lead if lead.get("source") and lead.get("created_at") else None


def _voices(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Distinct authors in the evidence with their post count and stances."""
    by: dict[tuple[str, str], Counter[str]] = {}
    for e in evidence:
        author = e.get("author")
        if not author:
            continue
        stances = by.setdefault((str(e.get("source", "")), str(author)), Counter())
        stances[str(e.get("stance") or "comment")] += 1
    voices = [
        {"author": a, "source": s, "posts": sum(c.values()), "stances": dict(c)}
        for (s, a), c in by.items()
    ]
    return sorted(voices, key=lambda v: (-v["posts"], v["author"]))


def _links(alert: Alert, evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """URLs the posts share, with counts, most shared first: the story's own count when the
    alert carries it, else counted in the evidence texts (a post's own ``url`` is no link
    it shares)."""
    if alert.links:
        return [link.model_dump() for link in alert.links]
    counts: Counter[str] = Counter()
    for e in evidence:
        counts.update(links_in(str(e.get("text", "")), e.get("url")))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"url": u, "domain": domain_of(u), "count": c} for u, c in ranked]


def _newest_first(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evidence newest first (ties by post id), as the contract says."""
    by_id = sorted(evidence, key=lambda e: str(e.get("post_id", "")))
    return sorted(by_id, key=lambda e: str(e.get("created_at", "")), reverse=True)


def dossier_update(
    alert: Alert, raw: dict[str, Any], watchlist: Watchlist | None = None
) -> dict[str, Any]:
    """The writer webhook body for one alert version (``raw`` = the alert record as JSON)."""
    evidence = _newest_first([e for e in raw.get("evidence", []) if isinstance(e, dict)])
    dossier: dict[str, Any] | None = None
    if alert.dossier:
        d = watchlist.dossier(alert.dossier) if watchlist else None
        dossier = {"id": alert.dossier, "title": d.title if d else None}
    claim_ids = [alert.claim] if alert.claim else []
    more = raw.get("claims")
    if isinstance(more, list):
        claim_ids += [c for c in more if isinstance(c, str) and c not in claim_ids]
    claims: list[dict[str, Any]] = []
    for cid in claim_ids:
        c = watchlist.claim(cid) if watchlist else None
        claims.append(
            {
                "id": cid,
                "text": c.text if c else None,
                "dossier": (c.dossier if c else None) or alert.dossier,
                "primary": cid == alert.claim,
                # the stance breakdown is measured for the claim the alert is about
                "stance_mix": dict(alert.stance_mix) if cid == alert.claim else {},
            }
        )
    stance = dict(alert.stance_mix)
    why: dict[str, Any] = {
        "summary": reason_of(alert, raw),
        "kind": alert.kind,
        "key": alert.key,
        "terms": list(alert.terms),
        "observed": alert.observed,
        "expected": alert.expected,
        "score": alert.score,
        "window_start": alert.window_start.isoformat(),
        "window_seconds": alert.window_seconds,
        "raised_at": alert.raised_at.isoformat(),
    }
    why.update({k: raw[k] for k in WHY_EXTRAS if raw.get(k) is not None})
    links = _links(alert, evidence)
    domains: Counter[str] = Counter()
    for link in links:
        domains[link["domain"]] += link["count"]
    body = {
        "type": EVENT_TYPE,
        "contract": CONTRACT,
        "request_id": idempotency_key(alert),
        "requested_at": alert.detected_at.isoformat(),
        "dossier": dossier,
        "alert": {k: v for k, v in raw.items() if k != "evidence"},
        "why": why,
        "first_seen": alert.first_seen.isoformat(),
        "lead_source": _lead(evidence, raw),
        "sources": dict(alert.sources),
        "stance_mix": stance,
        "contested": stance.get("support", 0) > 0 and stance.get("deny", 0) > 0,
        "claims": claims,
        "voices": _voices(evidence),
        "evidence": evidence,
        "headline": alert.headline or alert.label,
        "links": links,
        "domains": dict(domains.most_common()),
    }
    if alert.changes is not None:
        body["changes"] = alert.changes.model_dump(mode="json")
    return body


def slack_message(
    alert: Alert, raw: dict[str, Any] | None = None, *, max_evidence: int = 3
) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` fallback + Block Kit ``blocks``)."""
    where = f" · {alert.dossier}" if alert.dossier else ""
    title = f"[{alert.severity.upper()}] {alert.status}: {alert.headline or alert.label}{where}"
    text = f"{title} — {alert.observed} posts vs {alert.expected:.1f} expected"
    lines = []
    for e in alert.evidence[:max_evidence]:
        who = f"{e.author} on {e.source}" if e.author else e.source
        snippet = e.text if len(e.text) <= 200 else e.text[:199] + "…"
        link = f"<{e.url}|{who}>" if e.url else who
        lines.append(f"• {link}: {snippet}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Status*\n{alert.status}"},
                {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity}"},
                {"type": "mrkdwn", "text": f"*Dossier*\n{alert.dossier or '-'}"},
                {"type": "mrkdwn", "text": f"*Score*\n{alert.score:.1f}"},
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": reason_of(alert, raw or {})}},
    ]
    changed = changes_line(alert.changes)
    if changed:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": changed}})
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"alert `{alert.id}` v{alert.version} · {alert.key}"}
            ],
        }
    )
    return {"text": text, "blocks": blocks}


def changes_line(changes: Changes | None) -> str:
    """What changed since the previous delivered version, in one line for a reader
    ("" when nothing is said: an opening, or a version without ``changes``)."""
    if changes is None:
        return ""
    parts = []
    if changes.new_posts:
        parts.append(f"+{changes.new_posts} posts ({changes.new_independent_posts} independent)")
    if changes.new_sources:
        parts.append("new sources: " + ", ".join(changes.new_sources))
    if changes.new_claims:
        parts.append("new claims: " + ", ".join(changes.new_claims))
    if changes.new_links:
        parts.append(f"{len(changes.new_links)} new link(s)")
    for shift in changes.stance_shift:
        parts.append(f"{shift.stance} {shift.before:.0%} → {shift.after:.0%} of stanced posts")
    if changes.severity_from:
        parts.append(f"severity was {changes.severity_from}")
    if not parts:
        return ""
    return f"*Since v{changes.since_version}:* " + "; ".join(parts)
