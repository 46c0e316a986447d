"""reply_depth: where a post sits in its thread, from what each connector puts on the Post."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from models.replies import reply_depth
from seismo.contracts import Post


def post(source: str, reply_to: str | None = None, **metadata: Any) -> Post:
    return Post(
        id="p1",
        source=source,
        text="some text",
        created_at=datetime(2026, 5, 1, tzinfo=UTC),
        reply_to=reply_to,
        metadata=metadata,
    )


ROOT = "at://did:plc:a/app.bsky.feed.post/root"
MID = "at://did:plc:b/app.bsky.feed.post/mid"


@pytest.mark.parametrize(
    ("p", "depth"),
    [
        # top-level posts of every source
        (post("bluesky"), 0),
        (post("reddit"), 0),
        (post("x", conversation_id="p1"), 0),
        (post("hackernews", type="story"), 0),
        (post("rss"), 0),
        # Bluesky: the parent is the thread root, or not
        (post("bluesky", ROOT, reply_root=ROOT), 1),
        (post("bluesky", MID, reply_root=ROOT), 2),
        (post("bluesky", MID), None),  # a reply without its root: unknown
        # Reddit: parent fullname kind
        (post("reddit", "t3_abc", kind="comment"), 1),
        (post("reddit", "t1_def", kind="comment"), 2),
        (post("reddit", "xyz"), None),
        # X: conversation_id is the root tweet's id
        (post("x", "100", conversation_id="100"), 1),
        (post("x", "101", conversation_id="100"), 2),
        (post("x", "101"), None),
        # Hacker News comments: the parent's kind needs a lookup
        (post("hackernews", "42", type="comment"), None),
        # a producer that knows the depth says so; deeper than 2 counts as 2
        (post("hackernews", "42", reply_depth=1), 1),
        (post("replay", "7", reply_depth=5), 2),
        (post("replay", "7", reply_depth=None), None),
        (post("replay", "7", reply_depth="deep"), None),
        (post("replay", "7", reply_depth=True), None),
    ],
)
def test_reply_depth_per_source(p: Post, depth: int | None) -> None:
    assert reply_depth(p) == depth
