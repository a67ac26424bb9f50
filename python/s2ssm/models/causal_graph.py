"""5. The causal graph of a step: per-layer adjacencies A_i (child x parent) from the gates,
the path counts Ā = (A_L + I) ... (A_1 + I), and the local graph (Ā - I) > 0."""

from __future__ import annotations

import torch
from torch import Tensor

from s2ssm.errors import InvalidInputError

__all__ = [
    "adjacency_layers",
    "local_edge_scores",
    "local_graph_from_edges",
    "path_count_matrix",
    "path_penalty",
]


def adjacency_layers(per_layer: Tensor) -> Tensor:
    """Square child x parent adjacencies from per-layer gates.

    (..., L, K, K + 1) gate values (probabilities or 0/1 edges) -> (..., L, K + 1, K + 1): the
    object-object diagonal is zeroed (self edges are the ``+ I``) and a zero row is added for the
    environment slot, which no attention updates.
    """
    *lead, layers, k, n = per_layer.shape
    if n != k + 1:
        raise InvalidInputError(f"gates must be (..., L, K, K + 1), got {tuple(per_layer.shape)}")
    diag = torch.eye(k, n, dtype=torch.bool, device=per_layer.device)
    a = per_layer.masked_fill(diag, 0)
    return torch.cat([a, a.new_zeros(*lead, layers, 1, n)], dim=-2)


def path_count_matrix(layers: Tensor) -> Tensor:
    """Ā = (A_L + I) @ ... @ (A_1 + I) for child x parent layers (..., L, N, N): Ā[i, j] counts
    the paths from parent j (first layer's input) to child i (last layer's output), the trivial
    path included. Differentiable; the layout of
    ``s2ssm.graph.path_counts(layout="child_parent")``.
    """
    if layers.dim() < 3 or layers.shape[-1] != layers.shape[-2]:
        raise InvalidInputError(f"layers must be (..., L, N, N), got {tuple(layers.shape)}")
    n = layers.shape[-1]
    eye = torch.eye(n, dtype=layers.dtype, device=layers.device)
    total = eye.expand(*layers.shape[:-3], n, n)
    for i in range(layers.shape[-3]):
        total = (layers[..., i, :, :] + eye) @ total
    return total


def path_penalty(gate_probs: Tensor) -> Tensor:
    """Mean over the leading dims of |Ā| minus the self paths, i.e. sum(Ā - I), from gate
    probabilities (..., L, K, K + 1): the expected number of non-trivial causal paths."""
    probs = gate_probs if gate_probs.dtype == torch.float64 else gate_probs.float()
    counts = path_count_matrix(adjacency_layers(probs))
    n = counts.shape[-1]
    return (counts.sum(dim=(-2, -1)) - n).mean()


def local_graph_from_edges(edges: Tensor) -> Tensor:
    """Binary local graphs (..., K, K + 1) (child object at t + 1 x parent slot at t, last column
    the environment) from per-layer binary edges (..., L, K, K + 1): (Ā - I) > 0."""
    counts = path_count_matrix(adjacency_layers(edges.to(torch.float64)))
    k = edges.shape[-2]
    eye = torch.eye(counts.shape[-1], dtype=counts.dtype, device=counts.device)
    return ((counts - eye) > 0)[..., :k, :]


def local_edge_scores(gate_probs: Tensor) -> Tensor:
    """Edge scores of the local graphs (..., K, K + 1) from per-layer gate probabilities
    (..., L, K, K + 1): the expected number of causal paths from each parent slot to each child
    object, Ā - I with every edge weighted by its probability (the gate probability itself for
    one layer), in float64. Ranks the transitions by how likely each local edge is."""
    counts = path_count_matrix(adjacency_layers(gate_probs.to(torch.float64)))
    k = gate_probs.shape[-2]
    eye = torch.eye(counts.shape[-1], dtype=counts.dtype, device=counts.device)
    return (counts - eye)[..., :k, :]
