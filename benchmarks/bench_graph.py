"""Rust graph metrics vs NumPy, side by side in one run; prints throughput and ratios.

    python benchmarks/bench_graph.py [--batch 1000000] [--big-batch 10000] [--repeats 3]

Every Rust result is checked against the NumPy result it is timed against. The ratio is taken
against the fastest NumPy formulation of the same convention (named in the output); a
per-graph Python loop on a small slice shows the scale of a naive implementation.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from s2ssm import graph


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def np_shd_double(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).sum((1, 2))


def np_shd_single_triu(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a != b
    upper = np.triu(np.ones(a.shape[1:], dtype=bool), 1)
    return ((d | d.transpose(0, 2, 1)) & upper).sum((1, 2)) + d.diagonal(0, 1, 2).sum(1)


def np_shd_single_halves(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a != b
    sym = (d | d.transpose(0, 2, 1)).sum((1, 2), dtype=np.int64)
    diag = d.diagonal(0, 1, 2).sum(1)
    return (sym - diag) // 2 + diag


def np_chain(layers: np.ndarray, dtype: type) -> np.ndarray:
    eye = np.eye(layers.shape[-1], dtype=dtype)
    product = layers[:, 0].astype(dtype) + eye
    for index in range(1, layers.shape[1]):
        product = product @ (layers[:, index].astype(dtype) + eye)
    return product


def np_chain_into(layers: np.ndarray, buffers: tuple[np.ndarray, ...]) -> np.ndarray:
    """The uint64 chain with preallocated buffers (no allocation in the loop)."""
    product, factor, spare = buffers
    eye = np.eye(layers.shape[-1], dtype=product.dtype)
    np.add(layers[:, 0], eye, out=product, casting="unsafe")
    for index in range(1, layers.shape[1]):
        np.add(layers[:, index], eye, out=factor, casting="unsafe")
        np.matmul(product, factor, out=spare)
        product, spare = spare, product
    return product


def np_reach_uint8(layers: np.ndarray) -> np.ndarray:
    eye = np.eye(layers.shape[-1], dtype=np.uint8)
    product = (layers[:, 0] | eye.astype(bool)).astype(np.uint8)
    for index in range(1, layers.shape[1]):
        product = ((product @ (layers[:, index] | eye.astype(bool)).astype(np.uint8)) > 0).astype(
            np.uint8
        )
    return product > 0


def python_loop_single(a: np.ndarray, b: np.ndarray) -> list[int]:
    out = []
    for p, t in zip(a, b, strict=True):
        n = p.shape[0]
        out.append(
            sum(
                (p[i, j] != t[i, j]) or (p[j, i] != t[j, i])
                for i in range(n)
                for j in range(i + 1, n)
            )
            + sum(p[i, i] != t[i, i] for i in range(n))
        )
    return out


def report(name: str, n_items: int, rust_s: float, candidates: dict[str, float]) -> None:
    fastest = min(candidates, key=candidates.__getitem__)
    print(f"{name}")
    rate = n_items / rust_s / 1e6
    print(f"  rust                {rust_s * 1e3:10.2f} ms  {rate:10.2f} M graphs/s")
    for label, seconds in candidates.items():
        mark = "  <- fastest numpy" if label == fastest else ""
        print(
            f"  {label:<19} {seconds * 1e3:10.2f} ms  {n_items / seconds / 1e6:10.2f} M graphs/s"
            f"  rust is {seconds / rust_s:7.1f}x{mark}"
        )
    print(f"  ratio vs fastest numpy ({fastest}): {candidates[fastest] / rust_s:.1f}x")


def bench_shd(batch: int, n: int, repeats: int, rng: np.random.Generator) -> None:
    pred = rng.random((batch, n, n)) < 0.3
    true = rng.random((batch, n, n)) < 0.3
    print(f"\n== SHD, {batch:,} graphs of {n} nodes, dense bool input ==")
    rust_s, got = best_time(
        lambda: graph.shd(pred, true, reversal="single", diagonal="count"), repeats
    )
    tri_s, expected = best_time(lambda: np_shd_single_triu(pred, true), repeats)
    half_s, _ = best_time(lambda: np_shd_single_halves(pred, true), repeats)
    np.testing.assert_array_equal(got, expected)
    candidates = {"numpy triu-mask": tri_s, "numpy (sym-diag)/2": half_s}
    small = min(batch, 2000)
    loop_s, _ = best_time(lambda: python_loop_single(pred[:small], true[:small]), 1)
    report("single (pair-wise, reversal = 1)", batch, rust_s, candidates)
    print(f"  python loop         {small / loop_s / 1e6:10.4f} M graphs/s (on {small} graphs)")

    rust_s, got = best_time(
        lambda: graph.shd(pred, true, reversal="double", diagonal="count"), repeats
    )
    np_s, expected = best_time(lambda: np_shd_double(pred, true), repeats)
    np.testing.assert_array_equal(got, expected)
    report("double (cell-wise, (A != B).sum((1, 2)))", batch, rust_s, {"numpy !=.sum": np_s})


def bench_paths(batch: int, n: int, n_layers: int, repeats: int, rng: np.random.Generator) -> None:
    layers = rng.random((batch, n_layers, n, n)) < 0.2
    print(f"\n== paths, {batch:,} stacks of {n_layers} layers x {n} nodes, dense bool input ==")
    rust_s, got = best_time(lambda: graph.reachability(layers), repeats)
    u8_s, expected = best_time(lambda: np_reach_uint8(layers), repeats)
    f32_s, counts_f32 = best_time(lambda: np_chain(layers, np.float32), repeats)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, counts_f32 > 0)
    numpy_reach = {"numpy uint8 matmul": u8_s, "numpy float32 matmul": f32_s}
    report("reachability (boolean semiring), bool output", batch, rust_s, numpy_reach)
    rust_s, packed = best_time(lambda: graph.reachability(layers, packed=True), repeats)
    np.testing.assert_array_equal(graph.unpack_rows(packed, n), expected)
    report("reachability, bit-packed rows (the core's output)", batch, rust_s, numpy_reach)

    rust_s, got = best_time(lambda: graph.path_counts(layers), repeats)
    int_s, expected = best_time(lambda: np_chain(layers, np.uint64), repeats)
    np.testing.assert_array_equal(got, expected)
    report("exact path counts (uint64)", batch, rust_s, {"numpy uint64 matmul": int_s})
    reused = np.empty((batch, n, n), dtype=np.uint64)
    rust_s, got = best_time(lambda: graph.path_counts(layers, out=reused), repeats)
    buffers = tuple(np.empty((batch, n, n), dtype=np.uint64) for _ in range(3))
    int_s, expected = best_time(lambda: np_chain_into(layers, buffers), repeats)
    np.testing.assert_array_equal(got, expected)
    report(
        "exact path counts (uint64), reused output buffers",
        batch,
        rust_s,
        {"numpy matmul out=": int_s},
    )
    rust_s, got = best_time(lambda: graph.path_counts(layers.astype(np.float64)), repeats)
    f64_s, expected = best_time(lambda: np_chain(layers, np.float64), repeats)
    np.testing.assert_allclose(got, expected)
    report("float path counts (float64)", batch, rust_s, {"numpy float64 matmul": f64_s})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1_000_000, help="graphs of 8 nodes")
    parser.add_argument("--big-batch", type=int, default=10_000, help="graphs of 64 nodes")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, numpy {np.__version__}")
    rng = np.random.default_rng(0)
    bench_shd(args.batch, 8, args.repeats, rng)
    bench_paths(args.batch, 8, args.layers, args.repeats, rng)
    bench_shd(args.big_batch, 64, args.repeats, rng)
    bench_paths(args.big_batch, 64, args.layers, args.repeats, rng)


if __name__ == "__main__":
    main()
