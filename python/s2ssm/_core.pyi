"""Type stubs of the compiled core ``s2ssm._core`` (use the wrappers in s2ssm.graph / s2ssm.sim)."""

import numpy as np
import numpy.typing as npt

__all__: list[str]
__version__: str
MAX_NODES: int

# --- graph metrics ---

def shd(
    pred: npt.NDArray[np.uint8],
    truth: npt.NDArray[np.uint8],
    reversal: str,
    diagonal: str,
    num_threads: int | None = None,
) -> npt.NDArray[np.uint32]: ...
def edge_counts(
    pred: npt.NDArray[np.uint8],
    truth: npt.NDArray[np.uint8],
    diagonal: str,
    num_threads: int | None = None,
) -> npt.NDArray[np.uint32]: ...
def path_counts_u64(
    layers: npt.NDArray[np.uint8] | npt.NDArray[np.uint64],
    layout: str,
    num_threads: int | None = None,
    out: npt.NDArray[np.uint64] | None = None,
) -> npt.NDArray[np.uint64]: ...
def path_counts_f64(
    layers: npt.NDArray[np.float64],
    layout: str,
    num_threads: int | None = None,
) -> npt.NDArray[np.float64]: ...
def reachability(
    layers: npt.NDArray[np.uint8],
    layout: str,
    num_threads: int | None = None,
) -> npt.NDArray[np.uint64]: ...
