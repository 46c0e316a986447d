import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

def locate(items: list[str], depth: int, width: int) -> npt.NDArray[np.int64]: ...
def observe_batch(
    cur: F32,
    prev: F32,
    mean: F32,
    var: F32,
    cell_bucket: npt.NDArray[np.int32],
    idx: npt.NDArray[np.int64],
    weights: F32,
    post: npt.NDArray[np.int64] | None,
    bucket: int,
    alpha: float,
    beta: float,
    correction: float,
    floor: float,
) -> F32: ...
