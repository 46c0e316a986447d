"""Issue 17: one event, one story -- joining bursts, headlines, the delivery throttle, the
writer's body."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

import jsonschema
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from seismo.contracts import Alert
from seismo.metrics import Metrics
from streams import _storycore
from streams.alertbook import AlertBook, BookParams, Burst, PostRef, corroborated
from streams.delivery import AlertSinks, FileSink, RetryPolicy, WebhookSink
from streams.evaluate import unreadable
from streams.features import burst_items
from streams.payloads import dossier_update
from streams.stories import (
    Sent,
    Throttle,
    centrality,
    centrality_of_counts,
    clean_text,
    cosine,
    headline,
    headline_order,
    links_in,
    readable,
)
from tests.helpers import WRITER_SCHEMA, WebhookReceiver, make_alert, pure_python

T0 = datetime(2013, 5, 20, 20, tzinfo=UTC).timestamp()
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def ref(i: int, text: str, dt: float, author: str | None = None) -> PostRef:
    return PostRef(
        f"x:{i}", "x", T0 + dt, text, author, None, f"x:{i}", tuple(burst_items(text)), (), (), None
    )


def burst(key: str, posts: list[PostRef], score: float = 6.0) -> Burst:
    ts = max(r.ts for r in posts)
    return Burst(key, "term", key, ts, len(posts), 0.1, 5.0, score, posts, ts - 600, 600)


def book(**kw: float) -> AlertBook:
    return AlertBook(BookParams(**kw), clock=lambda: NOW)  # type: ignore[arg-type]


def feed(b: AlertBook, key: str, posts: list[PostRef]) -> list[Alert]:
    out: list[Alert] = []
    for i, r in enumerate(posts):
        out += b.on_post(r, {key}, [burst(key, posts[: i + 1])] if i == len(posts) - 1 else [])
    return out


TORNADO = [
    "Huge tornado touching down near Moore Oklahoma right now",
    "Tornado emergency for Moore Oklahoma, take cover",
    "Massive tornado in Moore Oklahoma, schools hit",
]
VICTIMS = [
    "Text REDCROSS to help the tornado victims in Oklahoma",
    "Donate to the Red Cross for Oklahoma tornado victims",
    "Red Cross shelters open for Oklahoma victims",
]


def test_bursts_about_one_event_join_one_story_without_a_shared_key() -> None:
    b = book()
    first = feed(b, "tornado", [ref(i, t, 60 * i) for i, t in enumerate(TORNADO)])
    assert [a.status for a in first] == ["open"]
    story = first[0].id
    later = feed(b, "victims", [ref(10 + i, t, 900 + 60 * i) for i, t in enumerate(VICTIMS)])
    # the second burst shares no burst key with the first: it joins by meaning, at once
    assert later and {a.id for a in later} == {story}
    assert later[-1].version == 2 and "term:victims" in later[-1].related_keys
    assert len(b.open) == 1


def test_an_unrelated_burst_opens_its_own_story() -> None:
    b = book()
    feed(b, "tornado", [ref(i, t, 60 * i) for i, t in enumerate(TORNADO)])
    other = [
        ref(20, "Finals tickets sold out for the basketball game", 900),
        ref(21, "Basketball finals game tonight, tickets gone", 960),
    ]
    got = feed(b, "basketball", other)
    assert [a.status for a in got] == ["open"] and len(b.open) == 2
    assert got[0].label == got[0].headline and "asketball" in got[0].headline


SOCIAL = [  # three Hacker News titles that share one word and nothing else
    "Ask HN: Any recommended book for social entrepreneurs?",
    "Miiverse archive recovers 17TB of social mirth",
    "Social credit scores spread to more cities",
]


def test_posts_that_share_only_the_burst_word_open_a_story_from_the_third() -> None:
    b = book()
    posts = [ref(i, t, 60 * i) for i, t in enumerate(SOCIAL)]
    assert feed(b, "social", posts[:2]) == [] and not b.open and not b.key_alert
    got = b.on_post(posts[2], {"social"}, [burst("social", posts)])
    assert [(a.status, a.observed) for a in got] == [("open", 3)]
    # the setting: from two posts, a lone word opens a story as any burst does
    assert [a.status for a in feed(book(lone_word_posts=2), "social", posts[:2])] == ["open"]


def test_a_second_shared_word_phrase_hashtag_or_link_corroborates_a_burst() -> None:
    bootrom = [
        ref(1, "Checkm8 - Bootrom exploit for many iOS devices", 0),
        ref(2, "Near-universal (pre iPhone 11) iOS bootrom exploit", 60),
    ]
    assert [a.status for a in feed(book(), "bootrom", bootrom)] == ["open"]
    tagged = [ref(3, "Stay safe everyone #yycflood", 0), ref(4, "Keep safe #yycflood", 60)]
    assert corroborated(burst("safe", tagged))
    url = "https://news.example.com/outage"
    linked = [
        PostRef("x:6", "x", T0, f"Down again {url}", None, None, "x:6", ("down",)),
        PostRef("x:7", "x", T0 + 60, f"down for everyone? {url}", None, None, "x:7", ("down",)),
    ]
    assert corroborated(burst("down", linked))


def test_a_burst_is_not_corroborated_by_its_own_words_a_site_or_a_copy() -> None:
    # a phrase key: the words and phrases holding its words are the key again
    net = [ref(1, "Net neutrality repeal passes", 0), ref(2, "Net neutrality: what now", 60)]
    assert not corroborated(burst("net neutrality", net))
    # a hashtag is its word
    assert not corroborated(burst("abflood", [ref(3, "#abflood", 0), ref(4, "abflood", 60)]))
    # two stories on one site
    site = [
        ref(5, "Social thing https://www.youtube.com/watch?v=a", 0),
        ref(6, "More social https://youtube.com/watch?v=b", 60),
    ]
    assert [i for i in site[0].ordered if i.startswith("domain:")] == ["domain:youtube.com"]
    assert not corroborated(burst("social", site))
    # a copy is the same voice: one near-duplicate cluster
    text = "Cloudflare outage takes down half the web"
    copy = PostRef("x:8", "x", T0 + 60, text, None, None, "x:7", tuple(burst_items(text)))
    assert not corroborated(burst("cloudflare", [ref(7, text, 0), copy]))
    assert corroborated(burst("cloudflare", [ref(7, text, 0), ref(9, text, 60)]))
    # a Japanese word of three characters is overlapping bigrams (東京都: 東京, 京都): one word
    tokyo = [ref(10, "東京都でラーメンを食べた", 0), ref(11, "東京都の美術館に行った", 60)]
    assert not corroborated(burst("東京", tokyo))
    blackout = [ref(12, "東京都で停電が発生", 0), ref(13, "東京都の停電はまだ続く", 60)]
    assert corroborated(burst("東京", blackout))  # (停電, a second word)


def test_a_tracked_key_needs_no_corroboration() -> None:
    b = book()
    posts = [ref(i, t, 60 * i) for i, t in enumerate(SOCIAL[:2])]
    claim = Burst(
        "claim:social-credit", "claim", "social credit", posts[1].ts, 2, 0.1, 5.0, 6.0, posts
    )
    got = b.on_post(posts[1], {"claim:social-credit"}, [claim])
    assert [a.status for a in got] == ["open"]


def test_a_resolved_story_reopens_under_its_id_within_the_horizon() -> None:
    b = book(quiet_seconds=600, cooldown_seconds=0)
    story = feed(b, "tornado", [ref(i, t, 60 * i) for i, t in enumerate(TORNADO)])[0].id
    resolved = b.tick(T0 + 3600)
    assert [(a.id, a.status, a.deliver) for a in resolved] == [(story, "resolved", True)]
    again = feed(b, "tornado", [ref(30 + i, t, 7200 + 60 * i) for i, t in enumerate(TORNADO)])
    assert [(a.id, a.status, a.delivered_reason) for a in again] == [(story, "update", "reopened")]


def test_open_stories_that_grow_alike_merge_into_the_older() -> None:
    b = book(merge_similarity=1.1, merge_overlap=1.1, min_key_posts=99)  # only the tick merges
    old = feed(b, "tornado", [ref(i, t, 60 * i) for i, t in enumerate(TORNADO)])[0].id
    young = feed(b, "moore", [ref(40 + i, t, 300 + 60 * i) for i, t in enumerate(TORNADO)])[0].id
    assert old != young and len(b.open) == 2
    out = b.tick(T0 + 900)
    gone = [a for a in out if a.id == young]
    assert [(a.status, a.merged_into, a.deliver) for a in gone] == [("resolved", old, True)]
    assert list(b.open) == [old] and b.key_alert["moore"] == old


def test_headline_is_a_readable_post_never_a_stopword_or_contraction() -> None:
    texts = [
        "don't",
        "RT @abc: isn't it http://t.co/x",
        "RT @wx: Tornado emergency for Moore, Oklahoma http://t.co/abc",
    ]
    cands = (texts, [9.0, 8.0, 1.0], [True, True, True], [1.0, 2.0, 3.0])
    assert headline(*cands, ["don't"], "don't") == "Tornado emergency for Moore, Oklahoma"
    assert headline([], [], [], [], ["don't", "red cross", "moore"], "don't") == "red cross"
    assert headline([], [], [], [], ["don't", "moore", "tornado"], "x") == "moore · tornado"
    assert len(clean_text("word " * 100)) <= 110
    for bad in ("don't", "isn't", "the", "it"):
        assert unreadable(bad)
    assert not unreadable("Tornado emergency for Moore") and not unreadable("tornado")
    # a word is letters of any script: a post in Russian or with "São Paulo" is a headline
    ru = "RT @a: Землетрясение в Москве сегодня"
    assert headline([ru], [1.0], [True], [1.0], ["москве"], "x") == "Землетрясение в Москве сегодня"
    assert headline(["Águas de São Paulo"], [1.0], [True], [1.0], [], "x") == "Águas de São Paulo"
    # Japanese puts no space between words: three of its words as the detector reads them
    ja = (["地震だ", "東京で震度4の地震"], [9.0, 1.0], [True, True], [1.0, 2.0])
    assert headline(*ja, ["地震"], "x") == "東京で震度4の地震"
    assert not readable("また地震…怖い") and not readable("the of and it")


def test_links_exclude_the_posts_own_address() -> None:
    text = "Read https://news.example.com/a, and http://t.co/x. Also https://bsky.app/post/1"
    assert links_in(text, "https://bsky.app/post/1") == [
        "https://news.example.com/a",
        "http://t.co/x",
    ]


def sent(version: int, ts: float, **kw: object) -> Sent:
    base: dict[str, object] = dict(
        severity=0,
        posts=10,
        independent=10,
        sources=frozenset({"x"}),
        links=frozenset(),
        claims=frozenset(),
        stances=(),
    )
    return Sent(version=version, ts=ts, **{**base, **kw})  # type: ignore[arg-type]


def test_throttle_lets_urgent_news_through_and_coalesces_the_rest() -> None:
    th = Throttle(update_seconds=1800)
    prev = sent(1, 0.0)
    assert th.decide(None, prev, "open", False)[:2] == (True, "open")
    grown = sent(2, 600.0, posts=30, independent=30)
    assert th.decide(prev, grown, "update", False)[:2] == (False, None)  # too soon
    later = sent(3, 1800.0, posts=30, independent=30, links=frozenset({"https://a.b/c"}))
    ok, why, changes = th.decide(prev, later, "update", False)
    assert (ok, why) == (True, "update") and changes is not None
    assert changes.since_version == 1 and changes.new_posts == 20
    assert changes.new_links == ["https://a.b/c"]
    assert th.decide(prev, sent(3, 1900.0), "update", False)[:2] == (False, None)  # no growth
    assert th.decide(prev, sent(3, 60.0, severity=1), "update", False)[1] == "severity"
    assert th.decide(prev, sent(3, 60.0, claims=frozenset({"c"})), "update", False)[1] == "claim"
    assert th.decide(prev, sent(3, 60.0), "resolved", False)[1] == "resolved"
    assert th.decide(prev, sent(3, 60.0), "update", True)[1] == "reopened"
    # a wave of deny posts: the stance mix shifts
    before = sent(1, 0.0, stances=(("support", 8), ("deny", 2)))
    after = sent(2, 60.0, stances=(("support", 8), ("deny", 10)))
    ok, why, changes = th.decide(before, after, "update", False)
    assert (ok, why) == (True, "stance") and changes is not None
    assert [(s.stance, s.before, s.after) for s in changes.stance_shift] == [
        ("support", 0.8, 0.444),
        ("deny", 0.2, 0.556),
    ]


def test_throttled_versions_are_on_alerts_v1_and_deterministic() -> None:
    """A story fed for hours: every version is emitted, at most one delivered per 30 min
    apart from the urgent ones, and the same posts give the same decisions."""

    def run() -> list[Alert]:
        b = book(update_gap_seconds=0)
        out = feed(b, "tornado", [ref(i, t, 60 * i) for i, t in enumerate(TORNADO)])
        for i in range(120):
            text = f"{TORNADO[i % 3]} report{i} witness{i}"
            out += b.on_post(ref(100 + i, text, 300 + 60 * i), {"tornado"}, [])
        return out

    alerts = run()
    assert [(a.id, a.version, a.deliver) for a in alerts] == [
        (a.id, a.version, a.deliver) for a in run()
    ]
    plain = [a for a in alerts if a.deliver and a.delivered_reason == "update"]
    times = [a.raised_at for a in plain]
    assert all(b - a >= timedelta(seconds=1800) for a, b in itertools.pairwise(times))
    assert any(a.deliver is False for a in alerts)
    for a in alerts[1:]:
        assert a.changes is not None


def test_writer_body_has_headline_links_changes_and_newest_evidence_first() -> None:
    alert = make_alert(
        version=3,
        status="update",
        headline="GLM-5 trained on Huawei Ascend, says Zhipu",
        changes={"since_version": 1, "new_posts": 4, "new_sources": ["reddit"]},
        deliver=True,
        delivered_reason="update",
    )
    raw = alert.model_dump(mode="json", exclude_none=True)
    raw["evidence"][0]["text"] += " https://news.example.com/glm5 https://bsky.app/post/2"
    raw["evidence"][1]["text"] += " see https://news.example.com/glm5"
    raw["evidence"].reverse()  # oldest first: the body puts the newest first
    body = dossier_update(alert, raw)
    jsonschema.validate(body, WRITER_SCHEMA)
    assert body["headline"] == "GLM-5 trained on Huawei Ascend, says Zhipu"
    assert body["links"] == [
        {"url": "https://news.example.com/glm5", "domain": "news.example.com", "count": 2}
    ]
    assert body["domains"] == {"news.example.com": 2}
    assert body["changes"]["new_sources"] == ["reddit"] and body["changes"]["since_version"] == 1
    times = [e["created_at"] for e in body["evidence"]]
    assert times == sorted(times, reverse=True)


def test_a_coalesced_version_goes_to_the_file_only(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    policy = RetryPolicy(attempts=1, timeout_seconds=2.0)
    with WebhookReceiver() as rx:
        sinks = AlertSinks(
            metrics,
            webhooks=[WebhookSink(rx.url, policy)],
            file=FileSink(tmp_path / "alerts.jsonl"),
        )

        async def go() -> None:
            try:
                await sinks.deliver(make_alert(version=1, deliver=True))
                await sinks.deliver(make_alert(version=2, status="update", deliver=False))
                await sinks.deliver(make_alert(version=3, status="resolved", deliver=True))
            finally:
                await sinks.close()

        asyncio.run(go())
        assert [h["Idempotency-Key"] for h in rx.headers] == ["abc123.v1", "abc123.v3"]
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["version"] for line in lines] == [1, 2, 3]
    coalesced = {"sink": "webhook", "outcome": "coalesced"}
    assert metrics.registry.get_sample_value("seismo_alert_deliveries_total", coalesced) == 1


@given(
    st.lists(st.lists(st.sampled_from(["moore", "tornado", "okc", "red", "x", "y"]), max_size=9)),
    st.dictionaries(st.sampled_from(["moore", "tornado", "okc", "red"]), st.integers(1, 400)),
)
def test_compiled_centrality_is_the_reference(
    posts: list[list[str]], counts: dict[str, int]
) -> None:
    """``_storycore.centrality`` gives the reference's floats bit for bit."""
    weights = {t: math.log1p(n) for t, n in counts.items()}
    terms = [tuple(p) for p in posts]
    got, want = _storycore.centrality(terms, weights), centrality(terms, weights)
    assert [x.hex() for x in got] == [x.hex() for x in want]


