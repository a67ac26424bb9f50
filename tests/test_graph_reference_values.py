"""The module's worked SHD examples, with the values other causal-discovery libraries give.

The expected values were worked out from each library's published definition (not imported:
they are not dependencies):
- cdt: ``cdt.metrics.SHD(target, pred, double_for_anticausal=True|False)`` sums ``|target - pred|``
  (True), or symmetrises it, clips to 1 and halves it (False).
- NOTEARS ``utils.count_accuracy(B_true, B_est)["shd"]`` and gCastle ``MetricsDAG(B_est,
  B_true).metrics["shd"]`` (the same code): extra + missing skeleton edges + reversed edges.
- causal-learn ``causallearn.graph.SHD.SHD(truth, est).get_shd()``: one per node pair whose
  adjacency or orientation differs.
"""

from __future__ import annotations

import numpy as np
import pytest

from s2ssm import graph


def adjacency(n: int, edges: list[tuple[int, int]]) -> np.ndarray:
    matrix = np.zeros((n, n), dtype=np.int64)
    for parent, child in edges:
        matrix[parent, child] = 1
    return matrix


TRUE = adjacency(3, [(0, 1), (1, 2)])

# name, predicted edges, cdt (double), cdt (single), notears, gcastle, causal-learn
EXAMPLES = [
    ("equal", [(0, 1), (1, 2)], 0, 0, 0, 0, 0),
    ("reversal", [(1, 0), (1, 2)], 2, 1, 1, 1, 1),
    ("missing", [(0, 1)], 1, 1, 1, 1, 1),
    ("extra", [(0, 1), (1, 2), (0, 2)], 1, 1, 1, 1, 1),
    ("empty", [], 2, 2, 2, 2, 2),
    ("both reversed", [(1, 0), (2, 1)], 4, 2, 2, 2, 2),
    ("reversal plus extra", [(1, 0), (1, 2), (2, 0)], 3, 2, 2, 2, 2),
]


@pytest.mark.parametrize(
    ("name", "edges", "cdt_double", "cdt_single", "notears", "gcastle", "causal_learn"), EXAMPLES
)
def test_worked_examples(name, edges, cdt_double, cdt_single, notears, gcastle, causal_learn):
    pred = adjacency(3, edges)
    assert graph.shd(pred, TRUE, reversal="double") == cdt_double, name
    single = graph.shd(pred, TRUE, reversal="single")
    assert single == cdt_single == notears == gcastle == causal_learn, name


def test_cdt_formulas_reproduced_on_random_dags():
    """Our two conventions equal cdt's two formulas (diagonal compared, as cdt does)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        true = np.triu(rng.random((n, n)) < 0.4, 1).astype(np.int64)
        pred = (rng.random((n, n)) < 0.3).astype(np.int64)
        np.fill_diagonal(pred, 0)
        diff = np.abs(true - pred)
        cdt_double = diff.sum()
        sym = diff + diff.T
        sym[sym > 1] = 1
        cdt_single = sym.sum() / 2
        assert graph.shd(pred, true, reversal="double", diagonal="count") == cdt_double
        assert graph.shd(pred, true, reversal="single", diagonal="count") == cdt_single


def test_self_loops_count_only_when_asked():
    pred = TRUE.copy()
    pred[1, 1] = 1
    assert graph.shd(pred, TRUE) == 0
    assert graph.shd(pred, TRUE, diagonal="count") == 1
    assert graph.shd(pred, TRUE, reversal="single", diagonal="count") == 1


def test_environment_column_compared_cell_by_cell():
    """A K x (K + 1) local graph: the env column has no reversal partner."""
    true = np.zeros((2, 3), dtype=bool)
    true[0, 2] = True  # env -> object 0
    pred = np.zeros((2, 3), dtype=bool)
    pred[1, 2] = True  # env -> object 1
    assert graph.shd(pred, true, reversal="double") == 2
    assert graph.shd(pred, true, reversal="single") == 2
