"""The classify step: a cheap first stage and, where it pays, the transformer.

Stage 1 (:class:`~models.keyword.KeywordClassifier` plus a vocabulary gate) runs on every
post. Stage 2 embeds a post with MiniLM and runs the trained heads:

- dossier scores: cosine similarity to each dossier's prototypes (title, description,
  keywords, examples), scaled so 0.5 sits at the dossier's own threshold;
- general topics: a multi-label linear head (TweetTopic labels), one threshold per label;
- claims: keyword hits, plus posts whose embedding is close to a claim's text;
- stance toward each claim hit: a linear head on (claim, post) features; for replies whose
  depth in their thread is known (:func:`models.replies.reply_depth`), a second head that
  also sees the depth, when one is bundled.

Modes: ``full`` sends every post to stage 2; ``cascade`` only posts that hit the watchlist's
keywords or share a content word with its vocabulary (titles, descriptions, keywords,
claims, examples) -- the rest keep stage 1's answer. Pure: no Faust, no I/O after loading.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, cast

import numpy as np

from models.embed import ARTIFACTS, ONNX_BATCH, Embedder, TextEmbedder
from models.features import stance_features, with_depth
from models.heads import Array, LinearHead
from models.keyword import KeywordClassifier
from models.replies import reply_depth
from models.text import STOP_WORDS, terms
from seismo.contracts import ClaimHit, ClassifiedPost, Post, Stance
from seismo.watchlist import Watchlist

log = logging.getLogger(__name__)

Mode = Literal["keyword", "cascade", "full"]
STANCE_HEAD = "stance-v1"
STANCE_DEPTH_HEAD = "stance-depth-v1"
TOPIC_HEAD = "topic-v1"

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")


class Classifier(Protocol):
    """What the ingest agent and the offline pipeline call."""

    name: str

    def classify(self, post: Post) -> ClassifiedPost: ...

    def classify_batch(self, posts: Sequence[Post]) -> list[ClassifiedPost]: ...


def model_text(text: str) -> str:
    """The text the transformer sees: links dropped (they only cost tokens), mentions folded."""
    return " ".join(_MENTION.sub("@user", _URL.sub(" ", text)).split()) or text[:200]


class StanceModel:
    """support / deny / query / comment of a post toward a claim.

    ``head`` sees the (claim, post) text features; ``depth_head`` (optional) also the post's
    depth in its thread and answers for the direct (1) and deeper (2) replies. Top-level
    posts and unknown depths always go to ``head`` (no training rows of their own).
    """

    def __init__(self, head: LinearHead, depth_head: LinearHead | None = None) -> None:
        if depth_head is not None and depth_head.classes != head.classes:
            raise ValueError("the stance heads disagree on their classes")
        self.head = head
        self.depth_head = depth_head

    def predict(
        self,
        claim_emb: Array,
        text_emb: Array,
        texts: list[str],
        depths: Sequence[int | None] | None = None,
    ) -> list[tuple[Stance, float]]:
        if not texts:
            return []
        x = stance_features(claim_emb, text_emb, texts)
        p = self.head.proba(x)
        idx = self.head.decide(p)
        known = [r for r, d in enumerate(depths or ()) if d in (1, 2)]
        if self.depth_head is not None and depths is not None and known:
            xd = with_depth(x[known], [cast(int, depths[r]) for r in known])
            p[known] = self.depth_head.proba(xd)
            idx[known] = self.depth_head.decide(p[known])
        classes = [cast(Stance, c) for c in self.head.classes]
        return [(classes[int(i)], float(p[r, int(i)])) for r, i in enumerate(idx)]


class TopicModel:
    """General topics (multi-label) from a post's embedding."""

    def __init__(self, head: LinearHead) -> None:
        self.head = head

    def predict(self, emb: Array) -> list[list[str]]:
        if len(emb) == 0:
            return []
        on = self.head.decide(self.head.proba(emb))
        return [[c for c, hit in zip(self.head.classes, row, strict=True) if hit] for row in on]


