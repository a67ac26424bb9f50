"""The selective scan's CPU path against the literal loop reference, side by side.

Usage::

    python benchmarks/bench_scan_cpu.py                    # the shapes below, 1 thread
    python benchmarks/bench_scan_cpu.py --threads 2 --repeats 5

Per shape (batch, D, N, L): forward + backward time of
:func:`~s2ssm.triton_kernels.selective_scan_chunked` (the ``"reference"`` backend: hand-written
backward, one saved state per chunk) and of autograd through
:func:`~s2ssm.triton_kernels.selective_scan_ref` (the loop every path is tested against), the
ratio, and the bytes each keeps for backward. The outputs and gradients of the two are compared
before timing (relative L2 error <= 1e-5: float32 sums in different orders). The loop's
autograd grows faster than linearly in L; it is skipped above ``--max-ref-length`` (its bytes
are still counted).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from s2ssm.triton_kernels import selective_scan_chunked, selective_scan_ref

#: (batch, D, N, L): the paper preset's layer (batch 64 x 4 slots, d_inner 256, L 32), the
#: bench_train layer (batch 2 x 4 slots, d_inner 128) at L 512 and 2048, the --quick preset's.
SHAPES = ((256, 256, 16, 32), (8, 128, 16, 512), (8, 128, 16, 2048), (128, 64, 16, 16))


def make_inputs(batch: int, dim: int, n: int, length: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = ((batch, dim, length), (batch, dim, length), (dim, n), (batch, n, length))
    u, delta, a, b = (torch.randn(*s, generator=g) for s in shapes)
    c = torch.randn(batch, n, length, generator=g)
    z = torch.randn(batch, dim, length, generator=g)
    d, bias = torch.randn(dim, generator=g), torch.rand(dim, generator=g)
    return [u, delta, -a.exp(), b, c, d, z, bias]


def run(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Output and input gradients of ``sum(y * w)`` for a fixed random ``w``."""
    leaves = [t.clone().requires_grad_() for t in inputs]
    y = fn(*leaves, delta_softplus=True)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((y * w).sum(), leaves)
    return [y.detach(), *grads]


def saved_bytes(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> int:
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*[t.clone().requires_grad_() for t in inputs], delta_softplus=True)
    return sum(seen.values())


def seconds(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], repeats: int) -> float:
    run(fn, inputs)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(fn, inputs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-ref-length", type=int, default=512)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be positive")
    torch.set_num_threads(args.threads)
    print(f"CPU x {torch.get_num_threads()} threads, float32, forward + backward, median")
    print("| batch, D, N, L | chunked ms | loop ref ms | ratio | saved MiB chunked | ref |")
    print("|---|---|---|---|---|---|")
    for shape in SHAPES:
        inputs = make_inputs(*shape)
        fast = seconds(selective_scan_chunked, inputs, args.repeats)
        paths = (selective_scan_chunked, selective_scan_ref)
        mib = [saved_bytes(fn, inputs) / 2**20 for fn in paths]
        ref_ms, ratio = "skipped", "-"
        if shape[3] <= args.max_ref_length:
            got, want = run(selective_scan_chunked, inputs), run(selective_scan_ref, inputs)
            for a, b in zip(got, want, strict=True):  # float32 sums in different orders
                error = float((a - b).norm() / b.norm().clamp_min(1e-30))
                if error > 1e-5:
                    raise AssertionError(f"{shape}: relative L2 error {error:.2e} > 1e-5")
            slow = seconds(selective_scan_ref, inputs, args.repeats)
            ref_ms, ratio = f"{1e3 * slow:.0f}", f"**{slow / fast:.1f}x**"
        print(
            f"| {', '.join(map(str, shape))} | {1e3 * fast:.0f} | {ref_ms} | {ratio} "
            f"| {mib[0]:.1f} | {mib[1]:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
