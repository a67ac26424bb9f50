"""s2ssm.evaluation.graph_baselines against plain loops: best constant and tokens-only graphs,
AUROC (against counting every positive-negative pair), the per-edge report."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from s2ssm.errors import InvalidInputError
from s2ssm.evaluation.graph_baselines import (
    auroc,
    best_constant_graph,
    edge_report,
    graph_scores,
    tokens_only_graphs,
)


def graphs(n: int, k: int = 3) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.bool_, (n, k, k + 1))


def auroc_by_pairs(scores: np.ndarray, labels: np.ndarray) -> float | None:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


@given(st.data())
def test_auroc_is_the_share_of_correctly_ordered_pairs(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 40))
    # few distinct values, so that ties happen
    scores = data.draw(hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 0.25, 0.5, 1.0])))
    labels = data.draw(hnp.arrays(np.bool_, n))
    got, want = auroc(scores, labels), auroc_by_pairs(scores, labels)
    assert (got is None) == (want is None)
    if want is not None:
        assert got == pytest.approx(want, abs=1e-12)


def test_auroc_extremes_and_bad_input() -> None:
    labels = np.array([0, 0, 1, 1], bool)
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert auroc(np.ones(4), labels) == 0.5
    assert auroc(np.ones(3), np.ones(3, bool)) is None
    with pytest.raises(InvalidInputError, match="differ"):
        auroc(np.ones(3), labels)
    with pytest.raises(InvalidInputError, match="nan"):
        auroc(np.array([0.0, np.nan, 1.0, 1.0]), labels)


@given(st.integers(1, 30).flatmap(graphs))
def test_best_constant_is_the_majority_of_each_cell(truth: np.ndarray) -> None:
    got = best_constant_graph(truth)
    for i, j in itertools.product(range(truth.shape[1]), range(truth.shape[2])):
        assert got[i, j] == (sum(bool(g[i, j]) for g in truth) * 2 > len(truth))


def test_best_constant_is_the_best_constant() -> None:
    # no other constant graph has a lower mean SHD on the data it was fitted on
    rng = np.random.default_rng(0)
    truth = rng.random((200, 2, 3)) < np.array([[0.9, 0.3, 0.6], [0.1, 0.8, 0.45]])
    best = graph_scores(best_constant_graph(truth), truth)["shd_local"]
    for bits in itertools.product([False, True], repeat=6):
        other = np.array(bits).reshape(2, 3)
        assert best <= graph_scores(other, truth)["shd_local"] + 1e-12


@given(st.data())
def test_tokens_only_is_the_majority_given_the_tokens(data: st.DataObject) -> None:
    n, m, k, i = data.draw(st.integers(1, 25)), data.draw(st.integers(0, 10)), 2, 2
    truth = data.draw(graphs(n, k))
    train_tokens = data.draw(hnp.arrays(np.bool_, (n, i)))
    tokens = data.draw(hnp.arrays(np.bool_, (m, i)))
    got = tokens_only_graphs(truth, train_tokens, tokens)
    assert got.shape == (m, k, k + 1)
    constant = best_constant_graph(truth)
    for row, token in enumerate(tokens):
        same = [g for g, t in zip(truth, train_tokens, strict=True) if (t == token).all()]
        if not same:
            assert (got[row] == constant).all()
            continue
        for a, b in itertools.product(range(k), range(k + 1)):
            assert got[row, a, b] == (sum(bool(g[a, b]) for g in same) * 2 > len(same))


def test_tokens_only_reads_the_intervened_object() -> None:
    # env -> child 0 exactly when target 0 is intervened: the tokens give it, a constant cannot
    truth = np.zeros((100, 2, 3), bool)
    tokens = np.zeros((100, 1), bool)
    tokens[::4] = True
    truth[::4, 0, 2] = True
    told = tokens_only_graphs(truth, tokens, tokens)
    assert graph_scores(told, truth)["shd_local"] == 0.0
    assert graph_scores(best_constant_graph(truth), truth)["shd_local"] == 0.25


def test_graph_scores_by_hand() -> None:
    truth = np.array([[[1, 1, 0], [0, 1, 1]]], bool)  # off-diagonal true: (0, 1), (1, 2)
    pred = np.array([[1, 1, 1], [0, 0, 0]], bool)  # off-diagonal predicted: (0, 1), (0, 2)
    scores = graph_scores(pred, truth)
    assert scores["shd_local"] == 2.0
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["f1"] == 0.5


def test_edge_report_by_hand() -> None:
    truth = np.zeros((4, 2, 3), bool)
    truth[:2, 0, 1] = True  # parent b -> child a on the first two transitions
    opened = np.zeros_like(truth)
    opened[[0, 2], 0, 1] = True
    scores = np.zeros(truth.shape)
    scores[:, 0, 1] = [0.9, 0.7, 0.8, 0.1]
    report = edge_report(scores, opened, truth, ["a", "b"], ["a", "b", "env"])
    assert set(report) == {"a", "b"} and set(report["a"]) == {"b", "env"}
    assert set(report["b"]) == {"a", "env"}  # no diagonal
    e = report["a"]["b"]
    assert e["auroc"] == 0.75  # (0.9 > 0.8, 0.9 > 0.1, 0.7 < 0.8, 0.7 > 0.1) -> 3 of 4
    assert e["p_open_true"] == 0.5 and e["p_open_false"] == 0.5
    assert e["n_true"] == 2 and e["n"] == 4
    never = report["a"]["env"]
    assert never["auroc"] is None and never["p_open_true"] is None
    assert never["p_open_false"] == 0.0


def test_bad_shapes_are_named() -> None:
    with pytest.raises(InvalidInputError, match="train_truth"):
        best_constant_graph(np.zeros((3, 2, 2), bool))
    with pytest.raises(InvalidInputError, match="train_tokens"):
        tokens_only_graphs(np.zeros((3, 2, 3), bool), np.zeros((2, 1), bool), np.zeros((1, 1)))
    with pytest.raises(InvalidInputError, match="tokens"):
        tokens_only_graphs(np.zeros((3, 2, 3), bool), np.zeros((3, 1), bool), np.zeros((1, 2)))
    with pytest.raises(InvalidInputError, match="names"):
        cells = np.zeros((1, 2, 3), bool)
        edge_report(np.zeros((1, 2, 3)), cells, cells, ["a"], ["a"])
