"""Where a post sits in its conversation: top-level, a direct reply to the root, or deeper.

Read from what the connectors already put on a :class:`~seismo.contracts.Post` (no lookups):

- any source: no ``reply_to`` -> top-level (0);
- ``metadata["reply_depth"]`` (0, 1 or 2+), when a producer knows it (a replay file, a test);
- Bluesky: ``reply_to`` is the parent, ``metadata["reply_root"]`` the thread root;
- Reddit: the parent's fullname kind, ``t3_`` (the submission) or ``t1_`` (a comment);
- X: ``metadata["conversation_id"]`` is the root's id;
- anything else (Hacker News comments: the parent's kind needs a lookup) -> unknown (None).

Pure, no I/O.
"""

from __future__ import annotations

from typing import Literal

from seismo.contracts import Post

Depth = Literal[0, 1, 2]


def clip_depth(value: object) -> Depth | None:
    """A depth given as a number: 0, 1, or 2 for anything deeper; None unless an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return 0 if value == 0 else 1 if value == 1 else 2


def reply_depth(post: Post) -> Depth | None:
    """0 top-level, 1 a direct reply to the thread's root, 2 a reply to a reply, None unknown."""
    if "reply_depth" in post.metadata:
        return clip_depth(post.metadata["reply_depth"])
    parent = post.reply_to
    if parent is None:
        return 0
    if post.source == "reddit":
        return 1 if parent.startswith("t3_") else 2 if parent.startswith("t1_") else None
    root_key = {"bluesky": "reply_root", "x": "conversation_id"}.get(post.source)
    root = post.metadata.get(root_key) if root_key else None
    if not isinstance(root, str) or not root:
        return None
    return 1 if root == parent else 2
