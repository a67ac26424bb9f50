"""s2ssm.graph against plain NumPy references, and the metric properties."""

from __future__ import annotations

import graph_reference as ref
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from s2ssm import graph
from s2ssm.errors import CountOverflowError, InvalidInputError, InvalidTypeError, S2ssmError
from s2ssm.testing import adjacency_matrices, dags, graph_batches, layer_stacks

REVERSALS = ("double", "single")
DIAGONALS = ("ignore", "count")
LAYOUTS = ("parent_child", "child_parent")


@st.composite
def graph_pairs(draw, n_nodes=st.integers(1, 10), extra_columns=st.integers(0, 2)):
    """Two bool batches of one shape, sometimes with extra parent-only columns."""
    first = draw(graph_batches(st.integers(1, 6), n_nodes, extra_columns=extra_columns))
    second = draw(hnp.arrays(np.bool_, first.shape))
    return first, second


@given(graph_pairs(), st.sampled_from(REVERSALS), st.sampled_from(DIAGONALS))
def test_shd_matches_reference(pair, reversal, diagonal):
    pred, true = pair
    got = graph.shd(pred, true, reversal=reversal, diagonal=diagonal)
    np.testing.assert_array_equal(got, ref.shd(pred, true, reversal, diagonal))
    assert got.dtype == np.uint32


@pytest.mark.parametrize("shape", [(300, 8, 8), (50, 64, 64), (40, 13, 20), (20, 4, 5)])
@pytest.mark.parametrize("reversal", REVERSALS)
@pytest.mark.parametrize("diagonal", DIAGONALS)
def test_shd_matches_reference_at_fixed_sizes(shape, reversal, diagonal):
    rng = np.random.default_rng(sum(shape))
    pred, true = rng.random((2, *shape)) < 0.3
    np.testing.assert_array_equal(
        graph.shd(pred, true, reversal=reversal, diagonal=diagonal),
        ref.shd(pred, true, reversal, diagonal),
    )


@given(graph_pairs(), st.sampled_from(DIAGONALS))
def test_edge_metrics_match_reference(pair, diagonal):
    pred, true = pair
    got = graph.edge_metrics(pred, true, diagonal=diagonal)
    tp, fp, fn, tn = ref.edge_counts(pred, true, diagonal).T
    np.testing.assert_array_equal(got.tp, tp)
    np.testing.assert_array_equal(got.fp, fp)
    np.testing.assert_array_equal(got.fn, fn)
    np.testing.assert_array_equal(got.tn, tn)
    np.testing.assert_array_equal(got.nnz, tp + fp)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected_precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        expected_recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        expected_fpr = np.where(fp + tn > 0, fp / (fp + tn), 0.0)
    np.testing.assert_allclose(got.precision, expected_precision)
    np.testing.assert_allclose(got.recall, expected_recall)
    np.testing.assert_allclose(got.tpr, expected_recall)
    np.testing.assert_allclose(got.fdr, np.where(tp + fp > 0, 1 - expected_precision, 0.0))
    np.testing.assert_allclose(got.fpr, expected_fpr)
    p, r = expected_precision, expected_recall
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_allclose(got.f1, np.where(p + r > 0, 2 * p * r / (p + r), 0.0))


def test_single_graph_returns_python_scalars():
    true = np.array([[0, 1], [0, 0]])
    assert graph.shd(true.T, true) == 2
    assert type(graph.shd(true.T, true)) is int
    metrics = graph.edge_metrics(true, true)
    assert (metrics.tp, metrics.fp, metrics.precision, metrics.f1) == (1, 0, 1.0, 1.0)
    assert type(metrics.tp) is int and type(metrics.f1) is float


@given(graph_batches(extra_columns=st.integers(0, 2)), st.sampled_from(REVERSALS))
def test_shd_zero_iff_equal_modulo_diagonal(graphs, reversal):
    other = graphs.copy()
    rows = graphs.shape[1]
    diag = np.arange(rows)
    other[:, diag, diag] = ~other[:, diag, diag]
    assert not graph.shd(graphs, other, reversal=reversal, diagonal="ignore").any()
    counted = graph.shd(graphs, other, reversal=reversal, diagonal="count")
    np.testing.assert_array_equal(counted, rows)


