"""The pure logic's parameter objects: plain frozen dataclasses whose defaults are the
only definition of each value (``seismo.config``'s groups take theirs from here and build
these with their ``params()``). Standard library only, so the settings can import it
without loading the detector."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class BookParams:
    """The alert book's parameters (:class:`streams.alertbook.AlertBook`)."""

    bucket_seconds: int = 300
    quiet_seconds: int = 2 * 3600
    cooldown_seconds: int = 6 * 3600
    update_gap_seconds: int = 900
    merge_overlap: float = 0.5
    max_open: int = 256
    max_alert_posts: int = 400
    evidence_size: int = 12
    top_terms: int = 8
    curve_points: int = 48
    story_update_seconds: int = 1800  # at most one delivered version per story this long
    # a resolved story may reopen this long: the longest window (24 h) of the default scales,
    # so an event that comes back within the day the detector looks at is the same story
    story_horizon_seconds: int = 24 * 3600
    merge_similarity: float = 0.15  # cosine of term counts that joins a burst to a story
    key_share: float = 0.1  # a burst word in this share of a story's posts joins it...
    min_key_posts: int = 3  # ...when in at least this many
    author_bonus: float = 0.1  # added to it when all of the burst's posts' authors are known
    merge_stories: float = 0.4  # cosine at which two open stories become one
    merge_scan: int = 32  # the most recently active open stories compared
    max_dormant: int = 256  # resolved stories kept for reopening, at most
    story_terms: int = 300  # term counts kept per story (twice as many before pruning)
    story_links: int = 64
    max_links: int = 10  # links an alert lists
    # a burst whose posts share nothing but its word (no second item, no link) opens a story
    # only from this many independent posts: two posts that share one word are a coincidence
    lone_word_posts: int = 3


@dataclass(frozen=True)
class DetectorParams:
    """The burst detector's parameters (:class:`streams.detector.BurstEngine`); the ones
    it shares with the alert book take the book's defaults."""

    bucket_seconds: int = BookParams.bucket_seconds
    # each time scale's bucket, in buckets of ``bucket_seconds``: its window is two of them
    # (5 min -> 10 min, 30 min -> 1 h, 3 h -> 6 h, 12 h -> 24 h)
    scales: tuple[int, ...] = (1, 6, 36, 144)
    halflife_buckets: float = 2016.0  # one week of 5-minute buckets
    floor: float = 0.005
    floor_rate: float = 0.005
    min_count: int = 2
    # sources where a near-duplicate post counts: on a link aggregator a post is a
    # submission, and the same headline submitted again is another reader's choice (Hacker
    # News folds a URL submitted again into its first item, so a second item is another
    # outlet or another person); elsewhere a copy is a repost or a copy-paste campaign
    copies_count_on: tuple[str, ...] = ("hackernews",)
    min_z: float = 3.0
    min_score: float = 4.0
    beta: float = 0.5
    warmup_seconds: int = 2 * 3600
    # a scale judges nothing before it has watched this many of its own buckets
    warmup_buckets: int = 12
    cooldown_seconds: int = BookParams.cooldown_seconds
    quiet_seconds: int = BookParams.quiet_seconds
    story_update_seconds: int = BookParams.story_update_seconds
    story_horizon_seconds: int = BookParams.story_horizon_seconds
    lone_word_posts: int = BookParams.lone_word_posts
    evidence_size: int = BookParams.evidence_size
    sketch_width: int = 1 << 16
    sketch_depth: int = 4
    max_tracked_keys: int = 4096
    max_candidates: int = 20_000
    candidate_min: float = 2.0
    max_items_per_post: int = 48
    hot_z: float = 2.0
    # post keys remembered to count a post sent twice once (the only dedupe: streams/seen.py)
    seen_posts: int = 20_000
    # a post further behind the current bucket than this is not counted (``too_late``)
    max_lateness_seconds: int = 1800

    @property
    def alpha(self) -> float:
        return float(1.0 - 0.5 ** (1.0 / self.halflife_buckets))

    def scale_alpha(self, scale: int) -> float:
        """The EWMA weight at a scale: the same half-life in event time at every scale."""
        return float(1.0 - 0.5 ** (scale / self.halflife_buckets))

    def score_threshold(self, scale: int) -> float:
        """The tail score a key needs at a scale whose bucket is ``scale`` finest buckets.

        A key can cross a threshold at most once per window, so a scale whose windows are m
        times longer makes m times fewer tests of each key a day: the same false alarms per
        key and day allow a p-value m times larger there, a threshold lower by log10(m).
        With S scales each gets 1/S of the budget (Bonferroni): log10(S) higher.
        ``min_score`` is the threshold of the finest scale alone."""
        return self.min_score + math.log10(len(self.scales)) - math.log10(scale)

    def scale_warmup(self, scale: int) -> int:
        """The event time a scale whose bucket is ``scale`` finest buckets judges nothing in:
        a baseline from fewer than ``warmup_buckets`` of its buckets is no baseline."""
        return max(self.warmup_seconds, self.warmup_buckets * scale * self.bucket_seconds)

    def book(self) -> BookParams:
        """The alert book's parameters: the ones the detector shares with it, else the
        book's defaults."""
        return BookParams(**{name: getattr(self, name) for name in _SHARED_WITH_BOOK})


_SHARED_WITH_BOOK = tuple(
    f.name for f in fields(BookParams) if f.name in {g.name for g in fields(DetectorParams)}
)

# the detector's settings its state is shaped by (the cells' layout, the buckets and the
# EWMA weight their counts were taken with): a checkpoint restores only under the same ones
SHAPE_SETTINGS = (
    "bucket_seconds",
    "scales",
    "halflife_buckets",
    "beta",
    "sketch_width",
    "sketch_depth",
    "max_tracked_keys",
)
