"""Event-time burst detection over classified posts. Pure logic: no Faust, no I/O.

For every post, in event-time order:

1. **Authenticity.** The post's near-duplicate cluster (MinHash/LSH over a sliding window)
   and, per item, whether its author was already counted on that item recently. A copy
   or a repeat counts 0: one account or a copy-paste campaign cannot make a burst alone.
   On a link aggregator (``copies_count_on``) a copy is another reader's submission of
   the same headline, and counts.
2. **Emerging items without a list** (unigrams, bigrams, hashtags, domains, entities) are
   counted in a fixed-memory hashed sketch (:mod:`streams.sketch`), **tracked keys**
   (each dossier, claim, and claim x stance class) in exact cells, each against its own
   baseline: the windowed count (previous + current bucket) vs. its bias-corrected EWMA
   and EWM variance.
3. **Significance**, honest for few events: a key fires when its independent count is at
   least ``min_count``, its SigniTrend z = (x - E) / (sqrt(Var) + beta) is at least
   ``min_z`` (overdispersion) *and* the tail -log10 P(X >= x | E) is at least
   ``min_score`` (small counts; negative binomial: the Poisson predictive after the
   baseline's own history), with E floored (a never-seen item is not infinitely
   surprising; the floor grows with the stream's own rate).
4. Bursts go to the :class:`~streams.alertbook.AlertBook`: merged into one evolving alert
   per event, updated, resolved, cooled down.

The strings behind hashed cells are recovered from a bounded LRU of candidate items
(those with at least ``candidate_min`` in their window and z >= ``hot_z``), which also
holds their recent posts for evidence. Time only moves with the posts' own timestamps,
so a replay at any speed gives the same alerts; the whole state pickles for checkpoints.
"""

from __future__ import annotations

import math
import pickle
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import accumulate, chain, compress
from typing import Any

import numpy as np
import numpy.typing as npt

from models.text import stop_words_for
from seismo.contracts import Alert, ClassifiedPost, SignalKind
from streams import _detectcore, _textcore, core, features
from streams.alertbook import AlertBook, Burst, PostRef
from streams.authenticity import AuthorRepeats, NearDuplicates
from streams.params import SHAPE_SETTINGS
from streams.params import DetectorParams as DetectorParams
from streams.seen import SeenPosts
from streams.sketch import I32, I64, Estimate, KeyedRates, RateSketch, Run, ScaleStack

# the newest posts (of the longest window) kept to recover a new candidate's posts: the search
# stays cheap and the memory bounded however busy the stream
_RECENT_POSTS = 2000


# of a checkpoint's layout (a rate sketch per time scale, their cells in one array, each
# cell's baseline made of the buckets that have left its window; stories, each with the
# burst keys its posts hold). Layouts 3-5 are read and brought to it: their baselines hold
# the previous bucket too, which is taken out of them (``RateSketch.take_back_previous``);
# layout 4's stories lack the keys their posts hold (counted when read), and layout 3's
# sketches each have their own cells (put into one array)
STATE_VERSION = 6
_READABLE_VERSIONS = (3, 4, 5, STATE_VERSION)


class IncompatibleCheckpoint(ValueError):
    """A checkpoint whose layout this detector cannot read."""


def _window_nb(expected: float, buckets: float) -> tuple[float, float, float]:
    """The window's negative binomial (see :func:`predictive_score`): its shape r, the
    log of its pmf's constant factor, and log q (q: the chance of each count)."""
    r = max(expected, 1e-9) / 2.0 * buckets
    return (
        r,
        r * math.log(buckets / (buckets + 2.0)) - math.lgamma(r),
        math.log(2.0 / (buckets + 2.0)),
    )


def _log_pmf(i: int, r: float, base: float, log_q: float) -> float:
    return base + math.lgamma(i + r) - math.lgamma(i + 1) + i * log_q


@lru_cache(maxsize=8192)
def _score_bound(observed: int, expected: float, buckets: float) -> float:
    """An upper bound of :func:`predictive_score`: P(X >= x) >= P(X = x), so
    -log10 P(X >= x) <= -log10 P(X = x). (Remembered, as the score is.)"""
    if observed <= 0:
        return 0.0
    return -_log_pmf(observed, *_window_nb(expected, buckets)) / math.log(10)