@given(graph_pairs(), st.sampled_from(REVERSALS), st.sampled_from(DIAGONALS))
def test_shd_is_zero_only_for_equal_graphs(pair, reversal, diagonal):
    pred, true = pair
    distance = graph.shd(pred, true, reversal=reversal, diagonal="count")
    np.testing.assert_array_equal(distance == 0, (pred == true).all(axis=(1, 2)))


@given(graph_pairs(), st.sampled_from(REVERSALS), st.sampled_from(DIAGONALS))
def test_shd_symmetric(pair, reversal, diagonal):
    a, b = pair
    kwargs = {"reversal": reversal, "diagonal": diagonal}
    np.testing.assert_array_equal(graph.shd(a, b, **kwargs), graph.shd(b, a, **kwargs))


@given(st.data(), st.sampled_from(REVERSALS), st.sampled_from(DIAGONALS))
def test_shd_triangle_inequality(data, reversal, diagonal):
    a = data.draw(graph_batches(extra_columns=st.integers(0, 2)))
    b = data.draw(hnp.arrays(np.bool_, a.shape))
    c = data.draw(hnp.arrays(np.bool_, a.shape))
    kwargs = {"reversal": reversal, "diagonal": diagonal}
    ab = graph.shd(a, b, **kwargs).astype(np.int64)
    bc = graph.shd(b, c, **kwargs).astype(np.int64)
    ac = graph.shd(a, c, **kwargs).astype(np.int64)
    assert (ac <= ab + bc).all()


@given(dags(st.integers(1, 10)), st.sampled_from(REVERSALS))
def test_shd_against_empty_graph_counts_edges(dag, reversal):
    empty = np.zeros_like(dag)
    assert graph.shd(dag, empty, reversal=reversal) == int(dag.sum())


@given(graph_pairs(extra_columns=st.just(0)), st.sampled_from(REVERSALS), st.data())
def test_shd_invariant_under_node_permutation(pair, reversal, data):
    pred, true = pair
    n = pred.shape[-1]
    perm = np.asarray(data.draw(st.permutations(range(n))), dtype=np.intp)
    permuted = [g[:, perm][:, :, perm] for g in (pred, true)]
    np.testing.assert_array_equal(
        graph.shd(*permuted, reversal=reversal), graph.shd(pred, true, reversal=reversal)
    )


def test_shd_input_dtypes_and_thresholds():
    rng = np.random.default_rng(1)
    weights = rng.random((10, 5, 6))
    true = rng.random((10, 5, 6)) < 0.3
    binary = weights > 0.6
    expected = graph.shd(binary, true)
    np.testing.assert_array_equal(graph.shd(weights, true, threshold=0.6), expected)
    np.testing.assert_array_equal(graph.shd(binary.astype(np.int32) * 3, true), expected)
    np.testing.assert_array_equal(
        graph.shd(binary.astype(np.uint8), true.astype(float), threshold=0.5), expected
    )
    np.testing.assert_array_equal(graph.shd(binary.tolist(), true.tolist()), expected)
    np.testing.assert_array_equal(
        graph.shd(binary.transpose(0, 2, 1).transpose(0, 2, 1), true), expected
    )
    np.testing.assert_array_equal(graph.shd(binary, true, num_threads=1), expected)


@given(layer_stacks(batch_size=st.integers(1, 5), n_nodes=st.integers(1, 9), max_count=3))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_path_counts_match_matmul_chain(layout, layers):
    got = graph.path_counts(layers, layout=layout)
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, ref.path_counts(layers, layout).astype(np.uint64))
    floats = graph.path_counts(layers.astype(np.float32), layout=layout)
    assert floats.dtype == np.float64
    np.testing.assert_allclose(floats, got.astype(np.float64), rtol=1e-12)


@given(layer_stacks(batch_size=st.integers(1, 5), n_nodes=st.integers(1, 9)))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_reachability_is_nonzero_pattern_of_counts(layout, layers):
    counts = graph.path_counts(layers, layout=layout)
    reach = graph.reachability(layers, layout=layout)
    assert reach.dtype == np.bool_
    np.testing.assert_array_equal(reach, counts > 0)
    packed = graph.reachability(layers, layout=layout, packed=True)
    np.testing.assert_array_equal(graph.unpack_rows(packed, layers.shape[-1]), reach)
    np.testing.assert_array_equal(graph.pack_rows(reach), packed)


