"""Feature builders shared by training and inference (pure numpy; no fitted state here).

Stance features of a (claim, reply) pair: the reply's embedding, its element-wise product
with the claim's embedding, their cosine, and a few surface cues that carry stance in
replies (question marks, negation and denial words, links, length).

With the reply's depth in its thread (see :mod:`models.replies`) the depth-aware stance head
also gets a one-hot of direct reply / deeper reply and the cues again per depth (a question
mark under the source is a query more often than one deep in a thread). Only depths 1 and 2
have training rows; top-level posts and unknown depths use the text-only features.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

_DENY = re.compile(
    r"\b(fake|false|hoax|not true|untrue|no evidence|misleading|lie|lies|lying|deny|denied|"
    r"wrong|bs|bullshit|rumou?rs?|unconfirmed|doubt\w*|nope|debunk\w*)\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(not|no|never|nothing|none|\w+n't|\w+nt)\b", re.IGNORECASE)
_QUESTION = re.compile(
    r"\b(is it|is this|are they|really|source|proof|why|how|what|who|where|when|any)\b",
    re.IGNORECASE,
)
_SUPPORT = re.compile(
    r"\b(confirm\w*|official\w*|report\w*|breaking|yes|true|indeed|according|via)\b",
    re.IGNORECASE,
)
CUE_NAMES = (
    "ends_with_question",
    "has_question",
    "question_marks",
    "deny_word",
    "negation",
    "question_word",
    "support_word",
    "link",
    "log_words",
    "exclamation",
)


def cue_features(text: str) -> list[float]:
    s = text.strip()
    return [
        float(s.endswith("?")),
        float("?" in s),
        min(s.count("?"), 3) / 3.0,
        float(bool(_DENY.search(s))),
        float(bool(_NEGATION.search(s))),
        float(bool(_QUESTION.search(s))),
        float(bool(_SUPPORT.search(s))),
        float("http" in s.lower()),
        float(np.log1p(len(s.split())) / 4.0),
        float("!" in s),
    ]


def stance_features(
    claim_emb: Array, text_emb: Array, texts: list[str], depths: Sequence[int] | None = None
) -> Array:
    """Rows: [text_emb, claim_emb * text_emb, cosine, cues]; embeddings are L2-normalised.

    With ``depths`` the rows go on with the depth block of :func:`with_depth`.
    """
    prod = claim_emb * text_emb
    cos = prod.sum(axis=1, keepdims=True)
    cues = np.array([cue_features(t) for t in texts], dtype=np.float32).reshape(len(texts), -1)
    x = np.hstack([text_emb, prod, cos, cues]).astype(np.float32)
    return x if depths is None else with_depth(x, depths)


def with_depth(x: Array, depths: Sequence[int]) -> Array:
    """Text-only stance rows ``x`` (ending with the cues) followed by the depth block
    [direct, deeper, cues * direct, cues * deeper], all times :data:`DEPTH_SCALE`
    (1 = direct reply to the root, 2 = deeper, one depth per row)."""
    cues = x[:, -len(CUE_NAMES) :]
    d = np.asarray(depths).reshape(-1, 1)
    direct, deeper = (d == 1).astype(np.float32), (d >= 2).astype(np.float32)
    block = DEPTH_SCALE * np.hstack([direct, deeper, cues * direct, cues * deeper])
    return np.hstack([x, block]).astype(np.float32)


# The depth block is scaled up so the shared L2 penalty (C 0.1) pulls its 22 weights toward zero
# less than the 779 text features' (picked with the dev split in view; grouped CV is indifferent).
DEPTH_SCALE = 3.0
STANCE_FEATURES = "text_emb+claim_x_text+cos+cues(v1)"
STANCE_DEPTH_FEATURES = STANCE_FEATURES + "+3*[direct,deeper,cues*direct,cues*deeper](v1)"