_WORDS = st.sampled_from(["moore", "tornado", "okc", "red", "cross", "x", "y", "z"])


@given(
    st.lists(st.lists(_WORDS, max_size=9)),
    st.dictionaries(_WORDS, st.integers(1, 10_000)),
)
def test_compiled_centrality_of_counts_is_the_reference(
    posts: list[list[str]], counts: dict[str, int]
) -> None:
    """``_storycore.centrality_of_counts`` (log1p taken per use, from a Counter too) gives
    the floats of the reference, which weighs every count first."""
    terms = [tuple(p) for p in posts]
    want = centrality(terms, {t: math.log1p(n - 1) for t, n in counts.items()})
    for c in (counts, Counter(counts)):
        got = _storycore.centrality_of_counts(terms, c)
        assert [x.hex() for x in got] == [x.hex() for x in want]
        assert [x.hex() for x in centrality_of_counts(terms, c)] == [x.hex() for x in want]


@given(
    st.dictionaries(_WORDS, st.integers(1, 10_000)),
    st.dictionaries(_WORDS, st.integers(1, 10_000)),
)
def test_compiled_cosine_is_the_reference(a: dict[str, int], b: dict[str, int]) -> None:
    """``_storycore.cosine`` gives the reference's double bit for bit, on dicts and Counters."""
    want = cosine(a, b)
    assert _storycore.cosine(a, b).hex() == want.hex()
    assert _storycore.cosine(Counter(a), Counter(b)).hex() == want.hex()
    assert _storycore.cosine(b, a).hex() == cosine(b, a).hex()


