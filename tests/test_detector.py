"""The burst detector, driven synchronously with hand-made event times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seismo.contracts import Signal
from streams.detector import BurstDetector, DetectorParams, KeyState, alert_id, poisson_score

T0 = datetime(2026, 5, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def sig(t: datetime, i: int, key: str = "term:ascend", text: str | None = None) -> Signal:
    return Signal(
        key=key,
        kind="term",
        label=key.split(":", 1)[1],
        post_id=f"x:{i}",
        source="x",
        created_at=t,
        text=text or f"post number {i}",
        terms=[key.split(":", 1)[1], f"w{i}"],
    )


def run(det: BurstDetector, times: list[datetime]) -> list:
    state = KeyState()
    start = times[0].timestamp() if times else None
    out = []
    for i, t in enumerate(times):
        a = det.observe(state, sig(t, i), stream_start=start, now=NOW)
        if a is not None:
            out.append(a)
    return out


def test_poisson_score_monotone_and_sane() -> None:
    assert poisson_score(0, 1.0) == 0.0
    assert poisson_score(1, 1.0) == pytest.approx(
        -__import__("math").log10(1 - 2.718281828**-1), rel=1e-6
    )
    scores = [poisson_score(k, 0.5) for k in range(1, 15)]
    assert scores == sorted(scores)
    assert poisson_score(200, 0.3) > 100  # deep tail stays finite


def test_flat_stream_raises_nothing() -> None:
    det = BurstDetector(DetectorParams(bucket_seconds=3600))
    times = [T0 + timedelta(minutes=10 * i) for i in range(6 * 24 * 3)]  # 6/hour for 3 days
    assert run(det, times) == []


def test_step_raises_exactly_one_alert_with_stable_id() -> None:
    det = BurstDetector(DetectorParams(bucket_seconds=3600, cooldown_seconds=6 * 3600))
    times = [T0 + timedelta(hours=i) for i in range(24)]  # 1/hour for a day
    burst0 = T0 + timedelta(hours=24, minutes=5)
    times += [burst0 + timedelta(minutes=2 * j) for j in range(25)]  # 25 in 50 minutes
    alerts = run(det, times)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.window_start == T0 + timedelta(hours=24)
    assert a.raised_at > burst0 and a.raised_at < burst0 + timedelta(minutes=30)
    assert a.id == alert_id("term:ascend", (T0 + timedelta(hours=24)).timestamp())
    assert a.observed >= 4 and a.score >= 4.0 and a.expected < 2
    assert a.evidence and a.evidence[0].created_at == a.raised_at  # newest first
    assert a.terms[0] == "ascend"
    # the same stream again gives the same alert id (redelivery is recognisable)
    assert run(det, times)[0].id == a.id


def test_nothing_raised_during_warmup() -> None:
    det = BurstDetector(DetectorParams(bucket_seconds=3600, warmup_seconds=7200))
    times = [T0 + timedelta(minutes=j) for j in range(30)]  # a "burst" right at the start
    assert run(det, times) == []


def test_copies_are_not_counted() -> None:
    det = BurstDetector(DetectorParams(bucket_seconds=3600, warmup_seconds=0))
    state = KeyState()
    for i in range(30):  # one text pasted 30 times
        t = T0 + timedelta(hours=5, minutes=i)
        s = Signal(
            key="term:ascend",
            kind="term",
            label="ascend",
            post_id=f"x:{i}",
            source="x",
            created_at=t,
            text="same",
            terms=["ascend", "same"],
        )
        assert det.observe(state, s, stream_start=T0.timestamp(), now=NOW) is None
    assert state.count == 1


def test_event_time_not_wall_clock() -> None:
    """Identical event times give identical alerts whatever 'now' is."""
    det = BurstDetector(DetectorParams(bucket_seconds=600, warmup_seconds=0))
    times = [T0 + timedelta(hours=3)] + [T0 + timedelta(hours=5, seconds=20 * j) for j in range(12)]
    a1 = [a.model_dump(exclude={"detected_at"}) for a in run(det, times)]
    a2 = [a.model_dump(exclude={"detected_at"}) for a in run(det, times)]
    assert a1 and a1 == a2


def test_state_round_trips_through_dict() -> None:
    det = BurstDetector(DetectorParams())
    state = KeyState()
    for i in range(5):
        det.observe(state, sig(T0 + timedelta(minutes=i), i), now=NOW)
    copy = KeyState.from_dict(state.to_dict())
    assert copy == state


@settings(max_examples=40, deadline=None)
@given(
    rate=st.integers(min_value=2, max_value=30),
    jitter_seed=st.integers(min_value=0, max_value=10_000),
)
def test_property_flat_rate_never_alerts(rate: int, jitter_seed: int) -> None:
    import random

    rng = random.Random(jitter_seed)
    det = BurstDetector(DetectorParams(bucket_seconds=3600))
    times = []
    for h in range(48):
        for k in range(rate):
            times.append(T0 + timedelta(hours=h, seconds=(k + rng.random() * 0.5) * 3600 / rate))
    assert run(det, sorted(times)) == []


@settings(max_examples=30, deadline=None)
@given(
    base=st.integers(min_value=0, max_value=3),
    step=st.integers(min_value=45, max_value=120),
)
def test_property_step_gives_exactly_one_alert(base: int, step: int) -> None:
    det = BurstDetector(DetectorParams(bucket_seconds=3600, cooldown_seconds=12 * 3600))
    times = [T0 + timedelta(hours=h, minutes=7 * k) for h in range(24) for k in range(base)]
    times.insert(0, T0)
    start = T0 + timedelta(hours=24)
    times += [start + timedelta(seconds=j * 3 * 3600 / step) for j in range(step)]  # 3 hours high
    alerts = run(det, sorted(times))
    assert len(alerts) == 1
