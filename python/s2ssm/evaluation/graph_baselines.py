"""What a learned local graph must beat, and how well a model's edge scores rank the true edges.

A local graph (child x parent, ``(K, K + 1)``, last column the environment / intervention
token) is only worth something next to the graphs that need no model:

- the **empty graph** (no edge ever);
- the **best constant graph** (:func:`best_constant_graph`): per cell, the majority value of the
  true local graphs on the *training* data: the best any model could do without looking at the
  state, and a strong answer where an edge is (almost) always or never there;
- **tokens only** (:func:`tokens_only_graphs`), for a model told the intervention targets: per
  cell and per pattern of targets, the majority value of the truth on the training data (a
  pattern not seen in training falls back to the best constant): what reading the tokens and
  nothing else gives.

Per edge (:func:`edge_report`): the AUROC of the model's edge score (a gate probability, or the
expected path count over the layers) against the true edge, and P(open | true), P(open |
false) of the model's thresholded edges. The AUROC is ``None`` where the truth never or always
has the edge on the scored transitions (nothing to rank).

SHD here is :func:`s2ssm.graph.shd` with the conventions of :mod:`s2ssm.evaluation.metrics`
(cell by cell, env column included, self-loops ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from s2ssm import graph
from s2ssm.errors import InvalidInputError

__all__ = [
    "auroc",
    "best_constant_graph",
    "edge_report",
    "graph_scores",
    "tokens_only_graphs",
]


def _graphs(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 3 or array.shape[2] != array.shape[1] + 1:
        raise InvalidInputError(f"{name} must be (N, K, K + 1) graphs, got {array.shape}")
    return array.astype(bool, copy=False)


def best_constant_graph(train_truth: np.ndarray) -> np.ndarray:
    """(K, K + 1) bool: per cell, whether the edge is present in more than half of the
    ``train_truth`` graphs (N, K, K + 1) (a tie is no edge)."""
    truth = _graphs("train_truth", train_truth)
    if truth.shape[0] == 0:
        raise InvalidInputError("train_truth must hold at least one graph")
    return np.asarray(truth.mean(axis=0) > 0.5)


def tokens_only_graphs(
    train_truth: np.ndarray, train_tokens: np.ndarray, tokens: np.ndarray
) -> np.ndarray:
    """(M, K, K + 1) bool: the graph of each of ``tokens`` (M, I) (the intervention targets of
    the transitions to score) from the training graphs (N, K, K + 1) and their targets (N, I):
    per cell, the majority value of the truth among the training transitions with the same
    targets; targets never seen in training get :func:`best_constant_graph`."""
    truth = _graphs("train_truth", train_truth)
    train_tokens = np.asarray(train_tokens, dtype=bool)
    tokens = np.asarray(tokens, dtype=bool)
    if train_tokens.ndim != 2 or train_tokens.shape[0] != truth.shape[0]:
        raise InvalidInputError(
            f"train_tokens must be ({truth.shape[0]}, I), got {train_tokens.shape}"
        )
    if tokens.ndim != 2 or tokens.shape[1] != train_tokens.shape[1]:
        raise InvalidInputError(f"tokens must be (M, {train_tokens.shape[1]}), got {tokens.shape}")
    fallback = best_constant_graph(truth)
    patterns, inverse = np.unique(train_tokens, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(patterns)).astype(np.float64)
    sums = np.zeros((len(patterns), *truth.shape[1:]))
    np.add.at(sums, inverse, truth)
    majority = sums / counts[:, None, None] > 0.5  # (P, K, K + 1)
    out = np.broadcast_to(fallback, (len(tokens), *truth.shape[1:])).copy()
    if len(tokens) == 0:
        return out
    # the index of each scored pattern among the training patterns, or -1
    match = (tokens[:, None, :] == patterns[None, :, :]).all(axis=-1)  # (M, P)
    seen = match.any(axis=1)
    out[seen] = majority[match[seen].argmax(axis=1)]
    return out


def graph_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean local SHD and the F1 of the edges (pooled over the graphs) of ``pred`` against
    ``truth``, both (N, K, K + 1) (``pred`` may be one (K, K + 1) graph for every
    transition), self-loops ignored."""
    truth = _graphs("truth", truth)
    pred = np.asarray(pred, dtype=bool)
    pred = _graphs("pred", np.broadcast_to(pred, truth.shape))
    shd = float(np.mean(graph.shd(pred, truth, diagonal="ignore")))
    metrics = graph.edge_metrics(pred, truth, diagonal="ignore")
    tp, fp, fn = (int(np.sum(getattr(metrics, f))) for f in ("tp", "fp", "fn"))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"shd_local": shd, "precision": precision, "recall": recall, "f1": f1}


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """The area under the ROC curve of ``scores`` for the bool ``labels`` (1-D, same length):
    the probability that a random positive scores above a random negative, ties counting one
    half (the Mann-Whitney statistic from average ranks). ``None`` without positives or
    without negatives."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=bool).reshape(-1)
    if scores.shape != labels.shape:
        raise InvalidInputError(f"scores {scores.shape} and labels {labels.shape} differ")
    if np.isnan(scores).any():
        raise InvalidInputError("scores must not be nan")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    upper = np.cumsum(counts)  # 1-based rank of the last element of each group of ties
    average_rank = upper - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][labels].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def edge_report(
    scores: np.ndarray,
    opened: np.ndarray,
    truth: np.ndarray,
    children: Sequence[str],
    parents: Sequence[str],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per off-diagonal cell ``[child][parent]``: ``auroc`` of ``scores`` against ``truth``,
    ``p_open_true`` / ``p_open_false`` (the share of transitions with / without the true edge
    on which ``opened`` has it; ``None`` without such transitions) and ``n_true`` / ``n`` (how
    many transitions have the true edge, of how many). ``scores`` (N, K, K + 1) float,
    ``opened`` and ``truth`` (N, K, K + 1) bool; ``children`` K names, ``parents`` K + 1."""
    truth = _graphs("truth", truth)
    opened = _graphs("opened", opened)
    scores = np.asarray(scores, dtype=np.float64)
    n, k = truth.shape[:2]
    if scores.shape != truth.shape or opened.shape != truth.shape:
        raise InvalidInputError(
            f"scores {scores.shape}, opened {opened.shape} and truth {truth.shape} must match"
        )
    if len(children) != k or len(parents) != k + 1:
        raise InvalidInputError(f"need {k} child and {k + 1} parent names")
    report: dict[str, dict[str, dict[str, Any]]] = {}
    for i, child in enumerate(children):
        row = report.setdefault(child, {})
        for j, parent in enumerate(parents):
            if i == j:
                continue
            t, o = truth[:, i, j], opened[:, i, j]
            n_true = int(t.sum())
            row[parent] = {
                "auroc": auroc(scores[:, i, j], t),
                "p_open_true": float(o[t].mean()) if n_true else None,
                "p_open_false": float(o[~t].mean()) if n_true < n else None,
                "n_true": n_true,
                "n": int(n),
            }
    return report