@lru_cache(maxsize=8192)
def predictive_score(observed: int, expected: float, buckets: float) -> float:
    """-log10 P(X >= observed) when the window's mean ``expected`` was learnt from
    ``buckets`` buckets of history (the window being two of them): X is negative binomial,
    the Poisson whose rate is Gamma-distributed after that history (shape: the counts it
    saw, ``expected / 2 * buckets``; rate: ``buckets``), the posterior predictive of a
    Poisson count. A baseline from a dozen buckets is itself uncertain, and its tail is
    heavier; from thousands it is the Poisson(``expected``) tail. 0 when observed <= 0.
    (Remembered: the same small counts over the same floored expectation recur.)"""
    if observed <= 0:
        return 0.0
    nb = _window_nb(expected, buckets)
    mean = max(expected, 1e-9)
    logs = []
    i = observed
    while True:  # sum the upper tail in log space (stable where 1 - cdf is not)
        lp = _log_pmf(i, *nb)
        logs.append(lp)
        if (i > mean and lp < logs[0] - 40) or i - observed > 10_000:
            break
        i += 1
    top = max(logs)
    total = 0.0  # (in order: what sum() gives floats on Python 3.11)
    for x in logs:
        total += math.exp(x - top)
    log_tail = top + math.log(total)
    return max(0.0, -log_tail / math.log(10))


def tracked_keys(cp: ClassifiedPost) -> list[tuple[str, SignalKind, str, str | None, str | None]]:
    """(key, kind, label, claim, dossier) of every tracked key the post counts toward."""
    out: list[tuple[str, SignalKind, str, str | None, str | None]] = [
        (f"dossier:{d}", "dossier", d, None, d) for d in cp.dossiers
    ]
    for hit in cp.claims:
        out.append((f"claim:{hit.claim}", "claim", hit.claim, hit.claim, hit.dossier))
        out.append(
            (
                f"claim:{hit.claim}:stance:{hit.stance}",
                "stance",
                f"{hit.claim} ({hit.stance})",
                hit.claim,
                hit.dossier,
            )
        )
    return out


