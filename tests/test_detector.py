"""The burst detector, driven synchronously with hand-made event times and a fixed clock."""

from __future__ import annotations

import base64
import copy
import hashlib
import math
import pickle
import random
import subprocess
import sys
import zlib
from collections import OrderedDict, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from models import text as text_mod
from models.text import domains, tokens
from seismo.contracts import Alert, ClaimHit, ClassifiedPost, Post, Stance
from streams import _detectcore, _textcore, core, features
from streams.alertbook import PostRef, alert_id
from streams.authenticity import AuthorRepeats
from streams.checkpoint import Checkpoints
from streams.detector import (
    BurstEngine,
    DetectorParams,
    IncompatibleCheckpoint,
    _score_bound,
    predictive_score,
    touch_candidates,
)
from streams.features import burst_items, entities
from streams.seen import SeenPosts

T0 = datetime(2026, 5, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 23, tzinfo=UTC)
VOCAB = [
    f"{a}{b}"
    for a in (
        "alpha",
        "bravo",
        "delta",
        "gamma",
        "kilo",
        "lima",
        "oscar",
        "sierra",
        "tango",
        "yankee",
    )
    for b in ("ba", "ce", "di", "fo", "gu", "ha", "je", "ki", "lo", "mu")
]


def cp(
    t: datetime,
    text: str,
    i: int,
    author: str | None = None,
    source: str = "x",
    claims: list[ClaimHit] | None = None,
    lang: str | None = None,
) -> ClassifiedPost:
    post = Post(
        id=str(i), source=source, text=text, created_at=t, author=author or f"u{i}", lang=lang
    )
    claims = claims or []
    return ClassifiedPost(
        post=post, claims=claims, dossiers=sorted({c.dossier for c in claims if c.dossier})
    )


def engine(**kw: object) -> BurstEngine:
    return BurstEngine(DetectorParams(**kw), clock=lambda: NOW)  # type: ignore[arg-type]


def flat_stream(
    hours: float, per_hour: int, words: int, seed: int, start: int = 0
) -> list[ClassifiedPost]:
    """Every word of VOCAB exactly once per cycle, cycles back to back: a flat rate."""
    rng = random.Random(seed)
    out: list[ClassifiedPost] = []
    n = int(hours * per_hour)
    order: list[str] = []
    for i in range(n):
        if len(order) < words:
            cycle = VOCAB[:]
            rng.shuffle(cycle)
            order += cycle
        text = " ".join(order[:words])
        del order[:words]
        t = T0 + timedelta(seconds=3600 * i / per_hour + rng.uniform(0, 5))
        out.append(cp(t, text, start + i))
    return out


def opened(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.status == "open"]


def run(eng: BurstEngine, posts: list[ClassifiedPost]) -> list[Alert]:
    out: list[Alert] = []
    for p in posts:
        out += eng.observe(p)
    return out


def poisson_tail(x: int, mean: float) -> float:
    """-log10 P(X >= x), X ~ Poisson(mean), written out."""
    return -math.log10(1 - sum(math.exp(-mean) * mean**k / math.factorial(k) for k in range(x)))


def test_predictive_score_monotone_and_sane() -> None:
    assert predictive_score(0, 1.0, 100.0) == 0.0
    scores = [predictive_score(k, 0.5, 100.0) for k in range(1, 15)]
    assert scores == sorted(scores)
    longer = [predictive_score(5, 0.5, b) for b in (2.0, 12.0, 100.0, 1000.0)]
    assert longer == sorted(longer)  # a longer history: a lighter tail
    assert predictive_score(200, 0.3, 50.0) > 50  # deep tail stays finite


@given(
    observed=st.integers(min_value=0, max_value=500),
    expected=st.floats(min_value=0, max_value=300, allow_nan=False),
    buckets=st.floats(min_value=1, max_value=6000, allow_nan=False),
)
def test_the_score_bound_is_never_below_the_score(
    observed: int, expected: float, buckets: float
) -> None:
    """The cheap pre-check skips a name only when its score cannot reach a threshold."""
    score = predictive_score(observed, expected, buckets)
    assert _score_bound(observed, expected, buckets) >= score - 1e-9


def test_the_predictive_score_is_the_negative_binomial_tail() -> None:
    """Against the tail summed from the negative binomial's pmf written out (tolerance
    1e-9 of the score): heavier than Poisson's for a short history, Poisson's in the limit."""

    def direct(x: int, mean: float, buckets: float) -> float:
        r, p = mean / 2 * buckets, buckets / (buckets + 2)
        pmf = [
            math.exp(math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1)) * p**r * (1 - p) ** k
            for k in range(x)
        ]
        return -math.log10(1 - sum(pmf))

    for x, mean, buckets in [
        (9, 1.596, 15.0),
        (3, 0.18, 160.0),
        (2, 0.005, 5000.0),
        (5, 0.72, 41.0),
    ]:
        assert predictive_score(x, mean, buckets) == pytest.approx(
            direct(x, mean, buckets), abs=1e-9
        )
    assert predictive_score(9, 1.596, 15.0) < poisson_tail(9, 1.596) - 0.5
    assert predictive_score(9, 1.596, 1e7) == pytest.approx(poisson_tail(9, 1.596), abs=1e-4)
    assert predictive_score(1, 1.0, 1e9) == pytest.approx(-math.log10(1 - math.exp(-1)), abs=1e-6)


def test_items_cover_unigrams_bigrams_hashtags_domains_entities() -> None:
    items = burst_items(
        "Huge #Cloudflare outage: sites down, see https://www.cloudflarestatus.com/x "
        "says the Event Horizon Telescope team"
    )
    assert {"cloudflare", "#cloudflare", "cloudflare outage", "outage"} <= set(items)
    assert "domain:cloudflarestatus.com" in items
    assert "domain:example.org" in burst_items("Read this HTTPS://Example.org/x now")
    assert "ent:event horizon telescope" in items
    assert entities("Intel Confronts Potential PR Nightmare With Chip Flaw") == []  # headline


@pytest.mark.parametrize("apostrophe", ["'", "\u2019"], ids=["ascii", "typographic"])
def test_contractions_are_no_items_whatever_the_apostrophe(apostrophe: str) -> None:
    text = "The storm isn't over, we don't know, I'm scared and they'll stay with O'Brien"
    items = burst_items(text.replace("'", apostrophe))
    assert items == burst_items(text)
    assert {"storm", "scared", "stay", "o'brien"} <= set(items)
    assert not [i for i in items if i.split()[-1] in {"isn't", "don't", "i'm", "they'll"}]
    assert not {"isn", "don", "they"} & set(items)  # (no fragment of a split contraction)


