"""Alert lifecycle: one evolving alert per story (real-world event), with its evidence
packet. Pure logic.

A burst of any key (an emerging term, a tracked claim, a dossier, a stance class) either
joins a story -- the one already holding that key, the one about the same claim, the one
whose posts it mostly shares or whose links its posts carry, or the one whose words it
uses (cosine of term counts, a little more when it shares authors), among the open
stories and those resolved less than ``story_horizon_seconds`` ago (which reopen) -- or
opens a new story. A story is updated (a new ``version`` of the same ``id``) when it gains
a key (at once: a burst is never hidden), a source, a stance shift, its severity rises, or
it doubles in size; it is resolved when none of its keys has been elevated for
``quiet_seconds`` of event time, after which its keys cool down. The id is derived from
the opening key and bucket, so replaying the same posts gives the same ids and versions.

Every version goes to ``alerts.v1``; the sinks get at most one per ``story_update_seconds``
of event time, except an opening, a reopening, a severity rise, a new tracked claim, a
stance shift and the resolution (:class:`streams.stories.Throttle`). The decision is a
field of the version itself (``deliver``), so a replay after a crash decides the same.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from typing import Any, Generic, NamedTuple, Self, TypeVar, overload

from models.text import _CJK
from seismo.contracts import Alert, CountPoint, Evidence, Link, Severity, SignalKind, Stance
from streams import _storycore, core
from streams.features import label_words
from streams.params import BookParams as BookParams
from streams.stories import (
    Sent,
    Throttle,
    centrality_of_counts,
    cosine,
    domain_of,
    headline,
    links_in,
    most_common,
    prune,
)

SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
T = TypeVar("T")
_KIND_RANK = {"claim": 0, "stance": 1, "dossier": 2, "term": 3}


class _Once(Generic[T]):
    """A value computed from an instance at its first read and kept as the instance's
    attribute of the same name, where later reads find it (and a checkpoint pickles it):
    what ``functools.cached_property`` does, without the lock Python 3.11 takes at
    every first read (a post's items, terms and links are first read ~14,000 times per
    10,000 posts of a busy stream)."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> T | Self:
        if obj is None:
            return self
        value: T = self.func(obj)
        setattr(obj, self.name, value)  # (an instance attribute: found before this)
        return value


@dataclass
class PostRef:
    """What the detector keeps of a post (for evidence and corroboration): made once per
    post, never changed."""

    post_id: str
    source: str
    ts: float
    text: str
    author: str | None
    url: str | None
    cluster: str  # near-duplicate cluster: the id of the first post of its kind
    # its burst items, then its tracked keys (none without dossiers and claims), in the
    # post's order (iteration must not depend on string hashing, which differs between
    # processes)
    ordered: tuple[str, ...] = ()
    dossiers: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()
    stance: Stance | None = None

    @_Once
    def items(self) -> frozenset[str]:
        """The same items as a set (made when first asked: most posts never are)."""
        return frozenset(self.ordered)

    @_Once
    def terms(self) -> tuple[str, ...]:
        """Its items without the tracked keys (dossiers, claims), in order: all of them
        when it has neither (a burst item never starts as a tracked key does)."""
        if not self.dossiers and not self.claims:
            return self.ordered
        return tuple([i for i in self.ordered if not i.startswith(_TRACKED)])

    @_Once
    def links(self) -> tuple[str, ...]:
        """The URLs its text shares (:func:`~streams.stories.links_in`), found once: a post
        joins several stories and each asks."""
        return tuple(links_in(self.text, self.url))


@dataclass
class Burst:
    """One key found significant at one post."""

    key: str
    kind: SignalKind
    label: str
    ts: float
    count: float
    expected: float
    z: float
    score: float
    posts: list[PostRef]  # its evidence: the key's posts in its window
    window_start: float = 0.0  # the time-scale window it was found in
    window_seconds: int = 600
    claim: str | None = None
    dossier: str | None = None


