"""Keyed event-time burst detection. Pure logic: no Faust, no I/O, no wall clock.

Each burst key (a term, a dossier, a claim, a claim's stance class) keeps its own state:
the count in the current event-time bucket and an exponentially weighted moving mean and
variance of the counts of past buckets (empty buckets included). A bucket's count is
tested as it grows, so a burst is raised by the post that tips it, not when the bucket
closes. The test is a Poisson tail probability against the key's own baseline (floored,
so a brand-new key needs several posts) -- honest for small counts where a z-score on
zeros is not. After an alert the key cools down, so one event is one alert.

Time only moves with the events' own timestamps, so replaying a stream at any speed
yields the same alerts.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from seismo.contracts import Alert, Evidence, Signal

_MAX_EMPTY_STEPS = 512  # after this many empty buckets the baseline is ~0 anyway


@dataclass(frozen=True)
class DetectorParams:
    bucket_seconds: int = 600
    halflife_buckets: float = 12.0
    floor: float = 0.3
    min_count: int = 4
    min_score: float = 4.0
    cooldown_seconds: int = 6 * 3600
    evidence_size: int = 12
    top_terms: int = 8
    warmup_seconds: int = 7200

    @property
    def alpha(self) -> float:
        return float(1.0 - 0.5 ** (1.0 / self.halflife_buckets))


@dataclass
class KeyState:
    """Everything the detector remembers about one key (JSON-able, for a Faust table)."""

    bucket: int = 0
    count: int = 0
    mean: float = 0.0
    var: float = 0.0
    buckets_seen: int = 0
    first_seen: float = 0.0
    cooldown_until: float = 0.0
    offset: int = -1
    evidence: list[dict[str, Any]] = field(default_factory=list)
    # the last alert this key raised and the offset of the record that raised it, so a
    # record replayed after a crash can send its alert again (it may not have left)
    alert_offset: int = -1
    alert_json: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # shallow on purpose (dataclasses.asdict deep-copies: 10x slower on the hot path)
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> KeyState:
        return cls(**d) if d else cls()


def poisson_score(observed: int, expected: float) -> float:
    """-log10 P(X >= observed) for X ~ Poisson(expected); 0 when observed <= 0."""
    if observed <= 0:
        return 0.0
    lam = max(expected, 1e-9)
    log_lam = math.log(lam)
    # sum the upper tail directly in log space (stable where 1 - cdf is not)
    logs = []
    i = observed
    while True:
        lp = -lam + i * log_lam - math.lgamma(i + 1)
        logs.append(lp)
        if i > lam and lp < logs[0] - 40:
            break
        i += 1
        if i - observed > 10_000:
            break
    top = max(logs)
    log_tail = top + math.log(sum(math.exp(x - top) for x in logs))
    return max(0.0, -log_tail / math.log(10))


def alert_id(key: str, window_start: float) -> str:
    raw = f"{key}|{int(window_start)}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


class BurstDetector:
    """Feeds signals into per-key states and says when a key bursts."""

    def __init__(self, params: DetectorParams) -> None:
        self.p = params
        self._alpha = params.alpha

    def _roll(self, st: KeyState, bucket: int) -> None:
        """Close buckets up to (not including) ``bucket``: fold counts into the baseline."""
        if st.buckets_seen == 0 and st.count == 0:
            st.bucket = bucket
            return
        a = self._alpha
        steps = bucket - st.bucket
        x = float(st.count)
        for _ in range(min(steps, _MAX_EMPTY_STEPS)):
            diff = x - st.mean
            incr = a * diff
            st.mean += incr
            st.var = (1 - a) * (st.var + diff * incr)
            x = 0.0
        if steps > _MAX_EMPTY_STEPS:
            st.mean, st.var = 0.0, 0.0
        st.buckets_seen += steps
        st.bucket = bucket
        st.count = 0

    def _baseline(self, st: KeyState, stream_start: float | None) -> float:
        """The EWMA mean, bias-corrected for how long the stream has been watched.

        The average starts at 0 when watching starts, so after n buckets it holds only
        1 - (1 - alpha)^n of the weight; dividing by that (as Adam does) makes a key that
        has been steady since the start read as steady, not as a burst.
        """
        start = stream_start if stream_start is not None else st.first_seen
        n = st.bucket - int(start // self.p.bucket_seconds)
        if n <= 0:
            return 0.0
        return st.mean / (1.0 - (1.0 - self._alpha) ** n)

    def observe(
        self,
        st: KeyState,
        sig: Signal,
        *,
        stream_start: float | None = None,
        now: datetime | None = None,
    ) -> Alert | None:
        """Count one signal into ``st`` (mutated); return an Alert if the key bursts.

        ``stream_start`` is the event time the detector began watching this stream: in the
        first ``warmup_seconds`` after it, every key is new and nothing has a baseline, so
        nothing is raised. ``now`` is the wall-clock time stamped as ``detected_at``
        (injectable for tests); it never influences detection.
        """
        p = self.p
        ts = sig.created_at.timestamp()
        bucket = int(ts // p.bucket_seconds)
        if st.first_seen == 0.0:
            st.first_seen = ts
            st.bucket = bucket
        if bucket > st.bucket:
            self._roll(st, bucket)
        entry = _evidence_entry(sig)
        if any(e["sig"] == entry["sig"] or e["post_id"] == sig.post_id for e in st.evidence):
            # the same post again (a retry after a restart), or an exact copy (same terms)
            # of a post we hold as evidence: a retweet or a copy-paste is not more people
            # talking, so it is not counted again
            return None
        # a late signal (older bucket) is counted in the current bucket
        st.count += 1
        st.evidence.append(entry)
        if len(st.evidence) > p.evidence_size:
            del st.evidence[: len(st.evidence) - p.evidence_size]

        # cheap gates first: most signals are far from any threshold
        if st.count < p.min_count or ts < st.cooldown_until:
            return None
        if stream_start is not None and ts < stream_start + p.warmup_seconds:
            return None
        expected = max(self._baseline(st, stream_start), p.floor)
        if st.count <= expected:
            return None
        score = poisson_score(st.count, expected)
        if score < p.min_score:
            return None
        st.cooldown_until = ts + p.cooldown_seconds
        window_start = st.bucket * p.bucket_seconds
        return self._alert(st, sig, window_start, expected, score, now or datetime.now(UTC))

    def _alert(
        self,
        st: KeyState,
        sig: Signal,
        window_start: float,
        expected: float,
        score: float,
        now: datetime,
    ) -> Alert:
        ev = st.evidence
        term_counts: Counter[str] = Counter()
        for e in ev:
            term_counts.update(e.get("terms", []))
        own = sig.label if sig.kind == "term" else None
        terms = [own] if own else []
        terms += [t for t, _ in term_counts.most_common() if t != own][: self.p.top_terms]
        dossiers = Counter(e["dossier"] for e in ev if e.get("dossier"))
        stances = Counter(e["stance"] for e in ev if e.get("stance"))
        sources = Counter(e["source"] for e in ev)
        first = min(e["created_at"] for e in ev)
        return Alert(
            id=alert_id(sig.key, window_start),
            kind=sig.kind,
            key=sig.key,
            label=sig.label,
            terms=terms[: self.p.top_terms],
            dossier=sig.dossier or (dossiers.most_common(1)[0][0] if dossiers else None),
            claim=sig.claim,
            window_start=datetime.fromtimestamp(window_start, UTC),
            window_seconds=self.p.bucket_seconds,
            raised_at=sig.created_at,
            first_seen=datetime.fromtimestamp(first, UTC),
            observed=st.count,
            expected=round(expected, 4),
            score=round(score, 3),
            sources=dict(sources),
            stance_mix=dict(stances),
            evidence=[
                Evidence(
                    post_id=e["post_id"],
                    source=e["source"],
                    created_at=datetime.fromtimestamp(e["created_at"], UTC),
                    text=e["text"],
                    author=e.get("author"),
                    url=e.get("url"),
                    stance=e.get("stance"),
                )
                for e in reversed(ev)
            ],
            detected_at=now,
        )


def _evidence_entry(sig: Signal) -> dict[str, Any]:
    e: dict[str, Any] = {
        "post_id": sig.post_id,
        "source": sig.source,
        "created_at": sig.created_at.timestamp(),
        "text": sig.text[:280],
        "terms": sig.terms[:8],
        "sig": hashlib.blake2b(" ".join(sig.terms).encode(), digest_size=8).hexdigest(),
    }
    for k in ("author", "url", "dossier", "stance"):
        v = getattr(sig, k)
        if v:
            e[k] = v
    return e