def test_words_of_any_script_are_items() -> None:
    """A letter or digit of any script belongs to its word: "Gödel" is one item, not "g"
    and "del"; Cyrillic and Greek words are items; a number of any script is none."""
    assert burst_items("Gödel's proof and the Zürich Café") == [
        "gödel",
        "proof",
        "gödel proof",
        "zürich",
        "café",
        "zürich café",
        "ent:zürich café",
    ]
    assert "del" not in burst_items("Gödel, Escher, Bach")
    assert {"москва", "σεισμός"} <= set(burst_items("Москва: σεισμός ٣٣٣ 2²"))
    assert not {"٣٣٣", "2²"} & set(burst_items("Москва: σεισμός ٣٣٣ 2²"))


def test_chinese_japanese_and_korean_text_bursts_on_its_character_bigrams() -> None:
    """A Japanese or Chinese post has no spaces between its words: its items are the
    bigrams of its Han runs and its Katakana runs ("地震" in "また地震…怖い" and in
    "東京で震度4の地震"); a dozen posts saying it in different words within minutes burst
    on it, and its Hiragana grammar ("が", "った") is no item."""
    assert burst_items("東京で地震があった。 #地震 iPhone16発売 ツイッターが落ちた") == [
        "東京",
        "地震",
        "#地震",
        "iphone16",
        "発売",
        "ツイッター",
    ]
    assert burst_items("北京发生地震") == ["北京", "京发", "发生", "生地", "地震"]
    # a Korean word carries its particles: "지진이" and "지진으로" share "지진"
    assert "지진" in set(burst_items("지진이 났다")) & set(burst_items("지진으로 피해"))
    start = T0 + timedelta(hours=4)
    said = ["地震だ。結構揺れた", "今の地震大きかったね", "東京で震度4の地震", "また地震…怖い"]
    quake = [
        cp(start + timedelta(seconds=40 * k), f"{said[k % 4]} {VOCAB[k]}", 90_000 + k, lang="ja")
        for k in range(12)
    ]
    posts = sorted(flat_stream(6, 60, 4, 5) + quake, key=lambda c: c.post.created_at)
    assert "term:地震" in {a.key for a in run(engine(), posts)}


def test_a_posts_items_leave_out_its_languages_stop_words() -> None:
    """The stop words of a post's language (its ``lang``) are no items: "que", "para" and
    "fazer" in a Portuguese post, "und" and "war" in a German one; "war" in an English post
    is a word."""
    pt = text_mod.stop_words_for("pt-BR")
    assert burst_items("Enchente em Porto Alegre: o que fazer para ajudar", stop=pt) == [
        "enchente",
        "porto",
        "alegre",
        "porto alegre",
        "ajudar",
        "ent:porto alegre",
    ]
    assert {"que", "para"} <= set(burst_items("o que fazer para ajudar"))  # (read as English)
    de = text_mod.stop_words_for("de")
    assert burst_items("Das Hochwasser war und ist schlimm", stop=de) == [
        "hochwasser",
        "schlimm",
    ]
    assert "war" in burst_items("The war in the north")
    assert text_mod.stop_words_for("en-GB") is text_mod.STOP_WORDS
    assert text_mod.stop_words_for("xx") is text_mod.STOP_WORDS  # (a language without a list)
    assert text_mod.stop_words_for("no") == text_mod.stop_words_for("nb")


def test_a_burst_of_function_words_is_no_story_in_the_posts_language() -> None:
    """Portuguese posts on different subjects, a dozen in eight minutes, share only their
    function words ("que", "para", "uma"): tagged ``lang: pt`` they open no story; read as
    English (no tag) those words burst. Russian posts on one event burst on its words."""
    start = T0 + timedelta(hours=4)

    def stream(lang: str | None, texts: list[str]) -> list[ClassifiedPost]:
        base = flat_stream(6, 60, 4, 5)
        burst = [
            cp(start + timedelta(seconds=40 * k), t, 90_000 + k, lang=lang)
            for k, t in enumerate(texts)
        ]
        return sorted(base + burst, key=lambda c: c.post.created_at)

    chatter = [f"o que {VOCAB[k]} para uma {VOCAB[k + 20]}" for k in range(12)]
    tagged = {a.key for a in run(engine(), stream("pt", chatter))}
    untagged = {a.key for a in run(engine(), stream(None, chatter))}
    function_words = {"term:que", "term:para", "term:uma"}
    assert not tagged & function_words, tagged
    assert untagged & function_words, untagged
    quake = [f"землетрясение в Москве {VOCAB[k]}" for k in range(12)]
    keys = {a.key for a in run(engine(), stream("ru", quake))}
    assert keys & {"term:землетрясение", "term:москве"}, keys


def reference_items(text: str, limit: int) -> tuple[list[str], list[str]]:
    """What :func:`streams.features.analyse` computes, token by token, as first written
    (links in any case give their domain since 2026-11-24)."""
    seen: dict[str, None] = {}
    content: list[str] = []
    prev: str | None = None
    for tok in tokens(text):
        w = text_mod.word_of(tok)
        word = w if text_mod.wordlike(w) and w not in text_mod.STOP_WORDS else None
        if word is None:
            prev = None
            continue
        content.append(word)
        if len(seen) >= limit:
            continue
        seen.setdefault(word, None)
        if tok[0] == "#":
            seen.setdefault("#" + word, None)
        if prev is not None and prev != word:
            seen.setdefault(f"{prev} {word}", None)
        prev = word
    for d in domains(text):  # (first written with an `if "http" in text` that missed "HTTP://")
        seen.setdefault(f"domain:{d}", None)
    for e in entities(text):
        seen.setdefault(e, None)
    return list(seen)[: limit + 8], content


