from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

def locate(items: list[str], depth: int, width: int) -> npt.NDArray[np.int64]: ...
def observe_runs(
    cells: npt.NDArray[np.void],
    idx: npt.NDArray[np.int64],
    weights: F32,
    post: npt.NDArray[np.int64] | None,
    runs: Sequence[tuple[int, int, float, float]],
    alpha: float,
    beta: float,
) -> F32: ...
def pow_f32_many(base: float, n: npt.NDArray[np.int64]) -> F32: ...
def observe_scales(
    cells: npt.NDArray[np.void],
    idx: npt.NDArray[np.int64],
    weights: F32,
    post: npt.NDArray[np.int64] | None,
    runs: Sequence[Sequence[tuple[int, int, float, float]]],
    alphas: Sequence[float],
    beta: float,
) -> F32: ...