# Sentences on many unrelated subjects: the background a dossier's threshold is set against.
BACKGROUND = """Lovely sunset at the beach today
Can't believe the game went to overtime, what a finish
My cat knocked the coffee off the table again
New pasta recipe turned out great, garlic and lemon
Traffic on the highway is terrible this morning
Storm warning for the coast tonight, stay safe everyone
Just finished my final exams, time to sleep for a week
The concert last night was amazing, best band ever
Looking for a good dentist in town, any recommendations
Stock market closed higher as retail sales beat forecasts
The city council approved the new bike lanes downtown
Happy birthday to my best friend, love you
Our school team won the regional basketball championship
New phone update drains my battery so fast
Flooding closed several roads after heavy rain
Watching the new season of my favourite show tonight
Gas prices went up again this week
The museum opens a new dinosaur exhibit on Friday
Local bakery is giving away free bread to nurses
I need a vacation somewhere warm
Election results will be announced tomorrow morning
Scientists discover a new species of frog in the rainforest
The airline cancelled my flight with no explanation
Great workout at the gym, legs are dead
Police are investigating a robbery at the mall
Movie theaters are offering discounts on Tuesdays
The hospital is hiring nurses for the night shift
Tornado sirens are going off in the county right now
Fans lined up overnight for the video game release
Our neighborhood lost power for three hours""".splitlines()


@dataclass
class _DossierProto:
    id: str
    protos: Array  # (m, dim) prototype embeddings
    threshold: float
    scale: float


class DossierScorer:
    """Scores a post against each dossier from the watchlist's own words (no training data).

    A dossier's score is the best cosine between the post and its prototypes; its
    threshold is set above how close generic posts (:data:`BACKGROUND`) come to it
    (mean + 4 std, at least ``floor``), and the reported score is a logistic of the
    distance to that threshold (0.5 = at the threshold).
    """

    def __init__(self, watchlist: Watchlist, embedder: TextEmbedder, floor: float = 0.45) -> None:
        bg = embedder.embed(BACKGROUND)
        self.dossiers: list[_DossierProto] = []
        for d in watchlist.dossiers:
            texts = [d.title, f"{d.title}. {d.description}", ", ".join(d.keywords)]
            texts += [c.text for c in watchlist.claims if c.dossier == d.id]
            texts += d.examples
            protos = embedder.embed([t for t in texts if t.strip()])
            sims = (bg @ protos.T).max(axis=1)
            std = float(max(sims.std(), 0.02))
            threshold = max(floor, float(sims.mean()) + 4 * std)
            self.dossiers.append(_DossierProto(d.id, protos, threshold, std))
            log.debug("dossier %s: threshold %.3f", d.id, threshold)

    def scores(self, emb: Array) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{} for _ in range(len(emb))]
        for d in self.dossiers:
            best = (emb @ d.protos.T).max(axis=1)
            prob = 1.0 / (1.0 + np.exp(-(best - d.threshold) / d.scale))
            for i, p in enumerate(prob):
                out[i][d.id] = round(float(p), 3)
        return out


def _vocabulary(watchlist: Watchlist) -> frozenset[str]:
    words: set[str] = set()
    texts = [f"{d.title} {d.description} {' '.join(d.keywords)}" for d in watchlist.dossiers]
    texts += [f"{c.text} {' '.join(c.keywords)}" for c in watchlist.claims]
    for d in watchlist.dossiers:
        texts += d.examples
    for t in texts:
        words.update(terms(t, limit=10_000))
    return frozenset(w for w in words if w not in STOP_WORDS and not w.startswith("domain:"))


