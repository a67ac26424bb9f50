"""Selective scan: sequential reference, chunked PyTorch path and Triton kernels agree.

Tolerances (documented): float64 reference paths 1e-10; Triton vs reference in float32
rtol=1e-4, atol=1e-5 (outputs and gradients); bfloat16 on the GPU is compared with the reference
run on the same bf16-rounded inputs, rtol=atol=3e-2 (outputs) and relative L2 error <= 3e-2
(gradients). Without CUDA the Triton kernels run under TRITON_INTERPRET=1 on tiny shapes.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from triton_compile import compile_kernels_offline

from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.triton_kernels import (
    BACKEND_ENV_VAR,
    selective_scan,
    selective_scan_chunked,
    selective_scan_ref,
    selective_state_update,
    selective_state_update_ref,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.usefixtures("exact_fp32_matmul")


# the package attribute ``selective_scan`` is the function; the module is reached through importlib
scan_mod = importlib.import_module("s2ssm.triton_kernels.selective_scan")
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(
    batch: int,
    dim: int,
    length: int,
    n: int,
    *,
    groups_b: int = 0,
    groups_c: int = 0,
    with_d: bool = True,
    with_z: bool = True,
    with_bias: bool = True,
    softplus: bool = True,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """Random scan inputs with a decaying state (A < 0, dt > 0); groups 0 means (batch, N, L)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def bc(groups: int) -> torch.Tensor:
        return rnd(batch, n, length) if groups == 0 else rnd(batch, groups, n, length)

    if softplus:
        delta = 0.5 * rnd(batch, dim, length) - 1.0
    else:
        delta = 0.5 * torch.rand(batch, dim, length, generator=g, dtype=torch.float64) + 0.05
    out: dict[str, torch.Tensor | None] = {
        "u": rnd(batch, dim, length),
        "delta": delta,
        "A": -torch.exp(0.5 * rnd(dim, n)),
        "B": bc(groups_b),
        "C": bc(groups_c),
        "D": rnd(dim) if with_d else None,
        "z": rnd(batch, dim, length) if with_z else None,
        "delta_bias": 0.1 * torch.rand(dim, generator=g, dtype=torch.float64)
        if with_bias
        else None,
    }
    return {
        k: (v.to(device=device, dtype=dtype) if v is not None else None) for k, v in out.items()
    }


