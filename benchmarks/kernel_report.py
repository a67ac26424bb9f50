"""What the Triton kernels cost per element, read from their sm_90 machine code (no GPU needed).

Usage::

    python benchmarks/kernel_report.py            # the table
    python benchmarks/kernel_report.py --json f   # also write the figures (atomically)

Every kernel of ``s2ssm.triton_kernels`` is compiled for sm_90 (an H100 / H200) with triton's
own compiler and its bundled ``cuobjdump``, exactly as a launch on such a GPU would compile it
(float32 pointers, every option on: D, z, delta bias, softplus). For each kernel the report
prints the registers per thread and the local-memory (spill) bytes from ``cuobjdump
-res-usage``, the spill instructions (``STL`` / ``LDL``), and, for the loops that walk time,
the instructions per element:

    per element = (instructions in the loop body) x (threads of a program)
                  / (elements one iteration of the loop handles)

where an element is one (channel, state, step) of the recurrence. That is the thread-level
instruction count a program issues per element of the state, the unit in which the old design
was measured (issue #18: about 15.5 shuffles per element in its forward loop, mamba-ssm's CUDA
kernel about 0.6). The per-element figures are static: every instruction of the loop body
counted once per iteration (a predicated-off instruction counts too). The last line is the
forward's shuffles per element.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

FLAGS = {"HAS_D": True, "HAS_Z": True, "HAS_BIAS": True, "SOFTPLUS": True}
MODULE = "s2ssm.triton_kernels._selective_scan_kernels"
STATE = 16  # N, as in mamba-ssm's default and bench_kernels.py
CHUNK = 32  # steps per chunk: selective_scan's _chunk_len on the GPU
INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*?);")


@dataclass(frozen=True)
class Spec:
    """A kernel to compile and how to count its time loops."""

    name: str  # the kernel function
    consts: dict[str, object]
    num_warps: int
    loops: int  # how many innermost loops walk time (one step each)
    per_iteration: int  # elements one iteration of such a loop handles
    note: str


@dataclass(frozen=True)
class Row:
    kernel: str
    num_warps: int
    registers: int
    local_bytes: int
    spill_instructions: int
    instructions_per_element: float
    shuffles_per_element: float
    note: str


def specs() -> list[Spec]:
    block_d = 32
    return [
        Spec(
            "_scan_fwd_kernel",
            {**FLAGS, "STORE_CHUNKS": True, "BLOCK_D": block_d, "BLOCK_N": STATE, "CHUNK_L": CHUNK},
            1,
            1,
            block_d * STATE,
            f"forward, {block_d} channels x {STATE} states, one step per iteration",
        ),
        Spec(
            "_scan_bwd_kernel",
            {**FLAGS, "HAS_DLAST": True, "BLOCK_D": block_d, "BLOCK_N": STATE, "CHUNK_L": CHUNK},
            1,
            2,
            block_d * STATE,
            "backward: recompute walk + adjoint walk per step",
        ),
        Spec(
            "_state_update_kernel",
            {**FLAGS, "BLOCK_D": 64, "BLOCK_N": STATE},
            4,
            0,
            64 * STATE,
            "one decoding step (no time loop)",
        ),
    ]


def tool(name: str) -> str:
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    if not path.exists():
        raise SystemExit(f"triton's bundled {name} is missing ({path})")
    return str(path)


def compile_sm90(spec: Spec) -> bytes:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(importlib.import_module(MODULE), spec.name)
    sig = {
        a: "constexpr" if a in spec.consts else "*fp32" if a.endswith("_ptr") else "i32"
        for a in fn.arg_names
    }
    src = ASTSource(fn, sig, constexprs=spec.consts)
    opts = {"num_warps": spec.num_warps, "enable_fp_fusion": True}
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opts)
    return bytes(kernel.asm["cubin"])


def innermost_loops(sass: list[tuple[int, str]]) -> list[list[str]]:
    """The bodies (opcodes) of the loops that contain no other loop, in address order: a loop
    is a branch back to an earlier address."""
    index = {addr: i for i, (addr, _) in enumerate(sass)}
    spans = []
    for i, (_, line) in enumerate(sass):
        m = re.match(r"BRA\S*\s+(?:`\()?\S*?0x([0-9a-f]+)", line)
        if m and int(m.group(1), 16) in index and index[int(m.group(1), 16)] < i:
            spans.append((index[int(m.group(1), 16)], i))
    inner = [s for s in spans if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    return [[op for _, op in sass[a : b + 1]] for a, b in sorted(inner)]


def analyse(spec: Spec, cubin: bytes) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{spec.name}.cubin"
        path.write_bytes(cubin)
        usage = subprocess.run(
            [tool("cuobjdump"), "-res-usage", str(path)], capture_output=True, text=True, check=True
        ).stdout
        text = subprocess.run(
            [tool("cuobjdump"), "-sass", str(path)], capture_output=True, text=True, check=True
        ).stdout
    regs = int(re.search(r"REG:(\d+)", usage).group(1))  # type: ignore[union-attr]
    local = int(re.search(r"LOCAL:(\d+)", usage).group(1))  # type: ignore[union-attr]
    sass = []
    for m in INSTR.finditer(text):
        op, rest = m.group(3), m.group(4).strip()
        sass.append((int(m.group(1), 16), f"{op} {rest}" if op.startswith("BRA") else op))
    ops = [line.split()[0] for _, line in sass]
    spills = sum(op.startswith(("STL", "LDL")) for op in ops)
    threads = 32 * spec.num_warps
    if spec.loops:
        loops = innermost_loops(sass)
        if len(loops) != spec.loops:
            raise SystemExit(f"{spec.name}: expected {spec.loops} time loops, found {len(loops)}")
        body = [line.split()[0] for loop in loops for line in loop]
    else:
        body = ops  # straight-line kernel: all of it, once per call
    per = threads / spec.per_iteration
    shuffles = sum(op.startswith("SHFL") for op in body)
    return Row(spec.name, spec.num_warps, regs, local, spills, len(body) * per, shuffles * per,
               spec.note)  # fmt: skip


def backward_memory(batch: int = 64, dim: int = 256, length: int = 1024, n: int = STATE) -> str:
    """What the backward keeps or writes besides the gradients, float32 at one shape (that of
    bench_kernels.py and of issue #18), from the launch code's own tile choices."""
    scan = importlib.import_module("s2ssm.triton_kernels.selective_scan")  # the module

    block_d, block_n, _ = scan._bwd_tiles(dim, n)
    chunk = scan._chunk_len()
    steps = -(-length // chunk) * chunk
    mib = 4 / 2**20
    u = batch * dim * length * mib
    states = batch * dim * (steps // chunk) * n * mib
    work = batch * (dim // block_d) * chunk * block_d * block_n * mib
    partials = 2 * batch * (dim // block_d) * steps * block_n * mib
    return (
        f"backward at B={batch}, D={dim}, L={length}, N={n} (u: {u:.0f} MiB): saved chunk "
        f"states {states:.0f} MiB, workspace {work:.0f} MiB, dB + dC partials {partials:.0f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if "s2ssm.triton_kernels._selective_scan_kernels" in sys.modules:
        raise SystemExit("run kernel_report in a fresh process (the kernels are already loaded)")
    os.environ.pop("TRITON_INTERPRET", None)  # the real compiler, not the interpreter
    rows = [analyse(spec, compile_sm90(spec)) for spec in specs()]
    print("| kernel | warps | registers | local (spill) bytes | STL/LDL | instructions / element "
          "| shuffles / element | what one element is |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.kernel} | {r.num_warps} | {r.registers} | {r.local_bytes} | "
              f"{r.spill_instructions} | {r.instructions_per_element:.2f} | "
              f"{r.shuffles_per_element:.3f} | {r.note} |")  # fmt: skip
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        os.replace(tmp, args.json)
    print(backward_memory())
    print(f"forward shuffles per element: {rows[0].shuffles_per_element:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
