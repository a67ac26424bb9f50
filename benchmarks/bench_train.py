"""Sequence-length scaling of a training step: S2-SSM (Mamba over time) vs the Transformer twin.

Usage::

    python benchmarks/bench_train.py                      # CPU: L = 32 .. 256; GPU: 32 .. 2048
    python benchmarks/bench_train.py --lengths 32,64,128 --repeats 2
    python benchmarks/bench_train.py --json out.json --plot scaling.png

One training step of the slot dynamics (:class:`s2ssm.models.SlotDynamics`; the object VAE is
frozen in training and costs the same for both models, so it is left out): forward, next-slot
loss + path penalty, backward, AdamW step, on random slots ``(batch, L, K, D)``. Reported per
sequence length L and model: the median step time over ``--repeats`` timed steps (after one
warm-up step), the activation memory (bytes of the tensors autograd saves for backward, the
part that grows with L, measured the same way on every device) and, on CUDA, the peak allocated
memory. The last column pair is the local growth exponent d log(y) / d log(L) between
consecutive lengths: about 1 for linear growth, 2 for quadratic. On the CPU the kernels run the
PyTorch path (the Triton kernels need a GPU): its selective scan, like the Triton one, saves one
state per chunk and recomputes the others in backward, but it runs the recurrence one time step
per PyTorch call, so the CPU times measure that loop, not the fused kernel.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import torch

from s2ssm.config import ModelConfig, SparsityConfig
from s2ssm.models import SlotDynamics, dynamics_loss

KINDS = ("ssm", "transformer")
LATENT = 16


def parse_lengths(text: str) -> list[int]:
    """``"32,64"`` -> ``[32, 64]`` (positive, increasing)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lengths: expected integers, got {text!r}") from None
    if not values or any(v < 2 for v in values) or values != sorted(set(values)):
        raise argparse.ArgumentTypeError(
            f"--lengths: expected increasing integers >= 2, got {text!r}"
        )
    return values


class SavedBytes:
    """Counts the bytes of the tensors autograd saves for backward inside the context."""

    def __init__(self) -> None:
        self.total = 0
        self._seen: set[int] = set()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self._seen:  # views of one storage count once
            self._seen.add(key)
            self.total += storage.nbytes()
        return t

    def __enter__(self) -> SavedBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(
    kind: str, length: int, batch: int, repeats: int, device: torch.device, d_model: int
) -> dict[str, Any]:
    """Time and memory of one training step of ``kind`` at sequence length ``length``."""
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, d_model=d_model, num_layers=2, d_state=16, max_len=length)
    model = SlotDynamics(cfg, LATENT).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    slots = torch.randn(batch, length, cfg.num_objects, LATENT, device=device)
    env_ids = torch.zeros(batch, dtype=torch.long, device=device)
    lam = 1e-3 if SparsityConfig().enabled else 0.0

    def step() -> None:
        out = model(slots, env_ids)
        loss, _ = dynamics_loss(out, slots, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (kernel compilation, allocator)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    with SavedBytes() as saved:
        out = model(slots, env_ids)
        dynamics_loss(out, slots, lam)[0].backward()
    row: dict[str, Any] = {
        "kind": kind,
        "length": length,
        "batch": batch,
        "step_ms": 1e3 * statistics.median(times),
        "saved_mib": saved.total / 2**20,
    }
    if device.type == "cuda":
        row["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def growth(rows: list[dict[str, Any]], key: str) -> None:
    """Add ``<key>_exp``: the local exponent between consecutive lengths of one kind."""
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        for prev, cur in itertools.pairwise(mine):
            if prev[key] > 0 and cur[key] > 0:
                cur[f"{key}_exp"] = math.log(cur[key] / prev[key]) / math.log(
                    cur["length"] / prev["length"]
                )


def table(rows: list[dict[str, Any]], cuda: bool) -> str:
    head = ["L", "model", "step ms", "saved MiB"] + (["peak MiB"] if cuda else [])
    head += ["time exp", "mem exp"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["length"]), r["kind"], f"{r['step_ms']:.1f}", f"{r['saved_mib']:.1f}"]
        if cuda:
            cells.append(f"{r['peak_mib']:.1f}")
        for key in ("step_ms_exp", "saved_mib_exp"):
            cells.append(f"{r[key]:.2f}" if key in r else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((axes[0], "step_ms", "step time (ms)"), (axes[1], "saved_mib", "")):
        for kind in KINDS:
            mine = [r for r in rows if r["kind"] == kind]
            ax.loglog([r["length"] for r in mine], [r[key] for r in mine], "o-", label=kind)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(label or "activation memory (MiB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=parse_lengths, default=None)
    parser.add_argument("--batch", type=int, default=None, help="sequences per step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", default=None, help="also write the rows here (atomically)")
    parser.add_argument("--plot", default=None, help="also save a log-log PNG here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.batch is not None and args.batch < 1):
        parser.error("--repeats and --batch must be positive")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    name = (
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    device = torch.device(name)
    cuda = device.type == "cuda"
    lengths = args.lengths or ([32, 64, 128, 256, 512, 1024, 2048] if cuda else [32, 64, 128, 256])
    batch = args.batch or (8 if cuda else 2)
    rows = []
    for length in lengths:
        for kind in KINDS:
            row = bench_one(kind, length, batch, args.repeats, device, args.d_model)
            print(
                f"L={length:5d} {kind:12s} {row['step_ms']:9.1f} ms  {row['saved_mib']:8.1f} MiB",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    growth(rows, "step_ms")
    growth(rows, "saved_mib")
    where = torch.cuda.get_device_name(device) if cuda else f"CPU x {torch.get_num_threads()}"
    title = (
        f"SlotDynamics training step, d_model={args.d_model}, 2 layers, K=4, batch {batch}, {where}"
    )
    print(title)
    print(table(rows, cuda))
    if args.json:
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=os.path.dirname(os.path.abspath(args.json)))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"title": title, "rows": rows}, handle, indent=2)
        os.replace(tmp, args.json)
    if args.plot:
        plot(rows, args.plot, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
