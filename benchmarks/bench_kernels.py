"""Benchmark the Triton kernels against the PyTorch reference (and mamba-ssm's scan if present).

Usage::

    python benchmarks/bench_kernels.py                  # full sizes of issue #4, fp32 and bf16
    python benchmarks/bench_kernels.py --quick          # small sizes, a smoke run
    python benchmarks/bench_kernels.py --json out.json  # also write the figures (atomically)

Selective scan at B=64, D=256, N=16, L in {256, 1024, 4096}; masked slot attention at
B*=65536, d=64, S in {4, 8, 16}, once with the weights returned and once as the model calls it
(a 0 / -inf mask and a message gate that gets its gradient, no weights). Times are medians of
``triton.testing.do_bench``; GB/s counts the compulsory HBM traffic (each input read once,
each output written once), so the fraction of the device's peak bandwidth is a lower bound on
how close a kernel gets to the memory roofline. Goals (H100): scan forward >= 70% of peak
bandwidth; scan fwd+bwd >= 10x the reference and within 1.2x of mamba-ssm; attention >= 2x
PyTorch eager. Without CUDA it prints a message and exits with status 0.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

# peak HBM bandwidth in GB/s by device-name fragment (first match wins)
PEAK_GBPS = [
    ("H200", 4800.0),
    ("H100 PCIe", 2000.0),
    ("H100 NVL", 3900.0),
    ("H100", 3350.0),
    ("H800", 3350.0),
    ("GH200", 4000.0),
    ("B200", 8000.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
    ("L4", 300.0),
    ("A10", 600.0),
    ("RTX 4090", 1008.0),
    ("RTX 3090", 936.0),
    ("V100", 900.0),
    ("T4", 320.0),
]


def peak_gbps(name: str) -> float | None:
    for fragment, gbps in PEAK_GBPS:
        if fragment.lower() in name.lower():
            return gbps
    return None


def bench(fn: Callable[[], Any]) -> float | None:
    """Median time in ms, or None when the call runs out of memory."""
    import torch
    import triton.testing

    try:
        return float(triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median"))
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def scan_inputs(
    b: int, d: int, length: int, n: int, dtype: Any, dev: str = "cuda"
) -> dict[str, Any]:
    import torch

    return {
        "u": torch.randn(b, d, length, device=dev, dtype=dtype),
        "delta": 0.5 * torch.randn(b, d, length, device=dev, dtype=dtype) - 1.0,
        "A": -torch.exp(torch.randn(d, n, device=dev)),  # float32, as in Mamba
        "B": torch.randn(b, n, length, device=dev, dtype=dtype),
        "C": torch.randn(b, n, length, device=dev, dtype=dtype),
        "D": torch.randn(d, device=dev),
        "z": torch.randn(b, d, length, device=dev, dtype=dtype),
        "delta_bias": 0.1 * torch.rand(d, device=dev),
    }


def scan_bytes(b: int, d: int, length: int, n: int, elt: int, backward: bool) -> int:
    """Compulsory traffic: fwd reads u, delta, z, B, C and writes y; bwd also reads dy and
    u, delta, z, B, C again and writes du, ddelta, dz, dB, dC."""
    bdl, bnl = b * d * length * elt, b * n * length * elt
    fwd = 4 * bdl + 2 * bnl
    return fwd + (7 * bdl + 4 * bnl if backward else 0)


def run_scan(args: argparse.Namespace, rows: list[dict[str, Any]], gbps: float | None) -> None:
    import torch

    from s2ssm.triton_kernels import selective_scan

    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        selective_scan_fn = None
    b, d, n = args.scan_shape
    lengths = args.lengths
    impls: dict[str, Callable[..., Any]] = {
        "triton": lambda **x: selective_scan(**x, delta_softplus=True, backend="triton"),
        "reference": lambda **x: selective_scan(**x, delta_softplus=True, backend="reference"),
    }
    if selective_scan_fn is not None:
        impls["mamba-ssm"] = lambda **x: selective_scan_fn(**x, delta_softplus=True)
    for dtype in args.dtypes:
        for length in lengths:
            x = scan_inputs(b, d, length, n, dtype, args.device)
            dy = torch.randn(b, d, length, device=args.device, dtype=dtype)
            for name, fn in impls.items():
                if name == "reference" and length > args.max_ref_length:
                    continue
                for backward in (False, True):
                    leaves = {k: v.clone().requires_grad_(backward) for k, v in x.items()}

                    def step(fn=fn, leaves=leaves, backward=backward, dy=dy) -> None:
                        y = fn(**leaves)
                        if backward:
                            torch.autograd.backward(y, dy)

                    ms = bench(step)
                    nbytes = scan_bytes(b, d, length, n, dy.element_size(), backward)
                    rows.append(
                        record(
                            "scan",
                            name,
                            str(dtype)[6:],
                            f"B{b} D{d} L{length} N{n}",
                            "fwd+bwd" if backward else "fwd",
                            ms,
                            nbytes,
                            gbps,
                        )
                    )
            del x, dy
            torch.cuda.empty_cache()


def run_attention(args: argparse.Namespace, rows: list[dict[str, Any]], gbps: float | None) -> None:
    import torch

    from s2ssm.triton_kernels import slot_attention

    bs, h, hd = args.attn_shape
    for dtype in args.dtypes:
        for s in args.slots:
            q, k, v = (torch.randn(bs, h, s, hd, device=args.device, dtype=dtype) for _ in range(3))
            gates = torch.randn(bs, 1, s, s, device=args.device, dtype=dtype)
            mask = gates.masked_fill(torch.rand_like(gates) > 0.7, float("-inf"))
            edge_gate = torch.rand_like(gates).clamp(0.1, 1.0)
            for name, gated, backward in itertools.product(
                ("triton", "reference"), (False, True), (False, True)
            ):
                leaves = [t.clone().requires_grad_(backward) for t in (q, k, v)]
                msg_gate = edge_gate.clone().requires_grad_(backward) if gated else None

                def step(
                    name=name, leaves=leaves, backward=backward, mask=mask, msg_gate=msg_gate
                ) -> None:
                    res = slot_attention(
                        *leaves, mask, return_weights=msg_gate is None, backend=name, gate=msg_gate
                    )
                    if backward:
                        outs = res if isinstance(res, tuple) else (res,)
                        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

                ms = bench(step)
                elt = q.element_size()
                pairs = bs * h * s * s * elt  # one (S_q x S_k) tile per row: mask, weights
                fwd = 4 * bs * h * s * hd * elt + 2 * pairs  # q k v out; mask and w or gate
                bwd = 7 * bs * h * s * hd * elt + (3 if gated else 2) * pairs  # + dw or dgate
                rows.append(
                    record(
                        "attention" + (" gated" if gated else ""),
                        name,
                        str(dtype)[6:],
                        f"B*{bs} H{h} S{s} d{hd}",
                        "fwd+bwd" if backward else "fwd",
                        ms,
                        fwd + (bwd if backward else 0),
                        gbps,
                    )
                )
            del q, k, v, gates, mask, edge_gate
            torch.cuda.empty_cache()


def record(
    op: str, impl: str, dtype: str, shape: str, mode: str, ms: float | None, nbytes: int,
    gbps: float | None,
) -> dict[str, Any]:  # fmt: skip
    rate = nbytes / (ms * 1e-3) / 1e9 if ms else None
    frac = rate / gbps if rate is not None and gbps else None
    return {"op": op, "impl": impl, "dtype": dtype, "shape": shape, "mode": mode, "ms": ms,
            "gbps": rate, "peak_fraction": frac}  # fmt: skip


def speedups(rows: list[dict[str, Any]]) -> list[str]:
    """Goal checks: triton vs reference / mamba-ssm per (op, dtype, shape, mode)."""
    by_key: dict[tuple[str, str, str, str], dict[str, float | None]] = {}
    for r in rows:
        by_key.setdefault((r["op"], r["dtype"], r["shape"], r["mode"]), {})[r["impl"]] = r["ms"]
    lines = []
    for (op, dtype, shape, mode), t in sorted(by_key.items()):
        tri = t.get("triton")
        if tri is None:
            continue
        parts = [f"{op:9} {dtype:8} {shape:22} {mode:8}"]
        ref = t.get("reference")
        parts.append(f"vs reference {ref / tri:6.1f}x" if ref else "vs reference    n/a")
        if t.get("mamba-ssm"):
            parts.append(f"vs mamba-ssm {tri / t['mamba-ssm']:5.2f}x time")
        lines.append("  ".join(parts))
    return lines


def set_sizes(args: argparse.Namespace) -> None:
    """Problem sizes of issue #4 (or small ones with --quick)."""
    args.device = "cuda"
    args.scan_shape = (8, 64, 16) if args.quick else (64, 256, 16)  # B, D, N
    args.lengths = [256, 1024] if args.quick else [256, 1024, 4096]
    args.attn_shape = (4096, 1, 64) if args.quick else (65536, 1, 64)  # B*, H, d
    args.slots = [4, 8, 16]


