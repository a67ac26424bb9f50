"""Batched causal-graph metrics (core in Rust): SHD, edge metrics, path counting, reachability.

Conventions
-----------
Adjacency layout. ``layout="parent_child"`` (the default): ``A[i, j] != 0`` is an edge
``i -> j``. ``layout="child_parent"``: ``A[i, j] != 0`` is an edge ``j -> i`` (rows are
children, as attention matrices come: row = query). Only the path functions depend on the
layout; SHD and edge metrics compare both graphs cell by cell, which gives the same numbers in
either layout as long as both graphs use the same one.

Shapes. A graph is ``(R, C)`` with ``C >= R`` (single graph: the functions return Python
scalars) or a batch ``(B, R, C)`` (they return numpy arrays). The first ``R`` columns form the
square node graph; extra columns are parent-only nodes compared cell by cell (S2-SSM's
environment / intervention token: the ``K x (K + 1)`` local graph in the ``child_parent``
layout of :mod:`s2ssm.sim`). At most :data:`MAX_NODES` columns.

Dtypes. bool; integers (non-negative, an edge is a non-zero entry); floats (finite, an edge is
an entry ``> threshold``, and ``threshold`` must be given — attention weights have no natural
cut-off).

Structural Hamming distance
---------------------------
``reversal="double"`` counts every differing matrix cell: a missing or an extra edge costs 1, a
reversed edge 2. This is CausalDiscoveryToolbox's ``cdt.metrics.SHD(target, pred)`` with its
default ``double_for_anticausal=True``. ``reversal="single"`` counts once every node pair
``{i, j}`` whose edges differ, so a reversal costs 1: the textbook SHD, as computed by cdt with
``double_for_anticausal=False``, NOTEARS' ``count_accuracy`` (``shd``), gCastle's
``MetricsDAG`` (``shd``) and causal-learn's ``SHD``. Extra parent-only columns have no reversed
counterpart and count 1 per differing cell in both conventions.

``diagonal="ignore"`` (default) never compares self-loops; ``diagonal="count"`` adds 1 per
differing diagonal cell. Self-loops carry meaning in S2-SSM's local graphs (an object's state
caused by its own previous state; a variable under intervention loses it), so use ``"count"``
there, and ``"ignore"`` for DAG benchmarks. (cdt compares the diagonal too: with
``double_for_anticausal=True`` it matches ``diagonal="count"``; with ``False`` it charges half a
point per differing self-loop, which no option here reproduces.)

Worked examples (3 nodes, true graph ``0 -> 1 -> 2``; the values of every library named above
agree with these, see ``tests/test_graph_reference_values.py``)::

    pred                             double  single
    0 -> 1 -> 2            (equal)      0       0
    1 -> 0, 1 -> 2         (reversal)   2       1
    0 -> 1                 (missing)    1       1
    0 -> 1 -> 2, 0 -> 2    (extra)      1       1
    empty graph                         2       2
    2 -> 1 -> 0            (both rev.)  4       2
    0 -> 1 -> 2, 1 -> 1    (self-loop)  0 / 1 with diagonal="count"

Path counting
-------------
For per-layer adjacency matrices ``A_1 .. A_L`` (``(L, N, N)`` or ``(B, L, N, N)``),
:func:`path_counts` returns, in the ``child_parent`` layout, ``(A_L + I) @ ... @ (A_1 + I)``
(S2-SSM / SPARTAN); in the ``parent_child`` layout the same graph in that layout, which is
``(A_1 + I) @ ... @ (A_L + I)``. Entry ``(child, parent)`` resp. ``(parent, child)`` counts the
paths through the layers where every step is an edge of that layer or stays at its node.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from s2ssm import _core
from s2ssm.errors import InvalidInputError, InvalidTypeError

__all__ = [
    "MAX_NODES",
    "MAX_THREADS",
    "EdgeMetrics",
    "causal_graph",
    "edge_metrics",
    "pack_rows",
    "pack_words",
    "path_counts",
    "reachability",
    "shd",
    "unpack_rows",
    "unpack_words",
]

MAX_NODES: int = int(_core.MAX_NODES)
"""Largest number of nodes (columns) a graph may have."""

Layout = Literal["parent_child", "child_parent"]
Reversal = Literal["double", "single"]
Diagonal = Literal["ignore", "count"]

_LAYOUTS = ("parent_child", "child_parent")


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInputError(f"{name}: expected one of {allowed}, got {value!r}")
    return value


def _as_array(name: str, value: object) -> np.ndarray:
    """``value`` as an ndarray of a bool, integer or float dtype."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise InvalidTypeError(f"{name}: expected an array-like of numbers, got {error}") from None
    if array.dtype.kind not in "biuf":
        raise InvalidTypeError(
            f"{name}: expected a bool, integer or float array, got dtype {array.dtype}"
        )
    return array