def test_layouts_describe_the_same_graph():
    rng = np.random.default_rng(2)
    layers = rng.random((7, 3, 6, 6)) < 0.3
    parent_child = graph.path_counts(layers, layout="parent_child")
    child_parent = graph.path_counts(layers.transpose(0, 1, 3, 2), layout="child_parent")
    np.testing.assert_array_equal(parent_child, child_parent.transpose(0, 2, 1))


@given(layer_stacks(n_nodes=st.integers(2, 7)), st.data())
def test_adding_an_edge_never_removes_a_path(layers, data):
    n_layers, n, _ = layers.shape
    layer = data.draw(st.integers(0, n_layers - 1))
    i, j = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
    more = layers.copy()
    more[layer, i, j] = True
    before, after = graph.path_counts(layers), graph.path_counts(more)
    assert (after >= before).all()
    assert (graph.reachability(more) >= graph.reachability(layers)).all()


def test_single_stack_shapes_and_known_counts():
    chain = np.zeros((2, 3, 3), dtype=bool)
    chain[0, 0, 1] = True  # layer 1: 0 -> 1
    chain[1, 1, 2] = True  # layer 2: 1 -> 2
    counts = graph.path_counts(chain)
    expected = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1]], dtype=np.uint64)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(
        graph.causal_graph(chain), np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=bool)
    )


def test_causal_graph_keeps_real_self_loops():
    layers = np.zeros((2, 2, 2), dtype=np.int64)
    layers[1, 0, 0] = 1
    layers[0, 0, 1] = 2
    got = graph.causal_graph(layers)
    np.testing.assert_array_equal(got, [[True, True], [False, False]])
    weights = layers.astype(float) * 0.4
    np.testing.assert_array_equal(
        graph.causal_graph(weights, threshold=0.5), [[False, True], [False, False]]
    )


def test_path_counts_into_a_reused_buffer():
    rng = np.random.default_rng(4)
    layers = rng.random((6, 3, 5, 5)) < 0.4
    out = np.full((6, 5, 5), 7, dtype=np.uint64)
    assert graph.path_counts(layers, out=out) is out
    np.testing.assert_array_equal(out, graph.path_counts(layers))
    single = np.empty((5, 5), dtype=np.uint64)
    np.testing.assert_array_equal(graph.path_counts(layers[0], out=single), out[0])
    with pytest.raises(InvalidInputError, match="out: expected shape"):
        graph.path_counts(layers, out=np.empty((6, 4, 4), dtype=np.uint64))
    with pytest.raises(InvalidTypeError, match="out: expected a numpy uint64"):
        graph.path_counts(layers, out=np.empty((6, 5, 5)))
    with pytest.raises(InvalidInputError, match="C-contiguous"):
        graph.path_counts(layers, out=np.empty((5, 5, 6), dtype=np.uint64).transpose(2, 0, 1))
    with pytest.raises(InvalidInputError, match="exact"):
        graph.path_counts(layers.astype(float), out=out)


def test_exact_counts_overflow_raises():
    big = np.full((1, 2, 3, 3), 2**40, dtype=np.uint64)
    with pytest.raises(CountOverflowError, match="uint64"):
        graph.path_counts(big)
    assert graph.path_counts(big.astype(np.float64)).dtype == np.float64


def test_large_exact_counts_near_the_limit():
    value = 2**31
    layers = np.zeros((2, 2, 2), dtype=np.uint64)
    layers[:, 0, 0] = layers[:, 1, 1] = value
    counts = graph.path_counts(layers)
    assert int(counts[0, 0]) == (value + 1) ** 2


BAD_GRAPH_INPUTS = [
    (np.zeros(3), InvalidInputError, "pred: expected a graph"),
    (np.zeros((2, 3, 3, 3)), InvalidInputError, "pred: expected a graph"),
    (np.zeros((3, 2)), InvalidInputError, "1 <= R <= C"),
    (np.zeros((0, 3, 3)), InvalidInputError, "empty batch"),
    (np.zeros((65, 65), bool), InvalidInputError, "at most 64 nodes"),
    (np.array([["a", "b"], ["c", "d"]]), InvalidTypeError, "dtype"),
    (np.full((2, 2), -1), InvalidInputError, "non-negative"),
    (np.full((2, 2), np.nan), InvalidInputError, "threshold"),
]