FRAGMENTS = [
    *VOCAB[:12],
    *VOCAB[:4],
    "the",
    "of",
    "#Storm",
    "#yyc",
    "@user",
    "a@b",
    "http://x.org/a",
    "HTTPS://www.bbc.co.uk/n",
    "Event",
    "Horizon",
    "NASA",
    "it's",
    "42",
    "3.5",
    "don\u2019t",
    "e-mail",
    "U.S.",
    "50%",
    "\u00c9cole",
    "!",
    "\n",
]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.sampled_from(FRAGMENTS), max_size=60),
    seps=st.lists(st.sampled_from([" ", "  ", ", ", "#", "", "\t"]), min_size=1),
    limit=st.sampled_from([48, 8, 3]),
)
def test_analyse_is_the_token_by_token_reference(
    parts: list[str], seps: list[str], limit: int
) -> None:
    text = "".join(p + seps[i % len(seps)] for i, p in enumerate(parts))
    # tokens() skips the URL / mention pass when a text can't need it: the same tokens
    # (and reads a typographic apostrophe as "'")
    low = text.lower().replace("\u2019", "'")
    plain = text_mod._MENTION.sub(" ", text_mod._URL.sub(" ", low))
    assert tokens(text) == text_mod._TOKEN.findall(plain)
    assert features.analyse(text, limit) == reference_items(text, limit)
    assert _textcore.analyse(text, limit) == reference_items(text, limit)  # (compiled twin)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    per_hour=st.integers(20, 150),
    words=st.integers(3, 8),
    seed=st.integers(0, 10_000),
    hours=st.floats(4, 12),
)
def test_flat_stream_raises_nothing(per_hour: int, words: int, seed: int, hours: float) -> None:
    assert run(engine(), flat_stream(hours, per_hour, words, seed)) == []


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    per_hour=st.integers(20, 150),
    seed=st.integers(0, 10_000),
    # The smallest step the defaults promise to catch within 15 minutes. min_score 4.5 wants
    # ~5 independent posts of a new term in a 10-minute window (expected ~0.3 at these base
    # rates), and these step posts are near-copies of each other, so the MinHash discount
    # takes some: a 30/h step sits on the threshold. Found by hypothesis on 2026-11-23: steps
    # of 30, 31 and 36/h (per_hour 102, step_at 3.0) missed or came 18 min late; a sweep over
    # random cases: 3 of 37 missed at 31/h, none in 370 from 40 to 48/h. 45/h keeps a margin.
    step_per_hour=st.integers(45, 300),
    step_at=st.floats(3, 6),
)
def test_injected_step_raises_exactly_one_alert(
    per_hour: int, seed: int, step_per_hour: int, step_at: float
) -> None:
    base = flat_stream(step_at + 5, per_hour, 5, seed)
    rng = random.Random(seed)
    onset = T0 + timedelta(hours=step_at)
    step = [
        cp(
            onset + timedelta(seconds=3600 * k / step_per_hour),
            f"zephyr outage {rng.choice(VOCAB)} {rng.choice(VOCAB)} report {k}",
            100_000 + k,
        )
        for k in range(int(step_per_hour * 2))  # two hours of it, then it stops
    ]
    posts = sorted(base + step, key=lambda c: c.post.created_at)
    alerts = run(engine(), posts)
    ids = {a.id for a in alerts}
    assert len(ids) == 1, [(a.key, a.status, a.raised_at) for a in alerts]
    first = alerts[0]
    assert first.status == "open" and first.version == 1
    assert {"zephyr", "outage", "zephyr outage"} & set(first.terms)
    assert onset <= first.raised_at <= onset + timedelta(minutes=15)
    # versions count up; the last one resolves it once the step has stopped long enough
    assert [a.version for a in alerts] == list(range(1, len(alerts) + 1))
    assert alerts[-1].status == "resolved"


def step_posts(onset: datetime, n: int, every_s: float = 30, start: int = 10_000) -> list:
    return [
        cp(
            onset + timedelta(seconds=every_s * k),
            f"zephyr outage {VOCAB[k % 100]} {VOCAB[(3 * k) % 100]} {k}",
            start + k,
        )
        for k in range(n)
    ]


def test_alert_packet_is_deterministic_under_a_fixed_clock() -> None:
    posts = flat_stream(8, 60, 4, 1) + step_posts(T0 + timedelta(hours=6), 20)
    posts.sort(key=lambda c: c.post.created_at)
    a1, a2 = run(engine(), posts), run(engine(), posts)
    assert a1 == a2 and a1
    first = a1[0]
    assert first.detected_at == NOW  # wall clock only from the injected clock
    # the id: the key and the finest bucket it opened in (stable whatever scale fired)
    opened = first.raised_at.timestamp() // 300 * 300
    assert first.id == alert_id(first.key, opened)
    assert first.window_start.timestamp() + first.window_seconds > first.raised_at.timestamp()
    assert first.lead_source == "x" and first.counts_curve
    assert first.reason and first.z is not None and first.expected > 0
    assert first.independent_posts == first.posts_seen  # all distinct authors and texts


def test_checkpoints_in_a_table_survive_a_torn_write() -> None:
    posts = flat_stream(8, 60, 4, 8) + step_posts(T0 + timedelta(hours=6), 20)
    posts.sort(key=lambda c: c.post.created_at)
    table: dict[str, object] = {}
    store = Checkpoints(table, chunk_bytes=50_000)
    eng = engine()
    run(eng, posts[:200])
    eng.offset = 199
    store.save(0, eng)
    run(eng, posts[200:400])
    eng.offset = 399
    good = dict(table)
    store.save(0, eng, b"merge state")
    loaded = store.load(0)
    assert loaded is not None and loaded[0].offset == 399 and loaded[1] == b"merge state"
    # a crash after the chunks of a new snapshot but before its meta: the old one stands
    torn = dict(good)
    torn.update({k: v for k, v in table.items() if k != "0:meta"})
    old = Checkpoints(torn).load(0)
    assert old is not None and old[1] == b""
    restored = old[0]
    assert restored.offset == 199
    restored.set_clock(lambda: NOW)
    assert run(restored, posts[200:]) == run(engine_at(posts[:200]), posts[200:])
    assert Checkpoints({}).load(0) is None
    assert (store.offset(0), Checkpoints(torn).offset(0), Checkpoints({}).offset(0)) == (
        399,
        199,
        -1,
    )