def corroborated(b: Burst) -> bool:
    """Whether a burst's posts share more than its word: an item with none of the key's
    words in it (a second word, a phrase, a name, a hashtag; not a linked site) or a link,
    in two posts of different near-duplicate clusters (where copies count, each post is its
    own cluster).

    Across a stream's vocabulary, two posts that share one rare word within minutes are
    common ("Ask HN: Any recommended book for social entrepreneurs?" and "Miiverse archive
    recovers 17TB of social mirth"), and each such pair is as significant for its word as
    the first two posts of a real event. Posts about one event also share what the event
    is about ("Checkm8 - Bootrom exploit for many iOS devices" and "Near-universal (pre
    iPhone 11) iOS bootrom exploit"). Event detection from word bursts groups the words
    that burst together (TwitterMonitor: Mathioudakis & Koudas, SIGMOD 2010; EDCoW: Weng &
    Lee, ICWSM 2011); a single word in a handful of posts is no group yet."""
    words = set(label_words(b.key).split())
    # a Chinese, Japanese or Korean word of three characters or more is several overlapping
    # bigram items (東京都: 東京, 京都): an item sharing a character with the key is its word
    chars = {c for c in label_words(b.key) if _CJK.match(c)}
    first: dict[str, str] = {}  # an item or link -> the cluster of the first post with it
    for r in b.posts:
        for i in r.terms:
            if i.startswith("domain:") or not words.isdisjoint(label_words(i).split()):
                continue  # (a site links to many stories; the key's own words say no more)
            if chars and not chars.isdisjoint(i):
                continue
            if first.setdefault(i, r.cluster) != r.cluster:
                return True
        for u in r.links:
            if first.setdefault(u, r.cluster) != r.cluster:
                return True
    return False


class _Emitted(NamedTuple):
    """A story as its last emitted version stood (what the next version is compared with)."""

    severity: int  # index in SEVERITIES
    keys: int  # burst keys
    tracked: int  # tracked keys among them (claims, dossiers, stance classes)
    sources: int
    size: int  # independent posts
    ts: float  # event time


@dataclass
class _Open:
    id: str
    opened: Burst
    bucket: int
    version: int = 0
    keys: dict[str, Burst] = field(default_factory=dict)
    posts: OrderedDict[str, PostRef] = field(default_factory=OrderedDict)
    curve: Counter[int] = field(default_factory=Counter)
    source_first: dict[str, float] = field(default_factory=dict)
    last_hot: float = 0.0
    authors: set[str] = field(default_factory=set)
    clusters: set[str] = field(default_factory=set)
    independent: int = 0  # posts that are a new cluster by a new author
    total: int = 0  # posts attached (``posts`` keeps the newest only)
    emitted: _Emitted = field(default_factory=lambda: _Emitted(0, 0, 0, 0, 0, 0.0))
    last: Alert | None = None  # the version last emitted, as it was sent
    terms: Counter[str] = field(default_factory=Counter)  # its posts' items (the centroid)
    stances: Counter[str] = field(default_factory=Counter)  # of the posts it keeps
    best: Burst | None = None  # its strongest key's burst (the first of equals), kept up to date
    links: Counter[str] = field(default_factory=Counter)  # URLs its posts share
    sent: Sent | None = None  # the version last delivered to the sinks
    reopened: bool = False  # resolved, then joined again: the next version says so
    # per post it keeps (by id), how many of its burst keys the post holds: what its evidence
    # is ranked by, kept up to date as posts and keys join (keys never leave a story)
    held: dict[str, int] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        if type(self.emitted) is tuple:  # (a checkpoint from before its fields had names)
            self.emitted = _Emitted(*self.emitted)
        if "held" not in state:  # (a checkpoint of layout 3 or 4: counted once here)
            self.held = {r.post_id: _keys_held(self, r) for r in self.posts.values()}


def _span(seconds: int) -> str:
    """A window's length as a reader says it: ``10 min``, ``6 h``."""
    return f"{seconds // 3600:g} h" if seconds % 3600 == 0 else f"{seconds // 60:g} min"


@lru_cache(maxsize=8192)
def public_key(key: str) -> str:
    """A burst key as alerts name it (``term:tornado``, ``claim:x``, ``dossier:y``);
    remembered: a story names all its keys at every version."""
    return key if key.startswith(("dossier:", "claim:")) else f"term:{key}"


