from collections import OrderedDict, deque

from streams.alertbook import PostRef

def touch_candidates(
    cands: OrderedDict[str, deque[PostRef]], names: list[str], ref: PostRef
) -> None: ...
def poisson_tail_score(observed: int, expected: float) -> float: ...
