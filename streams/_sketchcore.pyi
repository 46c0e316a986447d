from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

def locate(items: list[str], depth: int, width: int) -> npt.NDArray[np.int64]: ...
def observe_runs(
    cur: F32,
    prev: F32,
    mean: F32,
    var: F32,
    cell_bucket: npt.NDArray[np.int32],
    idx: npt.NDArray[np.int64],
    weights: F32,
    post: npt.NDArray[np.int64] | None,
    runs: Sequence[tuple[int, int, float, float]],
    alpha: float,
    beta: float,
) -> F32: ...