def write_json_atomic(path: str, payload: dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bench-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "both"], default="both")
    parser.add_argument("--op", choices=["scan", "attention", "both"], default="both")
    parser.add_argument("--peak-gbps", type=float, help="peak HBM bandwidth (default: by name)")
    parser.add_argument(
        "--max-ref-length", type=int, default=4096, help="skip the reference above this L"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    try:
        import torch
    except ImportError:
        print("bench_kernels: torch is not installed; nothing to benchmark.")
        return 0
    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA device available; the kernels are benchmarked on a GPU only.")
        return 0
    try:
        import triton  # noqa: F401
    except ImportError:
        print("bench_kernels: triton is not installed; nothing to benchmark.")
        return 0
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("bench_kernels: unset TRITON_INTERPRET to benchmark compiled kernels.")
        return 0

    name = torch.cuda.get_device_name()
    gbps = args.peak_gbps if args.peak_gbps else peak_gbps(name)
    args.dtypes = {
        "fp32": [torch.float32], "bf16": [torch.bfloat16], "both": [torch.float32, torch.bfloat16]
    }[args.dtype]  # fmt: skip
    set_sizes(args)
    print(f"device: {name}; peak HBM bandwidth: {f'{gbps:.0f} GB/s' if gbps else 'unknown'}")
    rows: list[dict[str, Any]] = []
    if args.op in ("scan", "both"):
        run_scan(args, rows, gbps)
    if args.op in ("attention", "both"):
        run_attention(args, rows, gbps)

    header = (
        f"{'op':9} {'impl':10} {'dtype':8} {'shape':22} {'mode':8} {'ms':>9} {'GB/s':>8} "
        f"{'peak':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ms = f"{r['ms']:9.3f}" if r["ms"] is not None else "      OOM"
        rate = f"{r['gbps']:8.0f}" if r["gbps"] is not None else "       -"
        frac = f"{r['peak_fraction']:6.1%}" if r["peak_fraction"] is not None else "     -"
        print(
            f"{r['op']:9} {r['impl']:10} {r['dtype']:8} {r['shape']:22} {r['mode']:8} "
            f"{ms} {rate} {frac}"
        )
    print("\nspeed-ups of triton:")
    for line in speedups(rows):
        print("  " + line)
    if args.json:
        write_json_atomic(args.json, {"device": name, "peak_gbps": gbps, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