def alert_id(key: str, window_start: float) -> str:
    raw = f"{key}|{int(window_start)}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


class AlertBook:
    def __init__(self, params: BookParams, clock: Callable[[], datetime]) -> None:
        self.use(params)
        self.clock = clock
        self.open: dict[str, _Open] = {}
        self.key_alert: dict[str, str] = {}
        self.cooldown: dict[str, float] = {}
        self.dormant: OrderedDict[str, _Open] = OrderedDict()  # resolved, may reopen

    def use(self, params: BookParams) -> None:
        """Go on with ``params`` (none of them shapes the book's state)."""
        self.p = params
        self.throttle = Throttle(update_seconds=params.story_update_seconds)

    # -- events ------------------------------------------------------------------------
    def on_post(self, ref: PostRef, hot: set[str], bursts: Sequence[Burst] = ()) -> list[Alert]:
        """One post: the keys it made burst join or open alerts, the open alerts it belongs
        to grow (``hot`` = its keys still elevated); at most one new version per alert."""
        out: list[Alert] = []
        touched: dict[str, None] = {}
        for b in bursts:
            aid = self._join(b, out)
            if aid is not None:
                touched[aid] = None
        for key in ref.ordered:
            aid = self.key_alert.get(key)
            if aid is None:
                continue
            al = self.open[aid]
            self._add_post(al, ref)
            if key in hot:
                al.last_hot = max(al.last_hot, ref.ts)
            touched[aid] = None
        for aid in touched:
            if aid in self.open:  # (not evicted meanwhile)
                out += self._maybe_emit(self.open[aid], ref.ts)
        return out

    def _join(self, b: Burst, out: list[Alert]) -> str | None:
        """Put a burst into its alert (opening one if need be); evictions go to ``out``."""
        aid = self.key_alert.get(b.key) or self._merge_target(b)
        if aid is not None and aid in self.dormant:
            self._reopen(self.dormant.pop(aid))
        if aid is None:
            if self.cooldown.get(b.key, -math.inf) > b.ts:
                return None
            if b.kind == "term" and b.count < self.p.lone_word_posts and not corroborated(b):
                return None  # (a later post of the key fires again)
            bucket = int(b.ts // self.p.bucket_seconds)
            aid = alert_id(public_key(b.key), bucket * self.p.bucket_seconds)
            self.open[aid] = _Open(id=aid, opened=b, bucket=bucket, last_hot=b.ts)
            out += self._evict(b.ts, keep=aid)
        al = self.open[aid]
        held = al.keys.get(b.key)
        if held is None or b.score > held.score:
            _set_key(al, b.key, b)
        self.key_alert[b.key] = aid
        al.last_hot = max(al.last_hot, b.ts)
        for ref in b.posts:
            if ref.post_id not in al.posts:  # (most are: the burst's window overlaps)
                self._add_post(al, ref)
        return aid

    def _reopen(self, al: _Open) -> None:
        self.open[al.id] = al
        for key in al.keys:
            self.key_alert[key] = al.id
        al.reopened = True

    def tick(self, ts: float) -> list[Alert]:
        """Resolve the alerts that have been quiet for ``quiet_seconds`` before ``ts``;
        forget the resolved ones past the horizon."""
        quiet = [al for al in self.open.values() if ts - al.last_hot >= self.p.quiet_seconds]
        out = [self._resolve(al, al.last_hot + self.p.quiet_seconds) for al in quiet]
        out += self._merge_stories(ts)
        horizon = ts - self.p.story_horizon_seconds
        while self.dormant and next(iter(self.dormant.values())).last_hot < horizon:
            self.dormant.popitem(last=False)
        return out

    # -- internals ---------------------------------------------------------------------
    def _merge_target(self, b: Burst) -> str | None:
        """The story this burst is about: open, or resolved within the horizon."""
        horizon = b.ts - self.p.story_horizon_seconds
        pool = [*self.open.values(), *(d for d in self.dormant.values() if d.last_hot >= horizon)]
        if b.claim:
            for al in pool:
                if any(k.claim == b.claim for k in al.keys.values()):
                    return al.id
        for al in pool:
            if b.key in al.keys:  # (a resolved story's own key)
                return al.id
        # the story whose keys at least half of this burst's posts carry, or whose posts they
        # are (co-occurrence: a claim and its terms, a term and its bigram), or whose links
        # they share; else the one whose words they use
        n = max(len(b.posts), 1)
        similar = cosine if core.PURE_PYTHON else _storycore.cosine
        words: Counter[str] = Counter()
        for r in b.posts:
            words.update(i for i in r.ordered if not i.startswith(_TRACKED))
        urls = [set(r.links) for r in b.posts]
        authors = {r.author for r in b.posts}
        best, best_rank = None, (0.0, 0.0)
        for al in pool:
            keys = al.keys.keys()
            shared = sum(
                1 for r in b.posts if r.post_id in al.posts or not keys.isdisjoint(r.items)
            )
            share = shared / n
            linked = sum(1 for u in urls if u and not u.isdisjoint(al.links)) / n
            # or the burst's word is one of the story's own words (``moore`` in a tornado's)
            own = al.terms.get(b.key, 0)
            word = own / al.total if b.kind == "term" and own >= self.p.min_key_posts else 0.0
            overlap = max(share, linked, word / self.p.key_share * self.p.merge_overlap)
            sim = similar(words, al.terms) if words else 0.0
            if None not in authors and authors <= al.authors:
                sim += self.p.author_bonus
            if overlap < self.p.merge_overlap and sim < self.p.merge_similarity:
                continue
            rank = (overlap if overlap >= self.p.merge_overlap else 0.0, sim)
            if rank > best_rank:
                best, best_rank = al.id, rank
        return best

    def _merge_stories(self, ts: float) -> list[Alert]:
        """Two open stories that grew into one (their words alike: cosine at least
        ``merge_stories``): the younger's keys and posts join the older, and the younger
        resolves saying where it went (``merged_into``)."""
        out: list[Alert] = []
        stories = sorted(self.open.values(), key=lambda a: -a.last_hot)[: self.p.merge_scan]
        stories.sort(key=lambda a: (a.opened.ts, a.id))  # oldest first
        gone: set[str] = set()
        similar = cosine if core.PURE_PYTHON else _storycore.cosine
        for i, young in enumerate(stories):
            for old in stories[:i]:
                if old.id in gone or similar(young.terms, old.terms) < self.p.merge_stories:
                    continue
                for key, b in young.keys.items():
                    if key not in old.keys or b.score > old.keys[key].score:
                        _set_key(old, key, b)
                    self.key_alert[key] = old.id
                for ref in young.posts.values():
                    self._add_post(old, ref)
                old.last_hot = max(old.last_hot, young.last_hot)
                del self.open[young.id]
                gone.add(young.id)
                out.append(self._emit(young, ts, "resolved", merged_into=old.id))
                out += self._maybe_emit(old, ts)
                break
        return out

    def _add_post(self, al: _Open, ref: PostRef) -> None:
        if ref.post_id in al.posts:
            return
        al.posts[ref.post_id] = ref
        al.held[ref.post_id] = _keys_held(al, ref)
        if ref.stance:
            al.stances[ref.stance] += 1
        if len(al.posts) > self.p.max_alert_posts:
            _, gone = al.posts.popitem(last=False)
            del al.held[gone.post_id]
            if gone.stance:
                al.stances[gone.stance] -= 1
        al.total += 1
        author = ref.author or ref.post_id
        if ref.cluster not in al.clusters and author not in al.authors:
            al.independent += 1
        al.clusters.add(ref.cluster)
        al.authors.add(author)
        al.terms.update(ref.terms)
        prune(al.terms, self.p.story_terms)
        if ref.links:  # (most posts share none)
            al.links.update(ref.links)
            prune(al.links, self.p.story_links)
        al.curve[int(ref.ts // self.p.bucket_seconds)] += 1
        if len(al.curve) > self.p.curve_points:
            del al.curve[min(al.curve)]
        first = al.source_first.get(ref.source)
        if first is None or ref.ts < first:
            al.source_first[ref.source] = ref.ts

    def _evict(self, ts: float, keep: str) -> list[Alert]:
        out = []
        while len(self.open) > self.p.max_open:
            oldest = min((a for a in self.open.values() if a.id != keep), key=lambda a: a.last_hot)
            out.append(self._resolve(oldest, ts))
        return out

    def _resolve(self, al: _Open, ts: float) -> Alert:
        del self.open[al.id]
        self.dormant[al.id] = al
        if len(self.dormant) > self.p.max_dormant:
            self.dormant.popitem(last=False)
        for key in al.keys:
            self.key_alert.pop(key, None)
            self.cooldown[key] = ts + self.p.cooldown_seconds
        if len(self.cooldown) > 50_000:
            self.cooldown = {k: v for k, v in self.cooldown.items() if v > ts}
        return self._emit(al, ts, "resolved")

    def _maybe_emit(self, al: _Open, ts: float) -> list[Alert]:
        sev = SEVERITIES.index(self._severity(al))
        size = self._size(al)
        old = al.emitted
        if al.version == 0:
            return [self._emit(al, ts, "open")]
        last = al.last.stance_mix if al.last is not None else {}
        shift = self.throttle.shifts(last, _stances(al))
        if al.reopened or len(al.keys) > old.keys or shift:
            # a reopening, a new burst key (never hidden nor delayed) or a stance shift
            return [self._emit(al, ts, "update")]
        grown = (
            sev > old.severity
            or len(al.keys) > old.keys
            or len(al.source_first) > old.sources
            or size >= 2 * old.size
        )
        if not grown:
            return []
        # news that cannot wait: it got worse, or a tracked claim/dossier joined
        urgent = sev > old.severity or _tracked(al) > old.tracked
        if urgent or ts - old.ts >= self.p.update_gap_seconds:
            return [self._emit(al, ts, "update")]
        return []

    @staticmethod
    def _size(al: _Open) -> int:
        """Independent voices: posts that are a new near-duplicate cluster by a new author."""
        return al.independent

    def _severity(self, al: _Open) -> Severity:
        best = al.best
        assert best is not None
        size = self._size(al)
        points = 0
        points += (best.score >= 8) + (best.score >= 16)
        points += (size >= 10) + (size >= 40)
        points += (len(al.source_first) >= 2) + (len(al.source_first) >= 3)
        points += best.count >= 10 * max(best.expected, 0.1)  # speed: far above baseline
        if al.total >= 6 and size < 0.5 * al.total:
            points -= 1  # mostly copies or repeat authors
        return SEVERITIES[max(0, min(3, (points + 1) // 2))]

    def _emit(self, al: _Open, ts: float, status: str, merged_into: str | None = None) -> Alert:
        al.version += 1
        alert = al.last = self._build(al, ts, status)
        now = Sent(
            version=al.version,
            ts=ts,
            severity=SEVERITIES.index(alert.severity),
            posts=al.total,
            independent=self._size(al),
            sources=frozenset(al.source_first),
            links=frozenset(al.links),
            claims=frozenset(alert.claims),
            stances=tuple(sorted(alert.stance_mix.items())),
        )
        deliver, why, changes = self.throttle.decide(al.sent, now, status, al.reopened)
        al.reopened = False
        if deliver:
            al.sent = now
        alert = al.last = alert.model_copy(
            update={
                "deliver": deliver,
                "delivered_reason": why,
                "changes": changes,
                "merged_into": merged_into,
            }
        )
        al.emitted = _Emitted(
            severity=SEVERITIES.index(alert.severity),
            keys=len(al.keys),
            tracked=_tracked(al),
            sources=len(al.source_first),
            size=alert.independent_posts or 0,
            ts=ts,
        )
        return alert

    def current(self) -> list[Alert]:
        """The open alerts as they stand, at their last version (nothing is emitted):
        for a process that restores this book from a checkpoint (its gauges)."""
        return [al.last for al in self.open.values() if al.last is not None]

    def _build(self, al: _Open, ts: float, status: str) -> Alert:
        p = self.p
        keys = sorted(al.keys.values(), key=_SCORE, reverse=True)  # (equals: as they joined)
        best = keys[0]
        op = self._primary(al)
        posts = list(al.posts.values())
        post_terms = [r.terms for r in posts]  # (for its top terms and its headline)
        times = [r.ts for r in posts]
        size = self._size(al)
        # its posts' terms (not the tracked keys), in the order they first appear
        labels = [label_words(k.label) for k in keys if k.kind == "term"]
        terms = list(dict.fromkeys(labels))
        if len(terms) < p.top_terms:  # (else the keys' own words fill them: no need to count)
            item_counts = Counter(chain.from_iterable(post_terms))
            for item, _ in item_counts.most_common(3 * p.top_terms):
                if len(terms) >= p.top_terms:
                    break
                w = label_words(item)
                if w not in terms and not any(w in t.split() for t in terms):
                    terms.append(w)
        # by source and dossier (in order of first appearance), their claims, the oldest
        # post's time
        sources = Counter([r.source for r in posts])
        dossiers: Counter[str] = Counter()
        claimed = {k.claim for k in keys if k.claim}
        for r in posts:
            if r.dossiers:
                dossiers.update(r.dossiers)
            if r.claims:
                claimed.update(r.claims)
        first_seen = min(times, default=math.inf)
        claims = sorted(claimed)
        lead = min(al.source_first, key=lambda s: al.source_first[s])
        sev = self._severity(al)
        head = self._headline(al, posts, post_terms, times, terms, op)
        bs = p.bucket_seconds
        curve_from = min(al.curve)
        return Alert(
            id=al.id,
            version=al.version,
            status=status,  # type: ignore[arg-type]
            severity=sev,
            kind=op.kind,
            key=public_key(op.key),
            label=head,
            headline=head,
            terms=terms[: p.top_terms],
            dossier=op.dossier or (dossiers.most_common(1)[0][0] if dossiers else None),
            claim=op.claim or (claims[0] if claims else None),
            window_start=_dt(al.opened.window_start),
            window_seconds=al.opened.window_seconds,
            raised_at=_dt(ts),
            first_seen=_dt(first_seen),
            observed=int(best.count),
            expected=round(best.expected, 4),
            score=round(best.score, 3),
            sources=dict(sources),
            stance_mix=_stances(al),
            evidence=self._evidence(al, posts),
            detected_at=self.clock(),
            related_keys=[public_key(k.key) for k in keys],
            claims=claims,
            lead_source=lead,
            source_first_seen={s: _dt(t) for s, t in sorted(al.source_first.items())},
            counts_curve=[
                _point(b * bs, al.curve.get(b, 0)) for b in range(curve_from, max(al.curve) + 1)
            ][-p.curve_points :],
            z=round(best.z, 3),
            posts_seen=al.total,
            unique_authors=len(al.authors),
            independent_posts=size,
            discounted={
                "near_duplicate": al.total - len(al.clusters),
                "repeat_author_or_copy": al.total - size,
            },
            links=[_link(u, al.links[u]) for u in most_common(al.links, p.max_links)],
            reason=(
                f"{head}: {best.count:g} independent posts on {label_words(best.label)!r} in "
                f"the last {_span(best.window_seconds)} vs {best.expected:.2f} expected "
                f"(z={best.z:.1f}, -log10 p={best.score:.1f}); {len(keys)} key(s), "
                f"{len(al.source_first)} source(s), first seen on {lead}"
            ),
        )

    @staticmethod
    def _headline(
        al: _Open,
        posts: list[PostRef],
        post_terms: list[tuple[str, ...]],
        times: list[float],
        terms: list[str],
        op: Burst,
    ) -> str:
        """A readable name: its most central post (weighted by the story's term counts),
        else a phrase of its terms, else its opening key's label. (``post_terms`` and
        ``times``: each post's terms and time.)"""
        # (compiled: a version weighs up to 400 posts, each term by log1p of its count in the
        # story's bounded top terms)
        weigh = centrality_of_counts if core.PURE_PYTHON else _storycore.centrality_of_counts
        return headline(
            [r.text for r in posts],
            weigh(post_terms, al.terms),
            [r.cluster == r.post_id for r in posts],
            times,
            terms,
            label_words(op.label),
        )

    @staticmethod
    def _primary(al: _Open) -> Burst:
        """What the alert is about: a tracked claim before its stance class, dossier or
        terms; among equals the key that joined first."""
        ranked = enumerate(al.keys.values())
        return min(ranked, key=lambda ib: (_KIND_RANK[ib[1].kind], ib[0]))[1]

    def _evidence(self, al: _Open, posts: list[PostRef]) -> list[Evidence]:
        """Representative and diverse: chosen by the most burst keys held, at most one per
        near-duplicate cluster and (first pass) one per author; listed newest first."""
        # (what ``sorted(posts, key=lambda r: (-len(r.items & al.keys.keys()), r.ts))`` gives,
        # in two stable steps: by time, then by keys held (``al.held``), most first)
        by_ts = sorted(posts, key=_TS)
        held = [al.held[r.post_id] for r in by_ts]
        ranked = [by_ts[i] for i in sorted(range(len(held)), key=held.__getitem__, reverse=True)]
        picked: list[PostRef] = []
        picked_ids: set[str] = set()  # (a story's posts are distinct by id)
        clusters: set[str] = set()
        authors: set[str] = set()
        for strict in (True, False):
            for r in ranked:
                if len(picked) >= self.p.evidence_size:
                    break
                author = r.author or r.post_id
                if (
                    r.cluster in clusters
                    or (strict and author in authors)
                    or r.post_id in picked_ids
                ):
                    continue
                picked.append(r)
                picked_ids.add(r.post_id)
                clusters.add(r.cluster)
                authors.add(author)
        mixed = sorted(picked, key=lambda r: (-r.ts, r.post_id))  # newest first
        return [
            _evidence(r.post_id, r.source, r.ts, r.text, r.author, r.url, r.stance) for r in mixed
        ]


_TRACKED = ("dossier:", "claim:")
_TS = attrgetter("ts")
_SCORE = attrgetter("score")


def _stances(al: _Open) -> dict[str, int]:
    """The stance mix of the posts the story keeps, by stance name."""
    return {s: n for s, n in sorted(al.stances.items()) if n}


def _set_key(al: _Open, key: str, b: Burst) -> None:
    """Hold ``b`` as ``key``'s burst in ``al`` and keep ``al.best`` what
    ``max(al.keys.values(), key=score)`` gives: the first of the highest scores; a new key
    counts in ``al.held`` for each post holding it."""
    if key not in al.keys:
        held = al.held
        for r in al.posts.values():
            if key in r.items:
                held[r.post_id] += 1
    al.keys[key] = b
    best = al.best
    if best is None or b.score > best.score:
        al.best = b
    elif b.score == best.score:  # (ties: the first in the keys' order wins)
        al.best = max(al.keys.values(), key=lambda k: k.score)


def _keys_held(al: _Open, ref: PostRef) -> int:
    """How many of the story's burst keys the post holds."""
    return sum(map(al.keys.__contains__, ref.items))


def _tracked(al: _Open) -> int:
    return sum(1 for k in al.keys.values() if k.kind != "term")


@lru_cache(maxsize=8192)
def _point(start: int, count: int) -> CountPoint:
    """A point of a story's curve (remembered: a story's versions repeat most of theirs, and
    a point is immutable)."""
    return CountPoint(start=_dt(start), count=count)


@lru_cache(maxsize=8192)
def _link(url: str, count: int) -> Link:
    """A link of a story as listed (remembered: a story lists most of its links again at
    every version, and a link is immutable)."""
    return Link(url=url, domain=domain_of(url), count=count)


@lru_cache(maxsize=2048)  # (a post's text each: a few stories' evidence for a while)
def _evidence(
    post_id: str,
    source: str,
    ts: float,
    text: str,
    author: str | None,
    url: str | None,
    stance: Stance | None,
) -> Evidence:
    """A post as a story's evidence (remembered: a story shows most of its evidence again at
    every version, and evidence is immutable)."""
    return Evidence(
        post_id=post_id,
        source=source,
        created_at=_dt(ts),
        text=text,
        author=author,
        url=url,
        stance=stance,
    )


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
