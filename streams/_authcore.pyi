from collections import deque

import numpy as np
import numpy.typing as npt

def fresh_many(
    last: npt.NDArray[np.int32],
    posts: list[tuple[str, list[str]]],
    bucket: int | npt.NDArray[np.int32],
    post: npt.NDArray[np.int64] | None,
) -> npt.NDArray[np.bool_]: ...
def post_keys(
    contents: list[list[str]],
    a: npt.NDArray[np.uint64],
    b: npt.NDArray[np.uint64],
    bands: int,
    min_words: int,
) -> list[list[bytes] | None]: ...
def join_many(
    index: dict[bytes, str],
    queue: deque[tuple[float, list[bytes]]],
    window: float,
    max_posts: int,
    post_ids: list[str],
    keys: list[list[bytes] | None],
    ts: list[float],
) -> list[str | None]: ...