#: The most worker threads a call may ask for (the simulator's cap too).
MAX_THREADS = 1024


def _threads(num_threads: object) -> int | None:
    """``num_threads`` checked: None (the library default) or an integer in 1..MAX_THREADS."""
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise InvalidTypeError(
            f"num_threads: expected an integer or None, got {type(num_threads).__name__}"
        )
    if not 1 <= int(num_threads) <= MAX_THREADS:
        raise InvalidInputError(f"num_threads: expected 1 to {MAX_THREADS}, got {num_threads}")
    return int(num_threads)


def _binarize(name: str, array: np.ndarray, threshold: float | None) -> np.ndarray:
    """0/1 ``uint8`` C-contiguous view or copy of ``array`` (bool arrays are not copied)."""
    kind = array.dtype.kind
    if kind == "f":
        if threshold is None:
            raise InvalidInputError(
                f"{name}: float input needs an explicit threshold (edge = value > threshold)"
            )
        if not np.isfinite(array).all():
            raise InvalidInputError(f"{name}: expected finite values, got NaN or inf")
    if kind == "i" and (array < 0).any():
        raise InvalidInputError(f"{name}: expected non-negative entries, got negative values")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise InvalidTypeError(
                f"threshold: expected a number or None, got {type(threshold).__name__}"
            )
        if not np.isfinite(threshold):
            raise InvalidInputError(f"threshold: expected a finite number, got {threshold!r}")
        if kind == "b":
            array = array.astype(np.uint8)
        return np.ascontiguousarray(array > threshold).view(np.uint8)
    if kind == "b":
        return np.ascontiguousarray(array).view(np.uint8)
    return np.ascontiguousarray(array != 0).view(np.uint8)


def _graph_batch(name: str, value: object, threshold: float | None) -> tuple[np.ndarray, bool]:
    """``(B, R, C)`` uint8 batch of ``value`` and whether a single graph was given."""
    array = _as_array(name, value)
    if array.ndim not in (2, 3):
        raise InvalidInputError(
            f"{name}: expected a graph (R, C) or a batch (B, R, C), got shape {array.shape}"
        )
    rows, cols = array.shape[-2:]
    if array.ndim == 3 and array.shape[0] == 0:
        raise InvalidInputError(f"{name}: expected at least one graph, got an empty batch")
    if rows == 0 or cols < rows:
        raise InvalidInputError(
            f"{name}: expected (R, C) graphs with 1 <= R <= C (extra columns are parent-only "
            f"nodes), got shape {array.shape}"
        )
    if cols > MAX_NODES:
        raise InvalidInputError(f"{name}: expected at most {MAX_NODES} nodes, got {cols}")
    single = array.ndim == 2
    binary = _binarize(name, array, threshold)
    return (binary[None] if single else binary), single