@pytest.mark.parametrize(("pred", "error", "message"), BAD_GRAPH_INPUTS)
def test_bad_graph_inputs_raise_clear_errors(pred, error, message):
    with pytest.raises(error, match=message):
        graph.shd(pred, pred)
    with pytest.raises(error):
        graph.edge_metrics(pred, pred)


def test_more_bad_inputs():
    ok = np.zeros((3, 3), bool)
    with pytest.raises(InvalidInputError, match="true: expected the shape of pred"):
        graph.shd(ok, np.zeros((4, 4), bool))
    with pytest.raises(InvalidInputError, match="finite"):
        graph.shd(np.full((2, 2), np.inf), np.zeros((2, 2)), threshold=0.5)
    with pytest.raises(InvalidInputError, match="reversal"):
        graph.shd(ok, ok, reversal="triple")
    with pytest.raises(InvalidInputError, match="layout"):
        graph.path_counts(np.zeros((1, 2, 2)), layout="rows")
    with pytest.raises(InvalidInputError, match="square"):
        graph.path_counts(np.zeros((1, 2, 3)))
    with pytest.raises(InvalidInputError, match="negative"):
        graph.path_counts(-np.ones((1, 2, 2)))
    with pytest.raises(InvalidInputError, match="negative"):
        graph.path_counts(-np.ones((1, 2, 2), dtype=np.int8))
    with pytest.raises(InvalidInputError, match="threshold"):
        graph.reachability(np.ones((1, 2, 2)))
    with pytest.raises(InvalidInputError, match="threshold"):
        graph.causal_graph(np.ones((1, 2, 2)))
    with pytest.raises(InvalidInputError, match="num_threads"):
        graph.shd(ok, ok, num_threads=0)


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.bool_, np.int8, np.uint16, np.int64, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5),
    ),
    st.sampled_from([None, 0.5]),
)
def test_malformed_inputs_never_crash(array, threshold):
    """Any shape or dtype gives a result or an s2ssm exception, never another error."""
    for call in (
        lambda: graph.shd(array, array, threshold=threshold),
        lambda: graph.edge_metrics(array, array, threshold=threshold),
        lambda: graph.path_counts(array),
        lambda: graph.reachability(array, threshold=threshold),
        lambda: graph.causal_graph(array, threshold=threshold),
    ):
        try:
            call()
        except S2ssmError:
            pass


@given(adjacency_matrices(st.integers(1, 6), extra_columns=st.integers(0, 2)))
def test_pack_rows_round_trip(graph_matrix):
    packed = graph.pack_rows(graph_matrix)
    np.testing.assert_array_equal(graph.unpack_rows(packed, graph_matrix.shape[-1]), graph_matrix)


@given(adjacency_matrices(st.integers(1, 8), extra_columns=st.integers(0, 0)))
def test_pack_words_round_trip(graph_matrix):
    word = graph.pack_words(graph_matrix)
    assert word.dtype == np.uint64 and word.shape == ()
    n = graph_matrix.shape[0]
    expected = sum(1 << (8 * i + j) for i, j in zip(*np.nonzero(graph_matrix), strict=True))
    assert int(word) == expected
    np.testing.assert_array_equal(graph.unpack_words(word, n, n), graph_matrix)
    batch = np.stack([graph_matrix, ~graph_matrix])
    np.testing.assert_array_equal(graph.unpack_words(graph.pack_words(batch), n, n), batch)


def test_results_do_not_depend_on_thread_count():
    rng = np.random.default_rng(3)
    pred, true = rng.random((2, 20000, 8, 8)) < 0.3
    layers = rng.random((5000, 4, 8, 8)) < 0.3
    for reversal in REVERSALS:
        one = graph.shd(pred, true, reversal=reversal, num_threads=1)
        np.testing.assert_array_equal(graph.shd(pred, true, reversal=reversal, num_threads=2), one)
    np.testing.assert_array_equal(
        graph.path_counts(layers, num_threads=1), graph.path_counts(layers, num_threads=2)
    )


