"""Hypothesis strategies for property-testing causal-graph code (needs ``hypothesis``).

Every strategy yields numpy arrays in the ``parent_child`` layout of :mod:`s2ssm.graph`
(``A[i, j]`` is an edge ``i -> j``) and shrinks towards small, empty graphs::

    from hypothesis import given
    from s2ssm.testing import dags

    @given(dags(n_nodes=5))
    def test_my_metric(graph): ...
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["adjacency_matrices", "dags", "graph_batches", "layer_stacks"]

IntOrStrategy = int | st.SearchStrategy[int]


def _ints(value: IntOrStrategy) -> st.SearchStrategy[int]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def _cells(density: float | None) -> st.SearchStrategy[bool]:
    if density is None:
        return st.booleans()
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density: expected a probability in [0, 1], got {density}")
    return st.floats(0.0, 1.0, exclude_max=True).map(lambda u: u < density)


@st.composite
def adjacency_matrices(
    draw: st.DrawFn,
    n_nodes: IntOrStrategy = st.integers(1, 8),
    *,
    dag: bool = False,
    density: float | None = None,
    self_loops: bool = False,
    extra_columns: IntOrStrategy = 0,
) -> np.ndarray:
    """A bool adjacency matrix ``(N, N + extra_columns)``.

    ``dag=True`` gives an acyclic graph (edges follow a random topological order, no
    self-loops); ``density`` is the probability of each allowed edge (any when None);
    ``self_loops`` allows a diagonal; ``extra_columns`` adds parent-only columns
    (``child_parent`` local graphs with an environment token).
    """
    n = draw(_ints(n_nodes))
    extra = draw(_ints(extra_columns))
    graph = draw(hnp.arrays(np.bool_, (n, n + extra), elements=_cells(density)))
    if dag:
        order = np.asarray(draw(st.permutations(range(n))), dtype=np.intp)
        rank = np.empty(n, dtype=np.intp)
        rank[order] = np.arange(n)
        graph[:, :n] &= rank[:, None] < rank[None, :]
    elif not self_loops:
        np.fill_diagonal(graph[:, :n], False)
    return graph


def dags(n_nodes: IntOrStrategy = st.integers(1, 8), *, density: float | None = None):
    """A bool DAG adjacency matrix ``(N, N)`` (see :func:`adjacency_matrices`)."""
    return adjacency_matrices(n_nodes, dag=True, density=density)


@st.composite
def graph_batches(
    draw: st.DrawFn,
    batch_size: IntOrStrategy = st.integers(1, 16),
    n_nodes: IntOrStrategy = st.integers(1, 8),
    *,
    dag: bool = False,
    density: float | None = None,
    self_loops: bool = True,
    extra_columns: IntOrStrategy = 0,
) -> np.ndarray:
    """A bool batch ``(B, N, N + extra_columns)`` of graphs with one shared size."""
    batch = draw(_ints(batch_size))
    n = draw(_ints(n_nodes))
    extra = draw(_ints(extra_columns))
    one = adjacency_matrices(
        n, dag=dag, density=density, self_loops=self_loops, extra_columns=extra
    )
    graphs = draw(st.lists(one, min_size=batch, max_size=batch))
    return np.stack(graphs)


@st.composite
def layer_stacks(
    draw: st.DrawFn,
    n_layers: IntOrStrategy = st.integers(1, 4),
    n_nodes: IntOrStrategy = st.integers(1, 8),
    *,
    batch_size: IntOrStrategy | None = None,
    max_count: int = 1,
    density: float | None = None,
) -> np.ndarray:
    """Per-layer adjacency stacks ``(L, N, N)`` (or ``(B, L, N, N)`` with ``batch_size``).

    ``max_count=1`` yields bool layers; larger values yield ``int64`` edge multiplicities in
    ``[0, max_count]``.
    """
    layers = draw(_ints(n_layers))
    n = draw(_ints(n_nodes))
    shape: tuple[int, ...] = (layers, n, n)
    if batch_size is not None:
        shape = (draw(_ints(batch_size)), *shape)
    if max_count == 1:
        return draw(hnp.arrays(np.bool_, shape, elements=_cells(density)))
    counts = st.integers(0, max_count)
    if density is not None:
        counts = st.tuples(_cells(density), counts).map(lambda pair: pair[1] if pair[0] else 0)
    return draw(hnp.arrays(np.int64, shape, elements=counts))
