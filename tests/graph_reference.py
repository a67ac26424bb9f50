"""Plain NumPy references of the graph metrics, obviously correct and slow."""

from __future__ import annotations

import numpy as np


def shd(pred: np.ndarray, true: np.ndarray, reversal: str, diagonal: str) -> np.ndarray:
    """SHD of (B, R, C) batches, cell by cell and pair by pair with Python loops."""
    p, t = np.asarray(pred) != 0, np.asarray(true) != 0
    batch, rows, cols = p.shape
    out = np.zeros(batch, dtype=np.int64)
    for b in range(batch):
        for i in range(rows):
            for j in range(cols):
                differs = p[b, i, j] != t[b, i, j]
                if i == j:
                    out[b] += differs and diagonal == "count"
                elif j >= rows or reversal == "double":
                    out[b] += differs
                elif j > i:
                    out[b] += differs or p[b, j, i] != t[b, j, i]
    return out


def edge_counts(pred: np.ndarray, true: np.ndarray, diagonal: str) -> np.ndarray:
    """(B, 4) counts [tp, fp, fn, tn] over the compared cells."""
    p, t = np.asarray(pred) != 0, np.asarray(true) != 0
    keep = np.ones(p.shape[1:], dtype=bool)
    if diagonal == "ignore":
        rows = p.shape[1]
        keep[np.arange(rows), np.arange(rows)] = False
    tp = (p & t & keep).sum((1, 2))
    fp = (p & ~t & keep).sum((1, 2))
    fn = (~p & t & keep).sum((1, 2))
    tn = (~p & ~t & keep).sum((1, 2))
    return np.stack([tp, fp, fn, tn], axis=1)


def path_counts(layers: np.ndarray, layout: str) -> np.ndarray:
    """Matmul chain over (B, L, N, N) layers with Python integers (object dtype: no overflow)."""
    stacks = np.asarray(layers)
    n = stacks.shape[-1]
    eye = np.eye(n, dtype=object if stacks.dtype.kind != "f" else np.float64)
    out = []
    for stack in stacks:
        product = eye.copy()
        for layer in stack:
            factor = layer.astype(eye.dtype) + eye
            product = product @ factor if layout == "parent_child" else factor @ product
        out.append(product)
    return np.stack(out)