def test_bad_arguments_raise_errors_naming_them() -> None:
    a = np.zeros((2, 3, 3), bool)
    with pytest.raises(InvalidTypeError, match="threshold: expected a number"):
        graph.shd(a, a, threshold="0.5")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="n_cols: expected an integer"):
        graph.unpack_rows(graph.pack_rows(a), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="graphs: expected finite values"):
        graph.pack_rows(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(InvalidInputError, match="graphs: expected non-negative"):
        graph.pack_rows(np.array([[0, -1], [0, 1]]))
    np.testing.assert_array_equal(graph.unpack_rows(graph.pack_rows(a), 3), a)


@pytest.mark.parametrize(
    ("threads", "error"),
    [(5000, InvalidInputError), (2**40, InvalidInputError), (-1, InvalidInputError),
     (0, InvalidInputError), (True, InvalidTypeError), ("2", InvalidTypeError)],
)  # fmt: skip
def test_thread_counts_are_checked_before_any_work(threads: object, error: type) -> None:
    a = np.zeros((2, 3, 3), bool)
    layers = np.zeros((2, 2, 3, 3), bool)
    calls = [
        lambda: graph.shd(a, a, num_threads=threads),
        lambda: graph.edge_metrics(a, a, num_threads=threads),
        lambda: graph.path_counts(layers, num_threads=threads),
        lambda: graph.reachability(layers, num_threads=threads),
        lambda: graph.causal_graph(layers, num_threads=threads),
    ]
    for call in calls:
        with pytest.raises(error, match="num_threads"):
            call()
    assert graph.shd(a, a, num_threads=2).tolist() == [0, 0]


def test_the_core_refuses_arrays_that_are_not_c_contiguous() -> None:
    # numpy's Fortran order is contiguous too: read as C order it gave wrong answers
    from s2ssm import _core

    rng = np.random.default_rng(0)
    a = (rng.random((2, 3, 4)) > 0.5).astype(np.uint8)
    f = np.asfortranarray(a)
    with pytest.raises(InvalidInputError, match="pred: expected a C-contiguous array"):
        _core.shd(f, np.zeros_like(a), "double", "ignore")
    with pytest.raises(InvalidInputError, match="pred: expected a C-contiguous array"):
        _core.edge_counts(f, np.zeros_like(a), "ignore")
    layers = (rng.random((2, 2, 4, 4)) > 0.5).astype(np.uint8)
    fl = np.asfortranarray(layers)
    for call in (_core.path_counts_u64, _core.reachability, _core.reachability_dense):
        with pytest.raises(InvalidInputError, match="layers: expected a C-contiguous array"):
            call(fl, "child_parent")
    with pytest.raises(InvalidInputError, match="layers: expected a C-contiguous array"):
        _core.path_counts_f64(np.asfortranarray(layers.astype(np.float64)), "child_parent")
    out = np.asfortranarray(np.zeros((2, 4, 4), np.uint64))
    with pytest.raises(InvalidInputError, match="out: expected a C-contiguous array"):
        _core.path_counts_u64(layers, "child_parent", None, out)
    # the wrappers copy to C order: the same answer for both layouts
    assert graph.shd(f, 0 * a).tolist() == graph.shd(a, 0 * a).tolist()


def test_an_output_too_large_to_allocate_is_a_memory_error_not_an_abort() -> None:
    # (2**40, 0, 0) holds no data but asks for terabytes of output. Run in a child process
    # whose address space is capped, so the allocation fails whatever the overcommit policy,
    # and an abort (the old behaviour) fails this test instead of killing pytest.
    import subprocess
    import sys

    script = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
import numpy as np
from s2ssm import _core
z3 = np.zeros((2**40, 0, 0), np.uint8)
z4 = np.zeros((2**40, 0, 64, 64), np.uint8)
calls = [
    lambda: _core.shd(z3, z3, "double", "ignore"),
    lambda: _core.edge_counts(z3, z3, "ignore"),
    lambda: _core.path_counts_u64(z4, "child_parent"),
    lambda: _core.path_counts_f64(z4.astype(np.float64), "child_parent"),
    lambda: _core.reachability(z4, "child_parent"),
    lambda: _core.reachability_dense(z4, "child_parent"),
]
for call in calls:
    try:
        call()
    except MemoryError as error:
        assert "cannot allocate an output" in str(error), error
    else:
        raise SystemExit("no MemoryError")
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_one_thread_cap_for_configs_metrics_and_the_simulator() -> None:
    from s2ssm import config

    assert config.MAX_THREADS == graph.MAX_THREADS