def _graph_pair(
    pred: object, true: object, threshold: float | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    p, single_p = _graph_batch("pred", pred, threshold)
    t, single_t = _graph_batch("true", true, threshold)
    if single_p != single_t or p.shape != t.shape:
        shape_p = p.shape[1:] if single_p else p.shape
        shape_t = t.shape[1:] if single_t else t.shape
        raise InvalidInputError(f"true: expected the shape of pred {shape_p}, got {shape_t}")
    return p, t, single_p


@overload
def shd(
    pred: npt.ArrayLike,
    true: npt.ArrayLike,
    *,
    reversal: Reversal = ...,
    diagonal: Diagonal = ...,
    threshold: float | None = ...,
    num_threads: int | None = ...,
) -> Any: ...


def shd(
    pred: npt.ArrayLike,
    true: npt.ArrayLike,
    *,
    reversal: Reversal = "double",
    diagonal: Diagonal = "ignore",
    threshold: float | None = None,
    num_threads: int | None = None,
) -> int | np.ndarray:
    """Structural Hamming distance between predicted and true graphs (see the module docs).

    Returns an ``int`` for a single ``(R, C)`` pair, a ``uint32`` array ``(B,)`` for batches.
    """
    reversal = _choice("reversal", reversal, ("double", "single"))  # type: ignore[assignment]
    diagonal = _choice("diagonal", diagonal, ("ignore", "count"))  # type: ignore[assignment]
    p, t, single = _graph_pair(pred, true, threshold)
    out = _core.shd(p, t, reversal, diagonal, _threads(num_threads))
    return int(out[0]) if single else out


@dataclass(frozen=True)
class EdgeMetrics:
    """Directed-edge confusion counts and rates of predicted against true graphs.

    Every field is a Python number for a single graph pair and a ``(B,)`` array for batches.
    Cells compared: all ``R * C`` directed cells, minus the ``R`` diagonal ones under
    ``diagonal="ignore"``. A rate with an empty denominator is 0 (no predicted edges: precision
    and FDR 0; no true edges: recall/TPR 0; no true non-edges: FPR 0).
    """

    tp: Any
    """True positives: edges in both graphs."""
    fp: Any
    """False positives: predicted edges absent from the true graph."""
    fn: Any
    """False negatives: true edges that were not predicted."""
    tn: Any
    """True negatives: cells empty in both graphs."""
    precision: Any
    """tp / (tp + fp)."""
    recall: Any
    """tp / (tp + fn), the same as :attr:`tpr`."""
    f1: Any
    """2 tp / (2 tp + fp + fn)."""
    fdr: Any
    """fp / (tp + fp), false discovery rate."""
    tpr: Any
    """tp / (tp + fn), true positive rate."""
    fpr: Any
    """fp / (fp + tn), false positive rate."""
    nnz: Any
    """Number of predicted edges, tp + fp."""


def _rate(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    num = numerator.astype(np.float64)
    den = denominator.astype(np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def edge_metrics(
    pred: npt.ArrayLike,
    true: npt.ArrayLike,
    *,
    diagonal: Diagonal = "ignore",
    threshold: float | None = None,
    num_threads: int | None = None,
) -> EdgeMetrics:
    """TP, FP, FN, TN, precision, recall, F1, FDR, TPR, FPR and nnz of directed edges."""
    diagonal = _choice("diagonal", diagonal, ("ignore", "count"))  # type: ignore[assignment]
    p, t, single = _graph_pair(pred, true, threshold)
    counts = _core.edge_counts(p, t, diagonal, _threads(num_threads)).astype(np.int64)
    tp, fp, fn, tn = counts.T
    fields = {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": _rate(tp, tp + fp),
        "recall": _rate(tp, tp + fn),
        "f1": _rate(2 * tp, 2 * tp + fp + fn),
        "fdr": _rate(fp, tp + fp),
        "tpr": _rate(tp, tp + fn),
        "fpr": _rate(fp, fp + tn),
        "nnz": tp + fp,
    }
    if single:
        return EdgeMetrics(**{name: value[0].item() for name, value in fields.items()})
    return EdgeMetrics(**fields)


def _layer_stack(name: str, value: object) -> tuple[np.ndarray, bool]:
    """``(B, L, N, N)`` array of ``value`` and whether a single stack ``(L, N, N)`` was given."""
    array = _as_array(name, value)
    if array.ndim not in (3, 4):
        raise InvalidInputError(
            f"{name}: expected layers (L, N, N) or a batch (B, L, N, N), got shape {array.shape}"
        )
    b_l_n = array.shape if array.ndim == 4 else (1, *array.shape)
    batch, n_layers, rows, cols = b_l_n
    if rows != cols:
        raise InvalidInputError(f"{name}: expected square layers (N, N), got {(rows, cols)}")
    if batch == 0 or n_layers == 0 or rows == 0:
        raise InvalidInputError(
            f"{name}: expected at least one stack, one layer and one node, got shape {array.shape}"
        )
    if rows > MAX_NODES:
        raise InvalidInputError(f"{name}: expected at most {MAX_NODES} nodes, got {rows}")
    return array.reshape(b_l_n), array.ndim == 3


def path_counts(
    layers: npt.ArrayLike,
    *,
    layout: Layout = "parent_child",
    out: np.ndarray | None = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """Path-count matrix of per-layer adjacencies (see the module docs for the product order).

    bool and integer layers give exact ``uint64`` counts (raising :class:`CountOverflowError`
    when a count exceeds ``2**64 - 1``); float layers give ``float64``. Entries must be
    non-negative and finite. Returns ``(N, N)`` for ``(L, N, N)`` and ``(B, N, N)`` for batches.
    For exact counts, ``out`` (a C-contiguous ``uint64`` array of the result's shape) receives
    the counts and is returned, so a loop over many batches can reuse one buffer.
    """
    layout = _choice("layout", layout, _LAYOUTS)  # type: ignore[assignment]
    stack, single = _layer_stack("layers", layers)
    kind = stack.dtype.kind
    if out is not None and kind == "f":
        raise InvalidInputError("out: only exact (bool / integer) counts take an out array")
    if kind == "f":
        if not np.isfinite(stack).all():
            raise InvalidInputError("layers: expected finite values, got NaN or inf")
        if (stack < 0).any():
            raise InvalidInputError("layers: expected non-negative weights, got negative values")
        weights = np.ascontiguousarray(stack, dtype=np.float64)
        counts = _core.path_counts_f64(weights, layout, _threads(num_threads))
    else:
        if kind == "i" and (stack < 0).any():
            raise InvalidInputError("layers: expected non-negative counts, got negative values")
        if kind == "b":
            data = np.ascontiguousarray(stack).view(np.uint8)
        elif stack.dtype == np.uint8:
            data = np.ascontiguousarray(stack)
        else:
            data = np.ascontiguousarray(stack, dtype=np.uint64)
        target = None if out is None else _out_array(out, stack.shape, single)
        counts = _core.path_counts_u64(data, layout, _threads(num_threads), target)
        if out is not None:
            return out
    return counts[0] if single else counts


def _out_array(out: np.ndarray, stack_shape: tuple[int, ...], single: bool) -> np.ndarray:
    """``out`` as the (B, N, N) uint64 array the core writes into (a view, never a copy)."""
    batch, _, n, _ = stack_shape
    expected = (n, n) if single else (batch, n, n)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint64:
        raise InvalidTypeError(f"out: expected a numpy uint64 array, got {type(out).__name__}")
    if out.shape != expected:
        raise InvalidInputError(f"out: expected shape {expected}, got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidInputError("out: expected a writable C-contiguous array")
    return out.reshape(batch, n, n)


def reachability(
    layers: npt.ArrayLike,
    *,
    layout: Layout = "parent_child",
    threshold: float | None = None,
    packed: bool = False,
    num_threads: int | None = None,
) -> np.ndarray:
    """Boolean path product: entry is True iff :func:`path_counts` is non-zero.

    Returns bool ``(N, N)`` / ``(B, N, N)``, or with ``packed=True`` the bit-packed rows
    (``uint64`` ``(N,)`` / ``(B, N)``, bit ``j`` of row ``i`` = entry ``(i, j)``; see
    :func:`unpack_rows`). Float layers need ``threshold`` (edge = weight > threshold).
    """
    layout = _choice("layout", layout, _LAYOUTS)  # type: ignore[assignment]
    stack, single = _layer_stack("layers", layers)
    binary = _binarize("layers", stack, threshold)
    if packed:
        result = _core.reachability(binary, layout, _threads(num_threads))
    else:
        result = _core.reachability_dense(binary, layout, _threads(num_threads)).view(np.bool_)
    return result[0] if single else result


def causal_graph(
    layers: npt.ArrayLike,
    *,
    threshold: float | None = None,
    layout: Layout = "parent_child",
    num_threads: int | None = None,
) -> np.ndarray:
    """Binary causal graph ``(C - I) > threshold`` of the path counts ``C`` of ``layers``.

    Removing the identity drops the trivial "stay in place" path of every node, so the
    diagonal is True only where a real self-loop path exists. ``threshold`` defaults to 0 for
    bool / integer layers and must be given for float layers (it applies to the counts).
    """
    stack = _as_array("layers", layers)
    if stack.dtype.kind == "f" and threshold is None:
        raise InvalidInputError(
            "threshold: float layers need an explicit threshold on their path counts"
        )
    counts = path_counts(stack, layout=layout, num_threads=num_threads)
    limit = 0.0 if threshold is None else float(threshold)
    if not np.isfinite(limit):
        raise InvalidInputError(f"threshold: expected a finite number, got {threshold!r}")
    graph = counts > limit
    n = counts.shape[-1]
    diagonal = np.arange(n)
    graph[..., diagonal, diagonal] = (counts[..., diagonal, diagonal] - 1) > limit
    return graph


def pack_rows(graphs: npt.ArrayLike) -> np.ndarray:
    """Bit-packs bool graphs ``(..., R, C)`` (C <= 64) into ``uint64`` rows ``(..., R)``."""
    array = _as_array("graphs", graphs)
    if array.ndim < 2 or array.shape[-1] > 64:
        raise InvalidInputError(
            f"graphs: expected (..., R, C) with C <= 64, got shape {array.shape}"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInputError("graphs: expected finite values, got NaN or inf")
    if array.dtype.kind in "if" and (array < 0).any():
        raise InvalidInputError("graphs: expected non-negative entries, got negative values")
    bits = np.packbits(array != 0, axis=-1, bitorder="little")
    padded = np.zeros((*bits.shape[:-1], 8), dtype=np.uint8)
    padded[..., : bits.shape[-1]] = bits
    return padded.view("<u8")[..., 0].astype(np.uint64, copy=False)


def unpack_rows(rows: npt.ArrayLike, n_cols: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: ``uint64`` rows ``(..., R)`` to bool ``(..., R, n_cols)``."""
    array = np.asarray(rows)
    if array.dtype != np.uint64:
        raise InvalidTypeError(f"rows: expected a uint64 array, got dtype {array.dtype}")
    if isinstance(n_cols, bool) or not isinstance(n_cols, numbers.Integral):
        raise InvalidTypeError(f"n_cols: expected an integer, got {type(n_cols).__name__}")
    if not 0 <= n_cols <= 64:
        raise InvalidInputError(f"n_cols: expected 0 to 64, got {n_cols}")
    as_bytes = np.ascontiguousarray(array, dtype="<u8").view(np.uint8)
    needed = as_bytes.reshape(*array.shape, 8)[..., : (n_cols + 7) // 8]
    bits = np.unpackbits(needed, axis=-1, count=n_cols, bitorder="little")
    return bits.view(bool)


def pack_words(graphs: npt.ArrayLike) -> np.ndarray:
    """Bit-packs graphs of at most 8 x 8 cells ``(..., R, C)`` into one ``uint64`` each.

    Bit ``8 * i + j`` is cell ``(i, j)``: the core's internal form for 8-node graphs.
    """
    array = _as_array("graphs", graphs)
    if array.ndim < 2 or array.shape[-2] > 8 or array.shape[-1] > 8:
        raise InvalidInputError(
            f"graphs: expected (..., R, C) with R, C <= 8, got shape {array.shape}"
        )
    rows = pack_rows(array)
    shifts = (8 * np.arange(rows.shape[-1], dtype=np.uint64)).astype(np.uint64)
    return np.bitwise_or.reduce(rows << shifts, axis=-1)


def unpack_words(words: npt.ArrayLike, n_rows: int, n_cols: int) -> np.ndarray:
    """Inverse of :func:`pack_words`: ``uint64`` ``(...)`` to bool ``(..., n_rows, n_cols)``."""
    array = np.asarray(words)
    if array.dtype != np.uint64:
        raise InvalidTypeError(f"words: expected a uint64 array, got dtype {array.dtype}")
    if not (0 <= n_rows <= 8 and 0 <= n_cols <= 8):
        raise InvalidInputError(f"n_rows, n_cols: expected 0 to 8, got {n_rows}, {n_cols}")
    shifts = 8 * np.arange(n_rows, dtype=np.uint64)
    rows = (array[..., None] >> shifts) & np.uint64(0xFF)
    return unpack_rows(rows, n_cols)