@pytest.mark.parametrize("layout", [1, 2])
def test_a_checkpoint_of_another_detector_layout_starts_empty(
    layout: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint written by a layout this detector cannot read (before stories) is not
    restored half-way: the detector starts empty and says why."""
    eng = engine()
    run(eng, flat_stream(8, 60, 4, 8)[:50])
    state = eng.__getstate__()
    state["state_version"] = layout
    old = zlib.compress(pickle.dumps(_Pickled(state)))
    with pytest.raises(IncompatibleCheckpoint):
        BurstEngine.loads(old)
    table: dict[str, object] = {}
    store = Checkpoints(table)
    eng.offset = 49
    store.save(0, eng)
    meta = dict(table["0:meta"])  # type: ignore[call-overload]
    table[f"0:{meta['slot']}:0"] = base64.b64encode(old).decode()
    table["0:meta"] = dict(meta, chunks=1, sha256=hashlib.sha256(old).hexdigest())
    with caplog.at_level("WARNING"):
        assert store.load(0) is None
    assert "another version of the detector; starting empty" in caplog.text


class _Pickled:
    """Unpickles as a BurstEngine with the given state."""

    def __init__(self, state: dict[str, object]) -> None:
        self.state = state

    def __reduce__(self) -> tuple[object, ...]:
        return (BurstEngine.__new__, (BurstEngine,), self.state)


def engine_at(posts: list[ClassifiedPost]) -> BurstEngine:
    eng = engine()
    run(eng, posts)
    return eng


def _restart_stream() -> tuple[list[ClassifiedPost], list[Alert]]:
    """A flat stream with a step in it, in time order, and the alerts of one detector over it."""
    posts = flat_stream(10, 90, 4, 2) + step_posts(T0 + timedelta(hours=7), 40)
    posts.sort(key=lambda c: c.post.created_at)
    return posts, run(engine(), posts)


def test_checkpoint_restore_continues_exactly() -> None:
    posts, whole = _restart_stream()
    cut = len(posts) // 2 + 7
    eng = engine()
    first = run(eng, posts[:cut])
    restored = BurstEngine.loads(eng.dumps())
    restored.set_clock(lambda: NOW)
    assert first + run(restored, posts[cut:]) == whole


def _cut_with_a_story_open() -> tuple[list[ClassifiedPost], list[Alert], list[Alert], BurstEngine]:
    """The rest of a stream after a cut where a story is open, the alerts of a detector never
    stopped, those raised before the cut, and a copy of the detector at the cut."""
    posts, whole = _restart_stream()
    cut = len(posts) // 2 + 200
    eng = engine()
    first = run(eng, posts[:cut])
    assert eng.book.open
    return posts[cut:], whole, first, copy.deepcopy(eng)


def _fold_previous(eng: BurstEngine) -> None:
    """Each cell's baseline as layouts 3-5 kept it: with the previous bucket already in it
    (one EWMA step on it, in float32 as they did it)."""
    for sc in eng.scales:
        for rates in (sc.sketch, sc.keyed):
            a, y, m = rates.alpha, rates.prev, rates.mean.copy()
            diff = y - m
            rates.mean[:] = m + a * diff
            rates.var[:] = (1.0 - a) * (rates.var + a * diff * diff)


def _pickled_as(state: dict[str, object], layout: int) -> bytes:
    state["state_version"] = layout
    return zlib.compress(pickle.dumps(_Pickled(state)))


# a layout 3-5 baseline is brought back by undoing a float32 EWMA step in float64: the
# cells and every float of the alerts that follow agree with the never stopped detector's
# within this relative tolerance (a cell whose baseline is 0 may keep a rounding residue
# below _LAYOUT_ATOL); everything else in the alerts is equal
_LAYOUT_RTOL = 1e-4
_LAYOUT_ATOL = 1e-6
# written by the layout 5 detector's own code (of the last commit before STATE_VERSION 6):
# its dumps() after counting the posts of _restart_stream() before the cut of
# _cut_with_a_story_open, as engine(**_LAYOUT_5_PARAMS)
_LAYOUT_5 = Path(__file__).parent / "data" / "detector_layout5.ckpt"
_LAYOUT_5_PARAMS = {"sketch_width": 512, "seen_posts": 1000, "max_tracked_keys": 64}


def assert_same_alerts(got: list[Alert], want: list[Alert]) -> None:
    def close(x: object, y: object) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=_LAYOUT_RTOL, abs_tol=1e-9)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(close(a, b) for a, b in zip(x, y, strict=True))
        return x == y

    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert close(g.model_dump(), w.model_dump()), (g.id, g.version)


def assert_same_baselines(got: BurstEngine, want: BurstEngine) -> None:
    for gs, ws in zip(got.scales, want.scales, strict=True):
        for g, w in ((gs.sketch, ws.sketch), (gs.keyed, ws.keyed)):
            assert np.array_equal(g.prev, w.prev) and np.array_equal(g.bucket, w.bucket)
            for field in ("mean", "var"):
                assert np.allclose(
                    g.cells[field], w.cells[field], rtol=_LAYOUT_RTOL, atol=_LAYOUT_ATOL
                )


def test_a_checkpoint_of_layout_5_restores_with_the_previous_bucket_out_of_its_baselines() -> None:
    """Layout 5's baselines held the previous bucket already (this one's take it when it
    leaves the window): read, the bucket is taken out again, and the detector goes on as
    the one never stopped."""
    rest, whole, first, old = _cut_with_a_story_open()
    at_cut = copy.deepcopy(old)
    _fold_previous(old)
    assert not np.allclose(old.stack.cells["mean"], at_cut.stack.cells["mean"])
    restored = BurstEngine.loads(_pickled_as(old.__getstate__(), 5))
    assert_same_baselines(restored, at_cut)
    restored.set_clock(lambda: NOW)
    assert_same_alerts(first + run(restored, rest), whole)


def test_a_checkpoint_written_by_the_layout_5_detector_restores_to_this_layouts_baselines() -> None:
    """A real layout 5 checkpoint (tests/data, written by that detector's code): read and
    set to this detector's settings, its cells are those this detector has over the same
    posts, and stay so as both go on counting."""
    params = DetectorParams(**_LAYOUT_5_PARAMS)  # type: ignore[arg-type]
    posts, _ = _restart_stream()
    cut = len(posts) // 2 + 200
    old = BurstEngine.loads(_LAYOUT_5.read_bytes())
    old.use_settings(params)
    new = engine(**_LAYOUT_5_PARAMS)
    run(new, posts[:cut])
    assert int(old.stack.cells["bucket"].max()) == new.bucket > 0
    assert_same_baselines(old, new)
    old.set_clock(lambda: NOW)
    run(old, posts[cut:])
    run(new, posts[cut:])
    assert_same_baselines(old, new)


def test_a_checkpoint_of_layout_3_restores_and_continues() -> None:
    """Layout 3 (besides, each time scale's sketch with its own cells, before they shared
    one array, and a story's last emission a plain tuple) restores into the shared array and
    goes on as the detector that was never stopped."""
    rest, whole, first, old = _cut_with_a_story_open()
    at_cut = copy.deepcopy(old)
    _fold_previous(old)
    for sc in old.scales:  # (as layout 3 pickled them)
        sc.sketch.cells = sc.sketch.cells.copy()
        sc.sketch.stacked = False
    for story in [*old.book.open.values(), *old.book.dormant.values()]:
        story.emitted = tuple(story.emitted)  # type: ignore[assignment]
        del story.held
    state = old.__getstate__()
    del state["stack"]
    restored = BurstEngine.loads(_pickled_as(state, 3))
    assert all(sc.sketch.stacked for sc in restored.scales)
    assert_same_baselines(restored, at_cut)
    restored.set_clock(lambda: NOW)
    assert_same_alerts(first + run(restored, rest), whole)


def test_a_checkpoint_of_layout_4_restores_and_continues() -> None:
    """Layout 4 (besides, stories without the burst keys each post holds) restores with
    them counted and goes on as the detector that was never stopped."""
    rest, whole, first, old = _cut_with_a_story_open()
    at_cut = copy.deepcopy(old)
    _fold_previous(old)
    stories = [*old.book.open.values(), *old.book.dormant.values()]
    counted = [story.held for story in stories]
    for story in stories:
        del story.held
    restored = BurstEngine.loads(_pickled_as(old.__getstate__(), 4))
    book = restored.book
    assert [s.held for s in [*book.open.values(), *book.dormant.values()]] == counted
    assert_same_baselines(restored, at_cut)
    restored.set_clock(lambda: NOW)
    assert_same_alerts(first + run(restored, rest), whole)


def test_a_restored_detector_goes_on_with_the_settings_it_is_restored_with(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A checkpoint follows the worker's settings, not those it was saved with: a stricter
    ``min_score`` opens no story that the saved settings would have; a setting its state is
    shaped by (the time scales) differs: it starts empty and says which."""
    posts, whole = _restart_stream()
    cut = len(posts) // 2 + 7
    eng = engine()
    first = run(eng, posts[:cut])
    eng.offset = cut - 1
    table: dict[str, object] = {}
    Checkpoints(table).save(0, eng)
    opened_later = [a for a in whole[len(first) :] if a.version == 1]
    assert opened_later  # with the saved settings, stories open after the cut

    same = Checkpoints(table).load(0, eng.p)
    assert same is not None
    same[0].set_clock(lambda: NOW)
    assert first + run(same[0], posts[cut:]) == whole

    stricter = DetectorParams(min_score=40.0, story_update_seconds=60, seen_posts=100)
    loaded = Checkpoints(table).load(0, stricter)
    assert loaded is not None
    restored = loaded[0]
    assert restored.p == stricter and len(restored.seen) == 100 < cut
    assert [sc.min_score for sc in restored.scales] == [
        stricter.score_threshold(m) for m in stricter.scales
    ]
    assert restored.book.p.story_update_seconds == restored.book.throttle.update_seconds == 60
    restored.set_clock(lambda: NOW)
    assert not [a for a in run(restored, posts[cut:]) if a.version == 1]

    with caplog.at_level("WARNING"):
        assert Checkpoints(table).load(0, DetectorParams(scales=(1, 6))) is None
    assert "shaped by other settings: scales (1, 6, 36, 144) (now (1, 6))" in caplog.text


def test_seen_posts_resized_keeps_the_newest_keys() -> None:
    seen = SeenPosts(5)
    for i in range(5):
        seen.add(f"k{i}")
    seen.resize(3)
    assert len(seen) == 3 and "k1" not in seen and all(f"k{i}" in seen for i in (2, 3, 4))
    seen.resize(10)
    assert all(seen.add(f"n{i}") for i in range(7)) and len(seen) == 10
    with pytest.raises(ValueError):
        seen.resize(0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_posts_emitted_again_after_a_crash_are_counted_once(seed: int) -> None:
    """Ingest re-emits the posts it had not committed when a worker dies: the detector
    sees a run of posts twice (in order, at later offsets) and must raise the same alerts."""
    posts = flat_stream(10, 90, 4, 2) + step_posts(T0 + timedelta(hours=7), 40)
    posts.sort(key=lambda c: c.post.created_at)
    whole = run(engine(), posts)
    assert whole
    rng = random.Random(seed)
    start = rng.randrange(len(posts) - 200)
    stop = start + rng.randrange(20, 200)
    eng = engine()
    again = run(eng, posts[:stop]) + run(eng, posts[start:stop]) + run(eng, posts[stop:])
    assert eng.repeats == stop - start
    assert [(a.id, a.version) for a in again] == [(a.id, a.version) for a in whole]
    batched = engine()  # the same run in one batch call (the repeats inside one batch)
    got = batched.observe_many(posts[:stop] + posts[start:stop] + posts[stop:])
    assert [(a.id, a.version) for a in got] == [(a.id, a.version) for a in whole]
    # the memory of seen keys survives a checkpoint
    restored = BurstEngine.loads(eng.dumps())
    assert run(restored, posts[start:stop]) == [] and restored.repeats == 2 * (stop - start)


def test_seen_posts_is_bounded_and_forgets_the_oldest() -> None:
    seen = SeenPosts(3)
    assert [seen.add(k) for k in ("a", "b", "a", "c", "d")] == [True, True, False, True, True]
    assert len(seen) == 3 and "a" not in seen and "d" in seen
    assert seen.add("a") and not seen.add("d")
    with pytest.raises(ValueError):
        SeenPosts(0)


def test_a_restored_book_reports_its_open_alerts_at_their_last_version() -> None:
    posts = flat_stream(8, 90, 4, 2) + step_posts(T0 + timedelta(hours=7), 40)
    posts.sort(key=lambda c: c.post.created_at)  # ends before the alerts can resolve
    eng = engine()
    last: dict[str, Alert] = {}
    for a in run(eng, posts):
        last[a.id] = a
    still_open = {i: a for i, a in last.items() if a.status != "resolved"}
    assert still_open
    restored = BurstEngine.loads(eng.dumps())
    restored.set_clock(lambda: NOW)
    now = {a.id: a for a in restored.book.current()}
    assert {i: a.version for i, a in now.items()} == {i: a.version for i, a in still_open.items()}
    for i, a in now.items():  # the alert as last sent (what the gauges showed)
        assert a.model_dump(exclude={"status"}) == still_open[i].model_dump(exclude={"status"})


def test_one_account_cannot_make_a_burst() -> None:
    posts = flat_stream(8, 60, 4, 3)
    spam = [
        cp(
            T0 + timedelta(hours=6, seconds=20 * k),
            f"zephyr outage {VOCAB[k]} {k}",
            9000 + k,
            "bot",
        )
        for k in range(25)
    ]
    assert opened(run(engine(), sorted(posts + spam, key=lambda c: c.post.created_at))) == []


def test_copy_paste_campaign_is_discounted() -> None:
    posts = flat_stream(8, 60, 4, 4)
    text = "Zephyr outage confirmed, everything is down at the zephyr datacenter now"
    campaign = [cp(T0 + timedelta(hours=6, seconds=20 * k), text, 9000 + k) for k in range(25)]
    assert opened(run(engine(), sorted(posts + campaign, key=lambda c: c.post.created_at))) == []


@pytest.mark.parametrize(("source", "fires"), [("hackernews", True), ("x", False)])
def test_a_headline_submitted_again_counts_on_a_link_aggregator(source: str, fires: bool) -> None:
    """Yahoo's breach reached Hacker News as two items with one headline and, a minute
    later, a third: a copy there is another reader's submission and counts
    (``copies_count_on``). On X the same copy is a repost and counts 0, and two posts in
    the hour are not enough."""
    rng = random.Random(5)
    posts = [
        cp(
            T0 + timedelta(minutes=12 * i + rng.uniform(0, 5)),
            " ".join(rng.sample(VOCAB, 5)),
            i,
            source=source,
        )
        for i in range(24 * 5 * 5)
    ]
    onset = T0 + timedelta(days=4, hours=3)
    headline = "Zephyr discloses breach of 1B accounts"
    news = [
        cp(onset + timedelta(minutes=m), t, 50_000 + m, source=source)
        for m, t in ((0, headline), (11, headline), (12, "Zephyr says new breach hit 1B users"))
    ]
    alerts = opened(run(engine(), sorted(posts + news, key=lambda c: c.post.created_at)))
    assert [a.key for a in alerts] == (["term:zephyr"] if fires else [])
    if fires:  # (and the alert counts the copy as the detector did)
        assert alerts[0].raised_at == onset + timedelta(minutes=12)
        assert (alerts[0].independent_posts, alerts[0].discounted["near_duplicate"]) == (3, 0)


def test_sparse_stream_fires_on_a_few_posts() -> None:
    """~120 posts a day (Hacker News): two or three posts on a new subject in minutes is
    news (``min_count`` 2: never one post alone)."""
    rng = random.Random(5)
    posts = [
        cp(
            T0 + timedelta(minutes=12 * i + rng.uniform(0, 5)),
            " ".join(rng.sample(VOCAB, 5)),
            i,
            source="hackernews",
        )
        for i in range(24 * 5 * 5)
    ]
    onset = T0 + timedelta(days=4, hours=3)
    news = [
        cp(onset + timedelta(minutes=m), t, 50_000 + m, source="hackernews")
        for m, t in ((0, "Zephyr down?"), (2, "Zephyr network outage"), (4, "Is Zephyr down"))
    ]
    alerts = run(engine(), sorted(posts + news, key=lambda c: c.post.created_at))
    assert [(a.key, a.label) for a in opened(alerts)] == [("term:zephyr", "Zephyr network outage")]
    assert onset + timedelta(minutes=2) <= alerts[0].raised_at <= onset + timedelta(minutes=4)


def test_claim_stance_surge_is_its_own_signal_and_one_alert() -> None:
    posts = flat_stream(8, 60, 4, 6)

    def hit(stance: Stance) -> list[ClaimHit]:
        return [ClaimHit(claim="glm5-on-ascend", dossier="china-ai", stance=stance)]

    onset = T0 + timedelta(hours=6)
    # a steady trickle of comments on the claim, then a surge of denials
    chatter = [
        cp(
            T0 + timedelta(minutes=20 * k),
            f"glm talk {VOCAB[k % 100]}",
            7000 + k,
            claims=hit("comment"),
        )
        for k in range(24)
    ]
    denials = [
        cp(
            onset + timedelta(seconds=40 * k),
            f"no evidence {VOCAB[k % 100]} {k}",
            8000 + k,
            claims=hit("deny"),
            source="bluesky" if k % 2 else "x",
        )
        for k in range(12)
    ]
    alerts = run(engine(), sorted(posts + chatter + denials, key=lambda c: c.post.created_at))
    assert len({a.id for a in alerts}) == 1
    last = [a for a in alerts if a.status != "resolved"][-1]
    assert "claim:glm5-on-ascend:stance:deny" in last.related_keys
    assert last.claims == ["glm5-on-ascend"] and last.dossier == "china-ai"
    assert last.stance_mix.get("deny", 0) >= 3
    assert set(last.source_first_seen) == {"x", "bluesky"}
    assert last.lead_source == "x"


def test_evidence_is_diverse() -> None:
    posts = flat_stream(10, 60, 4, 7)
    onset = T0 + timedelta(hours=6)
    burst = step_posts(onset, 30)
    copies = [
        cp(onset + timedelta(seconds=15 + 30 * k), "zephyr outage zephyr outage copy", 20_000 + k)
        for k in range(30)
    ]
    alerts = run(engine(), sorted(posts + burst + copies, key=lambda c: c.post.created_at))
    last = [a for a in alerts if a.status != "resolved"][-1]
    texts = [e.text for e in last.evidence]
    assert len(texts) == len(set(texts)) and texts.count("zephyr outage zephyr outage copy") <= 1
    final = alerts[-1]
    assert final.status == "resolved" and final.discounted["near_duplicate"] >= 25


def test_hacker_news_format_markers_are_not_burst_items() -> None:
    """ "Ask HN:", "Show HN:", "[pdf]" say what kind of Hacker News post it is, not what it
    is about: a day with many "Ask HN" posts on different subjects is no story, while the
    same words anywhere else are words."""
    title = "Ask HN: Which alphabravo book is worth reading? [pdf]"
    assert features.topic_text(title, "hackernews").split() == [
        "Which",
        "alphabravo",
        "book",
        "is",
        "worth",
        "reading?",
    ]
    assert features.topic_text(title, "x") == title
    assert features.topic_text("Why I ask HN for advice", "hackernews").split()[2] == "ask"
    start = T0 + timedelta(hours=4)

    def asks(source: str) -> list[ClassifiedPost]:
        base = [
            cp(c.post.created_at, c.post.text, int(c.post.id), source=source)
            for c in flat_stream(6, 60, 4, 5)
        ]
        burst = [
            cp(
                start + timedelta(seconds=40 * k),
                f"Ask HN: {VOCAB[k]} {VOCAB[k + 20]}?",
                90_000 + k,
                source=source,
            )
            for k in range(12)
        ]
        return sorted(base + burst, key=lambda c: c.post.created_at)

    on_hn = {a.key for a in run(engine(), asks("hackernews"))}
    elsewhere = {a.key for a in run(engine(), asks("reddit"))}
    assert not {k for k in on_hn if "ask" in k or "hn" in k}, on_hn
    assert {k for k in elsewhere if "ask" in k or "hn" in k}, elsewhere


def test_cooldown_then_the_story_reopens_then_a_new_alert() -> None:
    """A resolved alert's keys stay quiet for the cooldown; a later burst within the story
    horizon (24 h) reopens it under its id, one past the horizon is a new alert."""
    posts = flat_stream(44, 60, 4, 9)
    first = T0 + timedelta(hours=4)
    again_soon = first + timedelta(hours=4)  # resolved after ~2 h quiet, cooldown 6 h
    again_later = first + timedelta(hours=14)  # within 24 h of its resolution: reopens it
    much_later = first + timedelta(hours=40)  # over 24 h after it resolved again: a new alert
    posts += step_posts(first, 20) + step_posts(again_soon, 20, start=30_000)
    posts += step_posts(again_later, 20, start=40_000)
    posts += step_posts(much_later, 20, start=50_000)
    posts.sort(key=lambda c: c.post.created_at)
    alerts = run(engine(), posts)
    opens = opened(alerts)
    assert [(a.raised_at.day, a.raised_at.hour) for a in opens] == [(T0.day, 4), (T0.day + 1, 20)]
    story = [a for a in alerts if a.id == opens[0].id]
    assert story[0].status == "open" and story[-1].status == "resolved"
    reopened = [a for a in story if a.delivered_reason == "reopened"]
    assert [a.raised_at.hour for a in reopened] == [18]
    assert opens[1].id != opens[0].id
    # detector.story_horizon_seconds: with 12 h the burst at 18:00 is a story of its own
    shorter = opened(run(engine(story_horizon_seconds=12 * 3600), posts))
    assert [(a.raised_at.day, a.raised_at.hour) for a in shorter] == [
        (T0.day, 4),
        (T0.day, 18),
        (T0.day + 1, 20),
    ]


def test_alerts_do_not_depend_on_the_process_hash_seed() -> None:
    """The broker worker and an offline run are different processes: same alerts, byte for
    byte (set iteration order must never leak into ids, versions or terms)."""
    code = (
        "import hashlib\n"
        "from tests.helpers import multi_burst_rows, offline_alerts\n"
        "from seismo.contracts import Post\n"
        "al = offline_alerts(Post.model_validate(r) for r in multi_burst_rows())\n"
        "print(len(al), hashlib.sha256(''.join(a.model_dump_json() for a in al).encode())"
        ".hexdigest())\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1 and int(next(iter(outs)).split()[0]) >= 3


def test_named_keys_counts_tracked_keys_and_candidates_within_their_caps() -> None:
    claims = [ClaimHit(claim="glm5-on-ascend", dossier="china-ai", stance="deny")]
    eng = engine(max_candidates=30)
    assert eng.named_keys == 0
    run(eng, [cp(T0 + timedelta(seconds=k), f"glm {VOCAB[k]}", k, claims=claims) for k in range(3)])
    # dossier, claim, claim x stance: exact cells from the first post
    assert len(eng.scales[0].keyed.slots) == 3 and eng.named_keys == 3 + len(eng.candidates)
    run(eng, flat_stream(3, 120, 4, 7, start=100))
    assert 3 < eng.named_keys <= 3 + 30


def mixed_stream(seed: int) -> list[ClassifiedPost]:
    """Flat chatter, a burst with repeat authors and copies, claim surges and late posts."""
    rng = random.Random(seed)
    posts = flat_stream(7, 240, 5, seed)
    onset = T0 + timedelta(hours=5)
    for k in range(60):
        t = onset + timedelta(seconds=rng.uniform(0, 1800))
        text = (
            "zephyr outage copy pasted everywhere"
            if k % 4 == 0
            else (f"zephyr outage {rng.choice(VOCAB)} {rng.choice(VOCAB)} {k}")
        )
        stance: Stance = rng.choice(["deny", "support", "comment"])
        claims = [ClaimHit(claim="glm5-on-ascend", dossier="china-ai", stance=stance)]
        author = f"a{rng.randrange(12)}"  # few authors: repeats are discounted
        posts.append(cp(t, text, 60_000 + k, author, claims=claims if k % 3 else None))
    posts.sort(key=lambda c: c.post.created_at)
    for k in range(0, len(posts) - 3, 97):  # a few posts arrive late (out of order)
        posts[k], posts[k + 3] = posts[k + 3], posts[k]
    return posts


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), chunks=st.lists(st.integers(1, 400), min_size=1))
def test_observe_many_is_observe_one_by_one(seed: int, chunks: list[int]) -> None:
    posts = mixed_stream(seed)
    one, many = engine(), engine()
    expected = run(one, posts)
    assume(any(a.status == "open" for a in expected))  # a few seeds raise nothing at all
    got: list[Alert] = []
    i = 0
    while i < len(posts):
        n = chunks[(i // 7) % len(chunks)]
        got += many.observe_many(posts[i : i + n])
        i += n
    assert got == expected
    for x, y in zip(one.scales, many.scales, strict=True):
        for a, b in ((x.sketch, y.sketch), (x.keyed, y.keyed)):
            assert (a.cur == b.cur).all() and (a.mean == b.mean).all()
            assert (a.var == b.var).all()
    assert (one.authors.last == many.authors.last).all()
    assert list(one.candidates) == list(many.candidates)


@settings(max_examples=60, deadline=None)
@given(
    posts=st.lists(
        st.tuples(
            st.sampled_from(["ann", "bob", "cy"]),
            st.lists(st.sampled_from(VOCAB[:6]), max_size=4, unique=True),
            st.lists(st.sampled_from(["claim:a", "dossier:d"]), max_size=2, unique=True),
        ),
        min_size=1,
        max_size=6,
    ),
    size=st.sampled_from([3, 8, 1 << 18]),
)
def test_author_repeats_with_units_numbered_out_of_order(
    posts: list[tuple[str, list[str], list[str]]], size: int
) -> None:
    """The detector passes all posts' items, then all their tracked keys, numbered 2k and
    2k + 1: the same as the units one post at a time, items then keys (tiny arrays: the
    cells collide, so the order of the units matters)."""
    in_order = [u for a, items, keys in posts for u in ((a, items), (a, keys))]
    grouped = [(a, items) for a, items, _ in posts] + [(a, keys) for a, _, keys in posts]
    number = [2 * k for k, (_, items, _) in enumerate(posts) for _ in items]
    number += [2 * k + 1 for k, (_, _, keys) in enumerate(posts) for _ in keys]
    one, other = AuthorRepeats(size), AuthorRepeats(size)
    for bucket in (5, 6):
        expected = one.fresh_many(in_order, bucket).tolist()
        got = other.fresh_many(grouped, bucket, np.array(number, dtype=np.int64)).tolist()
        at = 0
        by_unit: dict[int, list[bool]] = {}
        for k, (_, items, _k) in enumerate(posts):
            by_unit[2 * k] = got[at : at + len(items)]
            at += len(items)
        for k, (_, _, keys) in enumerate(posts):
            by_unit[2 * k + 1] = got[at : at + len(keys)]
            at += len(keys)
        assert [b for u in sorted(by_unit) for b in by_unit[u]] == expected
        assert (one.last == other.last).all()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 300), cap=st.sampled_from([8, 40, 20_000]))
def test_candidates_glue_is_the_name_by_name_reference(seed: int, batch: int, cap: int) -> None:
    """The per-post candidate update without a Python loop (streams.detector._test) leaves
    the same candidates, in the same LRU order, with the same evidence, as ``_candidates``
    name by name (the reference, run under ``PURE_PYTHON``); a small cap evicts often."""
    posts = mixed_stream(seed)
    states = []
    for pure in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(core, "PURE_PYTHON", pure)
            eng = engine(max_candidates=cap)
            alerts = [
                a
                for i in range(0, len(posts), batch)
                for a in eng.observe_many(posts[i : i + batch])
            ]
        evidence = [(k, [r.post_id for r in refs]) for k, refs in eng.candidates.items()]
        states.append((alerts, evidence, [r.post_id for r in eng.recent]))
    assert states[0] == states[1]
    assert states[0][1]  # (there were candidates to compare)


def slow_story(onset: datetime, n: int, every: timedelta) -> list[ClassifiedPost]:
    """A new subject, one post every ``every``: never two in ten minutes."""
    rng = random.Random(11)
    return [
        cp(
            onset + k * every,
            f"Zephyr {rng.choice(VOCAB)} {rng.choice(VOCAB)} {rng.choice(VOCAB)} {k}",
            70_000 + k,
            source="hackernews",
        )
        for k in range(n)
    ]


def test_a_slow_story_is_caught_at_a_long_scale_and_one_scale_misses_it() -> None:
    """Five posts, 70 minutes apart, on a stream of 5 posts an hour: the 10-minute window
    never holds two of them, the 6 h or 24 h window does. The alert names the scale's window
    and its evidence covers it."""
    base = flat_stream(24 * 8, 5, 5, 3)
    onset = T0 + timedelta(days=7, hours=3)
    story = slow_story(onset, 5, timedelta(minutes=70))
    posts = sorted(base + story, key=lambda c: c.post.created_at)
    alerts = run(engine(), posts)
    about = [a for a in opened(alerts) if "zephyr" in a.terms]
    assert len(about) == 1, [(a.label, a.window_seconds) for a in opened(alerts)]
    alert = about[0]
    assert alert.raised_at <= story[-1].post.created_at
    assert alert.window_seconds >= 6 * 3600
    assert alert.window_start + timedelta(seconds=alert.window_seconds) > alert.raised_at
    assert "h vs" in (alert.reason or "")  # "... in the last 6 h vs ..."
    story_ids = {c.post.key for c in story}
    assert {e.post_id for e in alert.evidence} & story_ids
    assert all(e.created_at >= alert.window_start for e in alert.evidence)
    one_scale = run(engine(scales=(1,)), posts)
    assert not [a for a in one_scale if "zephyr" in a.terms]


def test_a_fast_burst_fires_at_the_shortest_scale_once() -> None:
    """Three posts in four minutes fire at the 10-minute scale; the longer scales, which see
    the same posts, add no second alert."""
    base = flat_stream(24 * 8, 5, 5, 4)
    onset = T0 + timedelta(days=7, hours=3)
    story = slow_story(onset, 3, timedelta(minutes=2))
    alerts = run(engine(), sorted(base + story, key=lambda c: c.post.created_at))
    about = [a for a in opened(alerts) if "zephyr" in a.terms]
    assert len(about) == 1
    assert about[0].window_seconds == 600


def test_a_post_far_behind_the_detectors_clock_is_too_late_not_counted() -> None:
    eng = engine(max_lateness_seconds=1800)  # 6 buckets of 5 min
    run(eng, flat_stream(3, 120, 4, 7))
    now = eng.bucket * 300  # the start of the current bucket
    at = datetime.fromtimestamp(now - 6 * 300, UTC)  # 6 buckets behind: still counted
    too_old = datetime.fromtimestamp(now - 6 * 300 - 1, UTC)  # in the 7th
    cells = [sc.sketch.cur.copy() for sc in eng.scales]
    assert eng.observe_many([cp(too_old, "zephyr outage", 90_000)]) == []
    assert eng.too_late == 1 and eng.repeats == 0
    assert all((sc.sketch.cur == c).all() for sc, c in zip(eng.scales, cells, strict=True))
    eng.observe_many([cp(at, "zephyr outage", 90_001)])
    assert eng.too_late == 1  # counted, in the current bucket
    assert any((sc.sketch.cur != c).any() for sc, c in zip(eng.scales, cells, strict=True))
    # an older file replayed after a newer one: every post too late, none silently merged
    older = flat_stream(1, 120, 4, 8, start=50_000)
    assert eng.observe_many(older) == [] and eng.too_late == 1 + len(older)
    # a checkpoint from before bounded lateness has no count yet
    state = eng.__getstate__()
    del state["too_late"]
    restored = BurstEngine.__new__(BurstEngine)
    restored.__setstate__(state)
    assert restored.too_late == 0


@given(
    st.lists(st.sampled_from(VOCAB[:12]), max_size=8, unique=True),
    st.lists(st.sampled_from(VOCAB[:16]), max_size=30),
    st.lists(st.integers(0, 3), min_size=12, max_size=12),
)
def test_compiled_touch_candidates_is_the_reference(
    held: list[str], names: list[str], sizes: list[int]
) -> None:
    """``_detectcore.touch_candidates`` leaves the candidates exactly as
    ``detector.touch_candidates`` does: the same order, the same posts (by identity)."""
    posts = [PostRef(f"x:{i}", "x", float(i), "", None, None, f"x:{i}") for i in range(4)]
    ref = PostRef("x:new", "x", 9.0, "", None, None, "x:new")

    def fresh() -> OrderedDict[str, deque[PostRef]]:
        return OrderedDict(
            (name, deque(posts[: sizes[i]], maxlen=2)) for i, name in enumerate(held)
        )

    want, got = fresh(), fresh()
    touch_candidates(want, names, ref)
    _detectcore.touch_candidates(got, names, ref)
    assert list(got) == list(want)
    assert [[id(r) for r in q] for q in got.values()] == [[id(r) for r in q] for q in want.values()]