class CascadeClassifier:
    """Stage 1 on every post, stage 2 (MiniLM + heads) on the posts the gate lets through."""

    def __init__(
        self,
        watchlist: Watchlist,
        embedder: TextEmbedder,
        stance: StanceModel,
        topics: TopicModel | None,
        mode: Mode = "cascade",
        max_terms: int = 16,
        claim_similarity: float = 0.6,
    ) -> None:
        if mode == "keyword":
            raise ValueError("use KeywordClassifier for mode 'keyword'")
        self.mode = mode
        self.name = f"minilm-{mode}-v1"
        self.keyword = KeywordClassifier(watchlist, max_terms=max_terms)
        self.embedder = embedder
        self.stance = stance
        self.topics = topics
        self.dossier_scorer = DossierScorer(watchlist, embedder)
        self.vocabulary = _vocabulary(watchlist)
        self.claims = list(watchlist.claims)
        self.claim_emb = embedder.embed([c.text for c in self.claims])
        self.claim_similarity = claim_similarity
        self.stats = {"posts": 0, "stage2": 0}

    def needs_model(self, cp: ClassifiedPost) -> bool:
        """The gate: does this post go to the transformer?"""
        if self.mode == "full" or cp.dossiers or cp.claims:
            return True
        return any(t in self.vocabulary for t in cp.terms)

    def classify(self, post: Post) -> ClassifiedPost:
        return self.classify_batch([post])[0]

    def classify_batch(self, posts: Sequence[Post]) -> list[ClassifiedPost]:
        first = [self.keyword.classify(p) for p in posts]
        todo = [i for i, cp in enumerate(first) if self.needs_model(cp)]
        self.stats["posts"] += len(posts)
        self.stats["stage2"] += len(todo)
        out = [cp.model_copy(update={"classifier": self.name}) for cp in first]
        if not todo:
            return out
        emb = self.embedder.embed([model_text(posts[i].text) for i in todo])
        dossier_scores = self.dossier_scorer.scores(emb)
        topics = self.topics.predict(emb) if self.topics else [[] for _ in todo]
        claim_sims = emb @ self.claim_emb.T if self.claims else np.zeros((len(todo), 0))
        # every (post, claim) pair that needs a stance, predicted in one call
        pairs: list[tuple[int, int, float]] = []  # (row in todo, claim index, match score)
        for row, i in enumerate(todo):
            hit = {h.claim: h.score for h in first[i].claims}
            for ci, c in enumerate(self.claims):
                sim = float(claim_sims[row, ci])
                if c.id in hit or sim >= self.claim_similarity:
                    pairs.append((row, ci, max(hit.get(c.id, 0.0), round(sim, 3))))
        stances = self.stance.predict(
            self.claim_emb[[ci for _, ci, _ in pairs]],
            emb[[row for row, _, _ in pairs]],
            [model_text(posts[todo[row]].text) for row, _, _ in pairs],
            [reply_depth(posts[todo[row]]) for row, _, _ in pairs],
        )
        hits: dict[int, list[ClaimHit]] = {}
        for (row, ci, score), (stance, _) in zip(pairs, stances, strict=True):
            c = self.claims[ci]
            hits.setdefault(row, []).append(
                ClaimHit(claim=c.id, dossier=c.dossier, stance=stance, score=score)
            )
        for row, i in enumerate(todo):
            cp = first[i]
            scores = dossier_scores[row]
            dossiers = list(cp.dossiers)
            claim_hits = hits.get(row, [])
            for d, s in sorted(scores.items(), key=lambda kv: -kv[1]):
                if s >= 0.5 and d not in dossiers:
                    dossiers.append(d)
            for h in claim_hits:
                if h.dossier and h.dossier not in dossiers:
                    dossiers.append(h.dossier)
            out[i] = cp.model_copy(
                update={
                    "dossiers": dossiers,
                    "claims": claim_hits,
                    "topics": topics[row],
                    "dossier_scores": scores,
                    "classifier": self.name,
                }
            )
        return out


def load_heads(artifacts: Path | None = None) -> tuple[StanceModel, TopicModel | None]:
    root = artifacts or ARTIFACTS
    depth_stem = root / STANCE_DEPTH_HEAD
    depth_head = LinearHead.load(depth_stem) if depth_stem.with_suffix(".npz").exists() else None
    stance = StanceModel(LinearHead.load(root / STANCE_HEAD), depth_head)
    topic_stem = root / TOPIC_HEAD
    topics = (
        TopicModel(LinearHead.load(topic_stem)) if topic_stem.with_suffix(".npz").exists() else None
    )
    return stance, topics


def build_classifier(
    watchlist: Watchlist,
    mode: Mode = "cascade",
    max_terms: int = 16,
    artifacts: Path | None = None,
    threads: int = 2,
    batch_size: int = ONNX_BATCH,
) -> Classifier:
    """The classifier the worker runs (``keyword`` skips the models entirely).

    ``batch_size``: the most posts per ONNX Runtime run, capped at ``ONNX_BATCH`` (larger
    runs cost more CPU per post); a ``classify_batch`` call of more posts makes several runs.
    """
    if mode == "keyword":
        return KeywordClassifier(watchlist, max_terms=max_terms)
    stance, topics = load_heads(artifacts)
    embedder = Embedder(threads=threads, batch_size=min(batch_size, ONNX_BATCH))
    return CascadeClassifier(watchlist, embedder, stance, topics, mode=mode, max_terms=max_terms)