def leaves(inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
    return {
        k: (v.detach().clone().requires_grad_() if v is not None else None)
        for k, v in inputs.items()
    }


def run_with_grads(
    fn, inputs: dict[str, torch.Tensor | None], softplus: bool, seed: int = 1, **kw
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Output, last state and the gradients of a random linear loss of both w.r.t. every input."""
    x = leaves(inputs)
    y, last = fn(**x, delta_softplus=softplus, return_last_state=True, **kw)
    g = torch.Generator().manual_seed(seed)
    gy = torch.randn(y.shape, generator=g).to(y)
    gl = torch.randn(last.shape, generator=g).to(last)
    loss = (y.float() * gy.float()).sum() + (last.float() * gl.float()).sum()
    present = [k for k in NAMES if x[k] is not None]
    grads = torch.autograd.grad(loss, [x[k] for k in present])
    return y.detach(), last.detach(), dict(zip(present, grads, strict=True))


def assert_close_all(got, want, rtol: float, atol: float) -> None:
    y1, l1, g1 = got
    y2, l2, g2 = want
    torch.testing.assert_close(y1, y2, rtol=rtol, atol=atol)
    torch.testing.assert_close(l1.to(l2.dtype), l2, rtol=rtol, atol=atol)
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(
            g1[k], g2[k], rtol=rtol, atol=atol, msg=lambda m, k=k: f"d{k}: {m}"
        )


# --------------------------------------------------------------------------- reference


def test_reference_hand_computed() -> None:
    """u = (1, 0, 0), dt = 1, A = -1, B = C = 1: h = (1, e^-1, e^-2); D and z as given."""
    u = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    ones = torch.ones(1, 1, 3, dtype=torch.float64)
    A = -torch.ones(1, 1, dtype=torch.float64)
    y, last = selective_scan_ref(u, ones, A, ones, ones, return_last_state=True)
    e = torch.exp(torch.tensor(-1.0, dtype=torch.float64))
    torch.testing.assert_close(y, torch.stack([e**0, e, e**2]).view(1, 1, 3))
    torch.testing.assert_close(last, (e**2).view(1, 1, 1))
    z = torch.full((1, 1, 3), 2.0, dtype=torch.float64)
    y2 = selective_scan_ref(u, ones, A, ones, ones, D=torch.tensor([3.0], dtype=torch.float64), z=z)
    silu2 = 2.0 / (1.0 + torch.exp(torch.tensor(-2.0, dtype=torch.float64)))
    torch.testing.assert_close(y2, (y + 3.0 * u) * silu2)


@settings(max_examples=50, deadline=None)
@given(
    batch=st.integers(1, 2),
    dim=st.sampled_from([1, 3, 6]),
    length=st.integers(1, 23),
    n=st.integers(1, 5),
    groups_b=st.sampled_from([0, 1, 3]),
    groups_c=st.sampled_from([0, 1, 3]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    chunk=st.integers(1, 9),
    seed=st.integers(0, 1000),
)
def test_chunked_matches_sequential(batch, dim, length, n, groups_b, groups_c, flags, chunk, seed):
    if dim % 3 and 3 in (groups_b, groups_c):
        groups_b, groups_c = min(groups_b, 1), min(groups_c, 1)
    with_d, with_z, with_bias, softplus = flags
    inputs = make_inputs(
        batch, dim, length, n, groups_b=groups_b, groups_c=groups_c, with_d=with_d,
        with_z=with_z, with_bias=with_bias, softplus=softplus, dtype=torch.float64, seed=seed,
    )  # fmt: skip
    got = run_with_grads(selective_scan_chunked, inputs, softplus, chunk_size=chunk)
    want = run_with_grads(selective_scan_ref, inputs, softplus)
    assert_close_all(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("output", ["y", "last"])
def test_chunked_gradients_of_one_output(output: str) -> None:
    """Only one output in the loss: the other's gradient arrives as None in the backward."""
    inputs = make_inputs(2, 3, 11, 4, groups_c=3, dtype=torch.float64, seed=3)
    grads = []
    for fn in (selective_scan_chunked, selective_scan_ref):
        x = leaves(inputs)
        kw = {"chunk_size": 4} if fn is selective_scan_chunked else {}
        y, last = fn(**x, delta_softplus=True, return_last_state=True, **kw)
        loss = y.sin().sum() if output == "y" else last.cos().sum()
        present = [
            k for k in NAMES if x[k] is not None and (output == "y" or k not in ("C", "D", "z"))
        ]
        grads.append(torch.autograd.grad(loss, [x[k] for k in present]))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def _saved_bytes(fn, inputs: dict[str, torch.Tensor | None], **kw) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of one call."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(**leaves(inputs), delta_softplus=True, **kw)
    return sum(seen.values())


def test_chunked_saves_one_state_per_chunk() -> None:
    """The CPU path keeps the inputs and one (batch, D, N) state per chunk, not one per step:
    less than a single (batch, D, L, N) tensor, which the literal loop keeps several of."""
    batch, dim, length, n = 2, 8, 256, 16
    inputs = make_inputs(batch, dim, length, n, seed=5)
    per_step_states = batch * dim * length * n * 4
    assert _saved_bytes(selective_scan_ref, inputs) > per_step_states
    assert _saved_bytes(selective_scan_chunked, inputs, chunk_size=64) < per_step_states


@pytest.mark.parametrize("impl", [selective_scan_ref, selective_scan_chunked])
@pytest.mark.parametrize("grouped", [False, True])
def test_reference_gradcheck(impl, grouped: bool) -> None:
    inputs = leaves(make_inputs(1, 2, 5, 2, groups_b=2 if grouped else 0, dtype=torch.float64))
    present = [k for k in NAMES if inputs[k] is not None]

    def f(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(zip(present, args, strict=True))
        return impl(**kw, delta_softplus=True, return_last_state=True)

    assert torch.autograd.gradcheck(f, tuple(inputs[k] for k in present))


def test_state_update_steps_match_scan() -> None:
    batch, dim, length, n = 2, 4, 7, 3
    x = make_inputs(batch, dim, length, n, groups_b=2, groups_c=0, dtype=torch.float64)
    y, last = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    state = torch.zeros(batch, dim, n, dtype=torch.float64)
    outs = []
    for t in range(length):
        outs.append(
            selective_state_update(
                state,
                x["u"][..., t],
                x["delta"][..., t],
                x["A"],
                x["B"][..., t],
                x["C"][..., t],
                D=x["D"],
                z=x["z"][..., t],
                dt_bias=x["delta_bias"],
                dt_softplus=True,
            )
        )
    torch.testing.assert_close(torch.stack(outs, -1), y, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, last, rtol=1e-10, atol=1e-10)


def test_state_update_rejects_bad_shapes() -> None:
    state = torch.zeros(2, 4, 3)
    x = torch.zeros(2, 4)
    with pytest.raises(InvalidInputError, match="dt"):
        selective_state_update_ref(state, x, torch.zeros(2, 5), torch.zeros(4, 3), x, x)
    with pytest.raises(InvalidInputError, match="B"):
        selective_state_update_ref(
            state, x, x, -torch.ones(4, 3), torch.zeros(2, 4), torch.zeros(2, 3)
        )


@pytest.mark.parametrize(
    ("change", "exc", "match"),
    [
        ({"u": torch.zeros(2, 4, 0), "delta": torch.zeros(2, 4, 0)}, InvalidInputError, "u"),
        ({"u": torch.zeros(0, 4, 5), "delta": torch.zeros(0, 4, 5)}, InvalidInputError, "u"),
        ({"A": torch.zeros(4, 0)}, InvalidInputError, "A"),
        ({"A": torch.zeros(3, 2)}, InvalidInputError, "A"),
        ({"delta": torch.zeros(2, 4, 6)}, InvalidInputError, "delta"),
        ({"B": torch.zeros(2, 3, 2, 5)}, InvalidInputError, "B"),
        ({"C": torch.zeros(2, 2, 4)}, InvalidInputError, "C"),
        ({"D": torch.zeros(5)}, InvalidInputError, "D"),
        ({"z": torch.zeros(2, 4, 4)}, InvalidInputError, "z"),
        ({"u": torch.zeros(2, 4, 5, dtype=torch.int64)}, InvalidTypeError, "u"),
        ({"u": [[0.0]]}, InvalidTypeError, "u"),
    ],
)
def test_invalid_inputs_raise(change, exc, match) -> None:
    x = {
        "u": torch.zeros(2, 4, 5), "delta": torch.zeros(2, 4, 5), "A": -torch.ones(4, 2),
        "B": torch.zeros(2, 2, 5), "C": torch.zeros(2, 2, 5), "D": None, "z": None,
    }  # fmt: skip
    x.update(change)
    for backend in ("reference", "triton"):
        with pytest.raises(exc, match=match):
            selective_scan(**x, backend=backend)
    with pytest.raises(exc, match=match):
        selective_scan_ref(**x)


def test_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(scan_mod, "selective_scan_triton", lambda *a, **k: calls.append("t"))
    monkeypatch.setattr(scan_mod, "selective_scan_chunked", lambda *a, **k: calls.append("r"))
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    cpu = make_inputs(1, 2, 3, 2)
    dev = make_inputs(1, 2, 3, 2, device=DEVICE)
    scan_mod.selective_scan(**cpu, backend="reference")
    assert calls.pop() == "r"
    scan_mod.selective_scan(**cpu)  # auto: CPU tensors take the PyTorch path
    assert calls.pop() == "r"
    monkeypatch.setenv(BACKEND_ENV_VAR, "triton")
    scan_mod.selective_scan(**cpu, backend="reference")  # the argument beats the variable
    assert calls.pop() == "r"
    scan_mod.selective_scan(**dev)  # forced by the variable (interpreter on the CPU)
    assert calls.pop() == "t"
    monkeypatch.setenv(BACKEND_ENV_VAR, "reference")
    scan_mod.selective_scan(**dev)
    assert calls.pop() == "r"
    monkeypatch.setenv(BACKEND_ENV_VAR, "bogus")
    with pytest.raises(InvalidInputError, match=BACKEND_ENV_VAR):
        scan_mod.selective_scan(**cpu)
    monkeypatch.delenv(BACKEND_ENV_VAR)
    with pytest.raises(InvalidInputError, match="backend"):
        scan_mod.selective_scan(**cpu, backend="cuda")
    if DEVICE == "cuda":
        scan_mod.selective_scan(**dev)  # auto: CUDA tensors take Triton
        assert calls.pop() == "t"
    assert not calls


# --------------------------------------------------------------------------- Triton kernels

triton_cases = [
    # (batch, dim, length, n, groups_b, groups_c, with_d, with_z, with_bias, softplus)
    (1, 1, 1, 1, 0, 0, False, False, False, False),
    (2, 5, 19, 3, 0, 0, True, True, True, True),
    (1, 6, 13, 5, 2, 3, True, False, True, True),
    (2, 3, 9, 2, 3, 0, False, True, False, False),
    (1, 4, 16, 4, 1, 1, True, True, False, True),
]


def _case_id(c: tuple) -> str:
    b, d, length, n, gb, gc, *flags = c
    return f"B{b}-D{d}-L{length}-N{n}-G{gb}x{gc}-" + "".join(
        "DZbs"[i] for i, f in enumerate(flags) if f
    )


@pytest.mark.parametrize("case", triton_cases, ids=_case_id)
def test_triton_matches_reference(case) -> None:
    pytest.importorskip("triton")
    b, d, length, n, gb, gc, with_d, with_z, with_bias, softplus = case
    inputs = make_inputs(
        b, d, length, n, groups_b=gb, groups_c=gc, with_d=with_d, with_z=with_z,
        with_bias=with_bias, softplus=softplus, device=DEVICE, seed=sum(case[:4]),
    )  # fmt: skip
    got = run_with_grads(selective_scan, inputs, softplus, backend="triton")
    want = run_with_grads(selective_scan_ref, inputs, softplus)
    assert_close_all(got, want, rtol=1e-4, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 2),
    dim=st.integers(1, 7),
    length=st.integers(1, 21),
    n=st.integers(1, 6),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    seed=st.integers(0, 1000),
)
def test_triton_matches_reference_random(batch, dim, length, n, flags, seed) -> None:
    pytest.importorskip("triton")
    with_d, with_z, with_bias, softplus = flags
    inputs = make_inputs(
        batch, dim, length, n, with_d=with_d, with_z=with_z, with_bias=with_bias,
        softplus=softplus, device=DEVICE, seed=seed,
    )  # fmt: skip
    got = run_with_grads(selective_scan, inputs, softplus, backend="triton")
    want = run_with_grads(selective_scan_ref, inputs, softplus)
    assert_close_all(got, want, rtol=1e-4, atol=1e-5)


def _forward_blocks() -> list[dict[str, int]]:
    kern = importlib.import_module("s2ssm.triton_kernels._selective_scan_kernels")
    return [{"BLOCK_D": c.kwargs["BLOCK_D"], "num_warps": c.num_warps} for c in kern.FWD_CONFIGS]


@pytest.mark.parametrize("blocks", [(2, 2), (16, 4), (32, 16), (256, 8)], ids=str)
def test_triton_every_block_size(monkeypatch: pytest.MonkeyPatch, blocks) -> None:
    """Every block of channels the forward's autotuner may pick, and backward blocks wider and
    narrower than a group, give the reference's values (grouped B and C, a partial chunk)."""
    pytest.importorskip("triton")
    fwd_block, bwd_block = blocks
    choices = {c["BLOCK_D"] for c in _forward_blocks()}
    assert fwd_block in choices | {2}  # the autotuner's choices, and the interpreter's
    monkeypatch.setattr(scan_mod, "_fwd_tiles", lambda dpg, kern: {"BLOCK_D": fwd_block})
    n = 3
    monkeypatch.setattr(scan_mod, "_bwd_tiles", lambda dpg, n: (bwd_block, 4, 1))
    # 6 channels per group: blocks of 2 and 4 split a group (4: a partial block), wider ones not
    x = make_inputs(2, 12, 11, n, groups_b=2, groups_c=1, device=DEVICE, seed=fwd_block)
    got = run_with_grads(selective_scan, x, True, backend="triton")
    want = run_with_grads(selective_scan_ref, x, True)
    assert_close_all(got, want, rtol=1e-4, atol=1e-5)


def test_forward_tiles_are_fixed_when_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the GPU the forward autotunes (None) unless torch's deterministic mode is on."""
    kern = importlib.import_module("s2ssm.triton_kernels._selective_scan_kernels")
    monkeypatch.setattr(scan_mod, "triton_interpret", lambda: False)
    assert scan_mod._fwd_tiles(256, kern) is None
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert scan_mod._fwd_tiles(256, kern) == kern.DETERMINISTIC_FWD
    finally:
        torch.use_deterministic_algorithms(before)
    assert kern.DETERMINISTIC_FWD in _forward_blocks()


def test_triton_noncontiguous_and_no_grad() -> None:
    pytest.importorskip("triton")
    x = make_inputs(2, 3, 11, 3, device=DEVICE, seed=5)
    # same values, non-contiguous layouts
    nc = dict(x)
    nc["u"] = x["u"].transpose(1, 2).contiguous().transpose(1, 2)
    nc["B"] = x["B"].transpose(1, 2).contiguous().transpose(1, 2)
    nc["A"] = x["A"].t().contiguous().t()
    assert not nc["u"].is_contiguous() and not nc["B"].is_contiguous()
    with torch.no_grad():
        y1, l1 = selective_scan(**nc, delta_softplus=True, return_last_state=True, backend="triton")
    y2, l2 = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(l1, l2, rtol=1e-4, atol=1e-5)
    got = run_with_grads(selective_scan, nc, True, backend="triton")
    want = run_with_grads(selective_scan_ref, x, True)
    assert_close_all(got, want, rtol=1e-4, atol=1e-5)


def test_triton_rejects_float64() -> None:
    pytest.importorskip("triton")
    x = make_inputs(1, 2, 3, 2, dtype=torch.float64, device=DEVICE)
    with pytest.raises(InvalidTypeError, match="float64"):
        selective_scan(**x, backend="triton")


@pytest.mark.parametrize(
    ("batch", "dim", "n", "groups_b", "groups_c", "flags"),
    [
        (1, 1, 1, 0, 0, (False, False, False, False)),
        (2, 5, 3, 0, 0, (True, True, True, True)),
        (2, 6, 4, 2, 3, (True, False, True, True)),
        (3, 7, 5, 1, 0, (False, True, False, False)),
    ],
    ids=lambda v: str(v),
)
def test_triton_state_update_matches_reference(batch, dim, n, groups_b, groups_c, flags) -> None:
    pytest.importorskip("triton")
    with_d, with_z, with_bias, softplus = flags
    x = make_inputs(
        batch, dim, 3, n, groups_b=groups_b, groups_c=groups_c, with_d=with_d, with_z=with_z,
        with_bias=with_bias, softplus=softplus, device=DEVICE, seed=dim + n,
    )  # fmt: skip
    start = torch.randn(batch, n, dim, generator=torch.Generator().manual_seed(9)).to(DEVICE)
    state_t = start.clone().transpose(1, 2)  # non-contiguous (batch, D, N), updated in place
    state_r = start.clone().transpose(1, 2).contiguous()
    assert state_t.is_contiguous() == (dim == 1 or n == 1)
    z = x["z"]
    for t in range(3):
        args = (x["u"][..., t], x["delta"][..., t], x["A"], x["B"][..., t], x["C"][..., t])
        kw = {"D": x["D"], "z": z[..., t] if z is not None else None, "dt_bias": x["delta_bias"]}
        out_t = selective_state_update(state_t, *args, **kw, dt_softplus=softplus, backend="triton")
        out_r = selective_state_update_ref(state_r, *args, **kw, dt_softplus=softplus)
        torch.testing.assert_close(out_t, out_r, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(state_t, state_r, rtol=1e-4, atol=1e-5)


def test_state_update_with_grad_takes_the_reference() -> None:
    x = leaves(make_inputs(2, 3, 1, 2, device=DEVICE))
    args = (x["u"][..., 0], x["delta"][..., 0], x["A"], x["B"][..., 0], x["C"][..., 0])
    state = torch.zeros(2, 3, 2, device=DEVICE)
    out = selective_state_update(state, *args, D=x["D"], dt_softplus=True)
    out.sum().backward()  # gradients flow through the PyTorch path
    assert x["A"].grad is not None and x["u"].grad is not None
    if os.environ.get("TRITON_INTERPRET") == "1" or DEVICE == "cuda":
        with pytest.raises(InvalidInputError, match="backward"):
            selective_state_update(state, *args, backend="triton")


# --------------------------------------------------------------------------- compiled path, no GPU


def test_kernels_compile_for_sm90() -> None:
    """The compiled (not interpreted) path: every kernel lowers to a cubin for an H100."""
    mod = "s2ssm.triton_kernels._selective_scan_kernels"
    flags = "HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True"
    bf16 = "{n: '*bf16' for n in ('u_ptr', 'delta_ptr', 'b_ptr', 'c_ptr', 'z_ptr', 'y_ptr')}"
    calls = f"""
compile_sm90("{mod}", "_scan_fwd_kernel", dict({flags}, STORE_CHUNKS=True,
             BLOCK_D=32, BLOCK_N=16, CHUNK_L=32), 1, {bf16})
compile_sm90("{mod}", "_scan_bwd_kernel", dict({flags}, HAS_DLAST=True,
             BLOCK_D=32, BLOCK_N=16, CHUNK_L=32), 1)
compile_sm90("{mod}", "_state_update_kernel", dict({flags}, BLOCK_D=64, BLOCK_N=16), 4)
"""
    names = compile_kernels_offline(calls)
    assert names == ["_scan_fwd_kernel", "_scan_bwd_kernel", "_state_update_kernel"]


# --------------------------------------------------------------------------- GPU, real sizes


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("length", [256, 1000])
def test_gpu_real_sizes(dtype: torch.dtype, length: int) -> None:
    pytest.importorskip("triton")
    x = make_inputs(4, 96, length, 16, groups_b=0, groups_c=0, device="cuda", dtype=dtype)
    got = run_with_grads(selective_scan, x, True, backend="triton")
    # the reference sees the same (rounded) inputs, in float32
    x32 = {k: (v.float() if v is not None else None) for k, v in x.items()}
    want = run_with_grads(selective_scan_chunked, x32, True)
    if dtype == torch.float32:
        assert_close_all(got, want, rtol=1e-4, atol=1e-4)
        return
    torch.testing.assert_close(got[0].float(), want[0], rtol=3e-2, atol=3e-2)
    torch.testing.assert_close(got[1], want[1], rtol=1e-3, atol=1e-3)
    for k, g in got[2].items():
        ref = want[2][k]
        rel = (g.float() - ref).norm() / ref.norm().clamp_min(1e-6)
        assert rel <= 3e-2, f"d{k}: relative L2 error {rel:.3g}"


@pytest.mark.gpu
def test_gpu_deterministic() -> None:
    pytest.importorskip("triton")
    x = make_inputs(3, 64, 300, 16, groups_b=2, device="cuda")
    first = run_with_grads(selective_scan, x, True, backend="triton")
    second = run_with_grads(selective_scan, x, True, backend="triton")
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    for k in first[2]:
        assert torch.equal(first[2][k], second[2][k]), k
