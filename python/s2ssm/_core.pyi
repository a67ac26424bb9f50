"""Type stubs of the compiled core ``s2ssm._core`` (use the wrappers in s2ssm.graph / s2ssm.sim)."""

from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_NODES",
    "SIM_STATE_DIM",
    "SimGames",
    "__version__",
    "edge_counts",
    "path_counts_f64",
    "path_counts_u64",
    "reachability",
    "reachability_dense",
    "shd",
    "sim_environments",
    "sim_generate_into",
    "sim_global_graph",
    "sim_mechanisms",
    "sim_render_into",
]
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
def reachability_dense(
    layers: npt.NDArray[np.uint8],
    layout: str,
    num_threads: int | None = None,
) -> npt.NDArray[np.uint8]: ...

# --- simulator ---
SIM_STATE_DIM: int

def sim_generate_into(
    mechanisms_bits: int,
    env_id: int,
    seed: int,
    start_index: int,
    seq_len: int,
    resolution: int,
    velocity: str,
    occlusion: bool,
    intervention_prob: float,
    intervention_multi: bool,
    draw: bool,
    frames: npt.NDArray[np.uint8],
    masks: npt.NDArray[np.uint8],
    states: npt.NDArray[np.float32],
    interventions: npt.NDArray[np.bool_],
    local_graphs: npt.NDArray[np.bool_],
    env_ids: npt.NDArray[np.int64],
    num_threads: int | None = None,
    schedule_targets: npt.NDArray[np.bool_] | None = None,
    schedule_values: npt.NDArray[np.float64] | None = None,
) -> None: ...
def sim_render_into(
    states: npt.NDArray[np.float64],
    previous: npt.NDArray[np.float64] | None,
    resolution: int,
    velocity: str,
    occlusion: bool,
    frames: npt.NDArray[np.uint8],
    masks: npt.NDArray[np.uint8],
    num_threads: int | None = None,
) -> None: ...

@final
class SimGames:
    """Games stepped together, full-precision states kept between steps."""

    def __new__(
        cls,
        mechanisms_bits: int,
        n: int,
        resolution: int,
        velocity: str,
        occlusion: bool,
        intervention_prob: float,
        intervention_multi: bool,
        draw: bool = True,
    ) -> SimGames: ...
    def __len__(self) -> int: ...
    def reset(self, index: int, seed: int, sequence: int) -> None: ...
    def states(self) -> npt.NDArray[np.float64]: ...
    def steps(self) -> npt.NDArray[np.uint32]: ...
    def step(
        self,
        frames: npt.NDArray[np.uint8],
        masks: npt.NDArray[np.uint8],
        states: npt.NDArray[np.float64],
        interventions: npt.NDArray[np.bool_],
        local_graphs: npt.NDArray[np.bool_],
        forced_rows: npt.NDArray[np.bool_] | None = None,
        forced_targets: npt.NDArray[np.bool_] | None = None,
        forced_values: npt.NDArray[np.float64] | None = None,
        num_threads: int | None = None,
    ) -> None: ...

def sim_environments() -> list[tuple[str, int]]: ...
def sim_mechanisms() -> list[tuple[str, int]]: ...
def sim_global_graph(
    mechanisms_bits: int, interventions: bool = False
) -> npt.NDArray[np.bool_]: ...