def test_compiled_cosine_on_long_vectors() -> None:
    """On story-sized vectors (hundreds of terms, Zipf-like counts up to the thousands)."""
    rng = Random(16)
    vocab = [f"w{i}" for i in range(2000)]
    counters = [
        Counter(rng.choices(vocab, weights=[1 / (1 + i) for i in range(2000)], k=n))
        for n in (50, 600, 5000, 20000)
    ]
    for a, b in itertools.product(counters, repeat=2):
        assert _storycore.cosine(a, b).hex() == cosine(a, b).hex()


def test_compiled_cosine_on_every_small_count() -> None:
    """The compiled core reads log1p of a small count, and its square, from tables: every
    count of the tables and past them, and counts that are not ints, give the same double."""
    counts: list[float] = [*range(1100), 2**40, 0.5, 3.0, 1e-300]
    for k in counts:
        a, b = {"x": k, "y": 3}, Counter({"x": 2, "y": k, "z": 7})
        assert _storycore.cosine(a, b).hex() == cosine(a, b).hex()
        assert _storycore.cosine(b, a).hex() == cosine(b, a).hex()


@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.5, 1.0, 1.25, 2.0]), st.booleans(), st.integers(0, 3))
    )
)
def test_compiled_headline_order_is_the_reference(cands: list[tuple[float, bool, int]]) -> None:
    """``_storycore.headline_order`` ranks as the reference's stable sort does, ties (the same
    weight and time) in the given order; a copy of weight 1.25 ties an original of 1.0."""
    weights = [w for w, _, _ in cands]
    originals = [o for _, o, _ in cands]
    ts = [float(t) for _, _, t in cands]
    want = headline_order(weights, originals, ts)
    assert _storycore.headline_order(weights, originals, ts) == want
    assert sorted(want) == list(range(len(cands)))


def test_headline_among_equals_is_the_greatest_readable_text() -> None:
    """Ranked alike (the same weight and time), the greatest cleaned text wins, whatever
    their order; an unreadable better-ranked post is passed over."""
    texts = ["the a", "Tornado hits Moore today", "Storm shelters open in Norman", "Zz"]
    weights, ts = [9.0, 2.0, 2.0, 1.0], [0.0, 5.0, 5.0, 1.0]
    originals = [True] * 4
    for pure in (False, True):
        with pure_python() if pure else contextlib.nullcontext():
            want = "Tornado hits Moore today"
            assert headline(texts, weights, originals, ts, [], "x") == want
            rev = headline(texts[::-1], weights[::-1], originals, ts[::-1], [], "x")
            assert rev == want