def touch_candidates(
    cands: OrderedDict[str, deque[PostRef]], names: list[str], ref: PostRef
) -> None:
    """Each candidate among ``names``, in order, becomes the most recently used (the last
    to be evicted) and gets ``ref`` as its newest post, once however often its name repeats.
    The compiled twin is ``streams._detectcore.touch_candidates``."""
    for name in names:
        held = cands.get(name)
        if held is not None:
            cands.move_to_end(name)
            if not held or held[-1] is not ref:
                held.append(ref)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BurstEngine:
    """All detector state for one ordered stream (one partition)."""

    def __init__(self, params: DetectorParams, clock: Callable[[], datetime] = _utcnow) -> None:
        p = self.p = params
        if not p.scales or p.scales[0] != 1 or list(p.scales) != sorted(set(p.scales)):
            raise ValueError("scales must start at 1 and increase")
        self.scales = [_Scale(p, m) for m in p.scales]
        # the scales' hashed cells side by side (sketch.ScaleStack)
        self.stack = ScaleStack([sc.sketch for sc in self.scales], fresh=True)
        self.dups = NearDuplicates(window_seconds=6 * 3600)
        self.authors = AuthorRepeats()
        self.book = AlertBook(p.book(), clock)
        self.seen = SeenPosts(p.seen_posts)
        self.repeats = 0  # posts skipped as already counted
        self.too_late = 0  # posts not counted: older than max_lateness_seconds behind
        self.candidates: OrderedDict[str, deque[PostRef]] = OrderedDict()
        self.recent: deque[PostRef] = deque()
        self.start: float | None = None
        self.bucket = 0  # the finest scale's bucket
        self.offset = -1  # last source offset applied (set by the caller)
        self._ticked = -1

    # -- persistence -------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["book"] = dict(self.book.__dict__, clock=None)
        state["state_version"] = STATE_VERSION
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.pop("state_version", None)
        if version not in _READABLE_VERSIONS:
            raise IncompatibleCheckpoint("written by another version of the detector")
        book_state = state.pop("book")
        state.setdefault("too_late", 0)  # a checkpoint from before bounded lateness
        self.__dict__.update(state)
        self.book = AlertBook.__new__(AlertBook)
        self.book.__dict__.update(book_state)
        self.book.clock = _utcnow
        if "stack" not in state:  # (layout 3: the sketches' cells go into one array)
            self.stack = ScaleStack([sc.sketch for sc in self.scales])
        if version < 6:  # (layouts 3-5: the previous bucket leaves the baselines)
            for sc in self.scales:
                sc.sketch.take_back_previous()
                sc.keyed.take_back_previous()

    def use_settings(self, params: DetectorParams) -> None:
        """Go on with ``params`` instead of the settings this detector was saved with: a
        restored checkpoint follows the settings of the worker that restores it. Raises
        :class:`IncompatibleCheckpoint` when a setting its state is shaped by differs
        (``SHAPE_SETTINGS``: the detector must then start empty)."""
        saved = self.p
        differ = [
            f"{name} {getattr(saved, name, None)!r} (now {getattr(params, name)!r})"
            for name in SHAPE_SETTINGS
            if getattr(saved, name, None) != getattr(params, name)
        ]
        if differ:
            raise IncompatibleCheckpoint("shaped by other settings: " + ", ".join(differ))
        self.p = params
        for sc in self.scales:
            sc.configure(params)
        self.book.use(params.book())
        self.seen.resize(params.seen_posts)
        while len(self.candidates) > params.max_candidates:
            self.candidates.popitem(last=False)

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        self.book.clock = clock

    def dumps(self) -> bytes:
        return zlib.compress(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL), 1)

    @staticmethod
    def loads(data: bytes) -> BurstEngine:
        engine = pickle.loads(zlib.decompress(data))
        if not isinstance(engine, BurstEngine):
            raise TypeError("not a BurstEngine checkpoint")
        return engine

    @property
    def memory_bytes(self) -> int:
        """The fixed part: the sketch, the keyed cells and the author array."""
        cells = sum(sc.sketch.nbytes + sc.keyed.nbytes for sc in self.scales)
        return cells + int(self.authors.last.nbytes)

    @property
    def watched_seconds(self) -> float:
        """Event time watched since the first post, to the start of the current bucket (0
        before any post)."""
        if self.start is None:
            return 0.0
        return max(0.0, self.bucket * self.p.bucket_seconds - self.start)

    @property
    def named_keys(self) -> int:
        """Burst keys held by name: tracked keys with exact cells plus emerging candidates."""
        return len(self.scales[0].keyed.slots) + len(self.candidates)

    # -- detection ---------------------------------------------------------------------
    def observe(self, cp: ClassifiedPost) -> list[Alert]:
        """Count one classified post; return the alert versions it causes (often none)."""
        return self.observe_many((cp,))

    def observe_many(self, cps: Iterable[ClassifiedPost]) -> list[Alert]:
        """:meth:`observe` each post in order: the same alerts and the same state, but the
        posts are counted together (a few vectorised calls for the whole batch, however
        many buckets it spans, instead of a few per post).

        A post whose key is among the last ``seen_posts`` counted is skipped (``repeats``):
        this is where a post sent twice is counted once (a replay re-run, a connector
        resending, ingest re-emitting after a crash; ingest keeps no state). A post more than
        ``max_lateness_seconds`` behind the current bucket is not counted (``too_late``, or
        ``repeats`` if its key is still remembered); a later one counts in the current bucket.
        So a copy is never counted twice while the keys of every post within
        ``max_lateness_seconds`` + ``bucket_seconds`` of event time are remembered: fewer
        than ``seen_posts`` posts a partition in that span (see ``streams/seen.py``).
        """
        posts: list[_Prepared] = []
        runs: list[list[Run]] = [[] for _ in self.scales]  # per scale, per bucket of it
        size = self.p.bucket_seconds
        limit = self.p.max_items_per_post
        late_buckets = self.p.max_lateness_seconds // size
        new_key = self.seen.add
        for cp in cps:
            post = cp.post
            key = post.key
            ts = post.created_at.timestamp()
            bucket = int(ts // size)
            if self.start is not None and bucket < self.bucket - late_buckets:
                if key in self.seen:  # re-sent after a crash: a repeat, not a late post
                    self.repeats += 1
                else:
                    self.too_late += 1
                continue
            if not new_key(key):
                self.repeats += 1
                continue
            if self.start is None:
                self.start = ts
                self.bucket = bucket
                for sc in self.scales:
                    sc.bucket = bucket // sc.scale
            if bucket > self.bucket:  # (a late post counts in the current bucket)
                for sc, sc_runs in zip(self.scales, runs, strict=True):
                    if bucket // sc.scale > sc.bucket:
                        sc.close_run(len(posts), sc_runs, self.start)  # the closing bucket's
                        sc.advance(bucket // sc.scale)
                self.bucket = bucket
            posts.append(_Prepared(cp, key, ts, self.bucket, limit))
        for sc, sc_runs in zip(self.scales, runs, strict=True):
            sc.close_run(len(posts), sc_runs, self.start or 0.0)
        return self._count(posts, runs) if posts else []

    def _count(self, posts: list[_Prepared], runs: list[list[Run]]) -> list[Alert]:
        """Posts of one or more buckets (``runs``), in order: count them, then test and alert
        per post."""
        dups = self.dups
        keys = dups.post_keys([q.content for q in posts])
        clusters = dups.join_many([q.key for q in posts], keys, [q.ts for q in posts])
        copies = self.p.copies_count_on  # (there a copy is another reader's submission:
        for q, cluster in zip(posts, clusters, strict=True):  # its own voice)
            q.cluster = None if q.source in copies else cluster
        # per (author, item), in post order; a post's items, then its tracked keys
        items = [q.items for q in posts]
        names = [q.key_names for q in posts]
        lengths = list(map(len, items))
        multi = len(posts) > 1
        post_bucket: int | I32 = posts[0].bucket  # the posts' finest bucket, or each post's
        if posts[-1].bucket != posts[0].bucket:
            post_bucket = np.array([q.bucket for q in posts], dtype=np.int32)
        post_of: I64 | None
        key_post: I64 | None
        entry_post: I64 | None  # each counted name's post
        unit: I64 | None
        if any(names):  # a post's items and its keys are two units: 2k and 2k + 1
            authors = [q.author for q in posts]
            post_of, key_post = _numbered(lengths), _numbered(list(map(len, names)))
            unit = np.concatenate((2 * post_of, 2 * key_post + 1))
            units = list(zip(authors, items, strict=True)) + list(zip(authors, names, strict=True))
            entry_post = unit >> 1
        else:  # (no keys: the units are the posts, in order)
            post_of = key_post = entry_post = _numbered(lengths) if multi else None
            unit = None
            units = [(q.author, q.items) for q in posts]
        name_bucket = post_bucket  # each counted name's (or one for all)
        if not isinstance(post_bucket, int) and entry_post is not None:
            name_bucket = post_bucket[entry_post]
        fresh = self.authors.fresh_many(units, name_bucket, unit)
        if any(q.cluster is not None for q in posts):  # a copy counts 0
            if entry_post is None:  # (one post)
                fresh[:] = False
            else:
                fresh &= np.array([q.cluster is None for q in posts])[entry_post]
        split = sum(lengths)
        start = self.start
        assert start is not None
        flags = []
        for g, group, post, w in (
            (0, items, post_of, fresh[:split]),
            (1, names, key_post, fresh[split:]),
        ):
            flat = list(chain.from_iterable(group))
            if not flat:
                flags.append(_Flags.empty())
                continue
            ends = list(accumulate(map(len, group)))  # (a run ends after its last post's items)
            weights = w.astype(np.float32)
            item_runs = [[Run(ends[r.end - 1], *r[1:]) for r in sc_runs] for sc_runs in runs]
            if g == 0:  # the hashed items: every scale's cells in one pass
                idx = self.scales[0].sketch.locate(flat)
                per_scale = self.stack.observe_runs(
                    idx, weights, post if multi else None, item_runs
                )
            else:
                per_scale = [
                    sc.keyed.observe_runs(
                        sc.keyed.locate(flat), weights, post if multi else None, sc_runs
                    )
                    for sc, sc_runs in zip(self.scales, item_runs, strict=True)
                ]
            warm = [_warm(posts, post, start + sc.warmup) for sc in self.scales]
            flags.append(_Flags.of(per_scale, warm, self.p))
        return self._test(posts, flags)

    def _test(self, posts: list[_Prepared], flags: list[_Flags]) -> list[Alert]:
        p = self.p
        assert self.start is not None
        out: list[Alert] = []
        book, cands, recent = self.book, self.candidates, self.recent
        warm_from = self.start + p.warmup_seconds
        history = 2 * p.bucket_seconds * p.scales[-1]  # the longest window
        f0, f1 = flags
        # (compiled: every post runs it over all its names)
        touch = touch_candidates if core.PURE_PYTHON else _detectcore.touch_candidates
        at, admits, fires = [0, 0], [0, 0], [0, 0]
        for q in posts:
            if q.bucket != self._ticked:  # alerts resolve on bucket boundaries
                out += book.tick(q.ts)
                self._ticked = q.bucket
            ts = q.ts
            ref = q.ref()
            recent.append(ref)
            horizon = ts - history
            while recent and (recent[0].ts < horizon or len(recent) > _RECENT_POSTS):
                recent.popleft()
            bursts: list[Burst] = []
            for g, f, group in ((0, f0, q.items), (1, f1, q.key_names)):
                if not group:
                    continue
                a = at[g]
                b = at[g] = a + len(group)
                k = admits[g]
                admit_at = f.admit_at
                if k < len(admit_at) and admit_at[k] < b:  # (the long way: rare)
                    while k < len(admit_at) and admit_at[k] < b:
                        k += 1
                    admits[g] = k
                    self._candidates(group, f.reach[a:b].tolist(), ref)
                else:  # no name of the post is admitted: only its candidates can change
                    touch(cands, group, ref)
                k = fires[g]
                fire_at = f.fire_at
                if k < len(fire_at) and fire_at[k] < b:
                    fire = []
                    while k < len(fire_at) and fire_at[k] < b:
                        fire.append(fire_at[k])
                        k += 1
                    fires[g] = k
                    if ts >= warm_from:
                        keys = None if g == 0 else q.keys
                        bursts += self._bursts(f, fire, a, group, keys, ts)
            if bursts or not book.key_alert.keys().isdisjoint(ref.ordered):
                # (else the book has nothing to do with this post)
                hot = set(compress(q.items, f0.hot[at[0] - len(q.items) : at[0]]))
                hot.update(compress(q.key_names, f1.hot[at[1] - len(q.key_names) : at[1]]))
                out += book.on_post(ref, hot, bursts)
        return out

    def _bursts(
        self,
        f: _Flags,
        fire: list[int],
        a: int,
        group: list[str],
        keys: list[tuple[str, SignalKind, str, str | None, str | None]] | None,
        ts: float,
    ) -> list[Burst]:
        """The names at ``fire`` (batch positions; the post's start at ``a``) whose tail
        score is high enough at some warm scale, as bursts: each at the scale where its score
        is furthest above that scale's threshold."""
        out = []
        for i in fire:
            best: tuple[float, _Scale, float, float, float] | None = None
            for sc, est, may in zip(self.scales, f.est, f.fires, strict=True):
                if not may[i]:  # (not warm there, or count or z too low)
                    continue
                count, expected = float(est.count[i]), float(est.expected[i])
                seen = sc.history(ts, self.start)
                if _score_bound(int(count), expected, seen) < sc.min_score:
                    continue  # (cheap: most names that may fire are not rare enough)
                score = predictive_score(int(count), expected, seen)
                margin = score - sc.min_score
                if margin >= 0 and (best is None or margin > best[0]):
                    best = (margin, sc, count, expected, score)
            if best is None:
                continue
            _, sc, count, expected, score = best
            name = group[i - a]
            key = (name, "term", name, None, None) if keys is None else keys[i - a]
            z = float(f.est[self.scales.index(sc)].z[i])
            out.append(self._burst(key, ts, sc, count, expected, z, score))
        return out

    def _candidates(self, group: list[str], reach: list[int], ref: PostRef) -> None:
        """Each name of a post in order: a candidate gets the post as its newest evidence,
        a name with enough count becomes a candidate (``reach``: the window, in seconds,
        of the longest scale that admits it; 0 = none)."""
        cands = self.candidates
        for name, window in zip(group, reach, strict=True):
            if name in cands:
                touch_candidates(cands, [name], ref)
            elif window:
                self._admit(name, ref.ts - window)

    def _admit(self, name: str, since: float) -> None:
        """A new candidate: its posts since ``since`` are recovered from the post history."""
        found = []
        for r in reversed(self.recent):  # (newest first)
            if r.ts < since:
                break
            if name in r.items:
                found.append(r)
        self.candidates[name] = deque(reversed(found), maxlen=64)
        if len(self.candidates) > self.p.max_candidates:
            self.candidates.popitem(last=False)

    def _burst(
        self,
        tracked: tuple[str, SignalKind, str, str | None, str | None],
        ts: float,
        sc: _Scale,
        count: float,
        expected: float,
        z: float,
        score: float,
    ) -> Burst:
        """A burst at scale ``sc``: its window is the scale's previous and current bucket, and
        its evidence the candidate's posts in that window."""
        window_start = (int(ts // sc.seconds) - 1) * sc.seconds
        key, kind, label, claim, dossier = tracked
        posts = [r for r in self.candidates.get(key, ()) if r.ts >= window_start]
        return Burst(
            key=key,
            kind=kind,
            label=label,
            ts=ts,
            window_start=window_start,
            window_seconds=2 * sc.seconds,
            count=count,
            expected=expected,
            z=z,
            score=score,
            posts=posts,
            claim=claim,
            dossier=dossier,
        )


class _Prepared:
    """One post's items, tracked keys and authenticity, before counting."""

    __slots__ = (
        "author",
        "bucket",
        "cluster",
        "content",
        "cp",
        "items",
        "key",
        "key_names",
        "keys",
        "source",
        "ts",
    )

    def __init__(self, cp: ClassifiedPost, key: str, ts: float, bucket: int, limit: int) -> None:
        post = cp.post
        self.cp = cp
        self.key = key  # (``post.key``, formatted once)
        self.ts = ts
        self.bucket = bucket  # the bucket it is counted in (a late post: the current one)
        # the items and content words of its topic text, without its language's stop words:
        # the compiled twin, or its reference
        analyse = features.analyse if core.PURE_PYTHON else _textcore.analyse
        self.items, self.content = analyse(
            features.topic_text(post.text, post.source), limit, stop_words_for(post.lang)
        )
        if cp.dossiers or cp.claims:
            self.keys = tracked_keys(cp)
            self.key_names = [k[0] for k in self.keys]
        else:
            self.keys, self.key_names = [], []
        self.author = post.author or key
        self.source = post.source
        self.cluster: str | None = None

    def ref(self) -> PostRef:
        cp = self.cp
        post, names, claims, key = cp.post, self.key_names, cp.claims, self.key
        return PostRef(
            key,
            post.source,
            self.ts,
            post.text[:280],
            post.author,
            post.url,
            self.cluster or key,
            tuple(self.items + names) if names else tuple(self.items),
            tuple(cp.dossiers),
            tuple([h.claim for h in claims]) if claims else (),
            claims[0].stance if claims else None,
        )


def _warm(posts: list[_Prepared], post: I64 | None, since: float) -> bool | npt.NDArray[np.bool_]:
    """Whether each counted name's post (``post``: its index, None = one post) is at or after
    ``since``: True or False when all are alike."""
    if posts[0].ts >= since:
        return True
    if posts[-1].ts < since or post is None:
        return False
    warm: npt.NDArray[np.bool_] = np.array([q.ts >= since for q in posts])[post]
    return warm


def _numbered(lengths: list[int]) -> I64:
    """Post ``k`` repeated ``lengths[k]`` times."""
    out: I64 = np.repeat(np.arange(len(lengths)), lengths)
    return out


@dataclass(frozen=True)
class _Flags:
    """Per counted name of a batch: its estimate at each scale and flags (numpy, read at a
    few places), and the positions where something may happen (lists: the per-post loop
    walks them). A name is hot, admitted or may fire when it is at any scale."""

    est: list[Estimate]  # one per scale
    fires: list[npt.NDArray[np.bool_]]  # per scale: warm there, count and z high enough
    hot: npt.NDArray[np.bool_]
    reach: npt.NDArray[np.int64]  # where admitted: the window of the longest scale admitting
    admit_at: list[int]  # positions where ``admit`` is set, and where the name may fire
    fire_at: list[int]

    @staticmethod
    def of(
        per_scale: list[Estimate], warm: list[bool | npt.NDArray[np.bool_]], p: DetectorParams
    ) -> _Flags:
        """``warm``: per scale, whether each name's post is past that scale's warm-up. A scale
        still learning its baselines fires nothing and flags nothing else beyond the finest
        one's rules (the finest scale admits and keeps alerts hot from the start).

        ``hot`` (what keeps an alert open) looks at the scales whose window fits in
        ``quiet_seconds`` only: a day-long window stays high for a day after its posts
        stopped, which says nothing about whether the story is still moving."""
        first = per_scale[0]
        hot = first.z >= p.hot_z
        fire = (first.count >= p.min_count) & (first.z >= p.min_z)
        admit = (first.count >= p.candidate_min) & hot
        reach = np.where(admit, 2 * p.bucket_seconds, 0)
        fires = [fire & warm[0]]
        for m, est, ok in zip(p.scales[1:], per_scale[1:], warm[1:], strict=True):
            if ok is False:
                fires.append(np.zeros(len(est.count), np.bool_))
                continue
            fi = (est.count >= p.min_count) & (est.z >= p.min_z) & ok
            fires.append(fi)
            # at a longer scale a name is a candidate when it may fire there: most words of
            # a busy stream are mildly elevated over a day, and each candidate costs a scan
            admit, fire = admit | fi, fire | fi
            reach = np.where(fi, 2 * m * p.bucket_seconds, reach)
            if 2 * m * p.bucket_seconds <= p.quiet_seconds:
                hot = hot | ((est.z >= p.hot_z) & ok)
        return _Flags(
            per_scale, fires, hot, reach, admit.nonzero()[0].tolist(), fire.nonzero()[0].tolist()
        )

    @staticmethod
    def empty() -> _Flags:
        return _NO_FLAGS


class _Scale:
    """One time scale's state: rate cells for the hashed items and the tracked keys, each
    against its own EWMA baseline in buckets of ``scale`` finest buckets, the current
    bucket, and the stream's own rate at that scale (for the expected-count floor)."""

    def __init__(self, p: DetectorParams, scale: int) -> None:
        self.scale = scale
        self.seconds = scale * p.bucket_seconds
        self.alpha = p.scale_alpha(scale)
        self.configure(p)
        self.sketch = RateSketch(p.sketch_width, p.sketch_depth, self.alpha, p.beta)
        self.keyed = KeyedRates(p.max_tracked_keys, self.alpha, p.beta)
        self.bucket = 0
        self.stream_counts = [0, 0]  # posts in its previous and current bucket
        self.stream_mean = 0.0

    def configure(self, p: DetectorParams) -> None:
        """The scale's thresholds after ``p`` (none of them shapes its state)."""
        self.floor = p.floor * self.scale  # (an expected count: it grows with the window)
        self.floor_rate = p.floor_rate
        self.min_score = p.score_threshold(self.scale)
        self.warmup = p.scale_warmup(self.scale)

    def advance(self, bucket: int) -> None:
        if bucket <= self.bucket:
            return
        a = self.alpha
        for step in range(min(bucket - self.bucket, 512)):
            x = self.stream_counts[1] if step == 0 else 0
            self.stream_mean += a * (x - self.stream_mean)
        self.stream_counts = [self.stream_counts[1] if bucket == self.bucket + 1 else 0, 0]
        self.bucket = bucket

    def history(self, ts: float, start: float | None) -> float:
        """How many buckets a baseline read at ``ts`` was learnt from: those that have left
        the window since ``start``, at most the EWMA's effective memory, (2 - a) / a
        buckets (the count of equally weighted buckets whose mean is as variable)."""
        taken = self._taken(int(ts // self.seconds), start or ts)
        return min(float(taken), (2.0 - self.alpha) / self.alpha)

    def correction(self, start: float) -> float:
        """The EWMA's bias correction after the buckets it has taken since ``start``."""
        return float(1.0 - (1.0 - self.alpha) ** self._taken(self.bucket, start))

    def _taken(self, bucket: int, start: float) -> int:
        """The buckets a baseline has taken by ``bucket`` since ``start`` (at least 1): a
        bucket joins it when it leaves the window, so all but ``bucket`` and the one
        before."""
        return max(1, bucket - int(start // self.seconds) - 1)

    def close_run(self, end: int, runs: list[Run], start: float) -> None:
        """The posts since the last run (up to ``end``) are the current bucket's: note them
        as its run, with the bucket's bias correction and expected-count floor."""
        first = runs[-1].end if runs else 0
        if end == first:
            return
        self.stream_counts[1] += end - first
        corr = self.correction(start)
        stream_rate = 2.0 * self.stream_mean / corr
        runs.append(Run(end, self.bucket, corr, max(self.floor, self.floor_rate * stream_rate)))


_NONE = np.zeros(0, np.float32)
_NONE.flags.writeable = False
_NO_FLAGS = _Flags([], [], _NONE > 0, np.zeros(0, np.int64), [], [])
