"""Masked slot attention: reference semantics and Triton kernels vs the reference.

Tolerances (documented): Triton vs reference in float32 rtol=1e-4, atol=1e-5 (outputs, weights
and gradients of q, k, v, of an additive mask and of a message gate); the reference vs
``torch.nn.functional.scaled_dot_product_attention`` 1e-6 in float64; bfloat16 on the GPU is
compared with the reference on the same bf16 inputs at rtol=atol=2e-2. Without CUDA the Triton
kernels run under TRITON_INTERPRET=1 on tiny shapes.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from triton_compile import compile_kernels_offline

from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.triton_kernels import BACKEND_ENV_VAR, slot_attention, slot_attention_ref

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.usefixtures("exact_fp32_matmul")


attn_mod = importlib.import_module("s2ssm.triton_kernels.slot_attention")
NEG_INF = float("-inf")


def make_qkv(bs, h, sq, sk, d, dv, *, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = ((bs, h, sq, d), (bs, h, sk, d), (bs, h, sk, dv))
    return [torch.randn(s, generator=g).to(device=device, dtype=dtype) for s in shapes]


def make_mask(kind: str, shape: tuple[int, ...], *, seed=0, device="cpu", dtype=torch.float32):
    """None, a bool mask or an additive mask (finite gates and -inf), with a fully masked row."""
    if kind == "none":
        return None
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(shape, generator=g) > 0.35
    if len(shape) >= 2 and shape[-2] > 1:
        keep[..., 0, :] = False  # a fully masked query row (where the shape has rows)
    if kind == "bool":
        return keep.to(device)
    gates = torch.randn(shape, generator=g)
    return torch.where(keep, gates, torch.full_like(gates, NEG_INF)).to(device=device, dtype=dtype)


def make_gate(shape: tuple[int, ...], *, seed=0, device="cpu", dtype=torch.float32):
    """Message gates in [0, 1] with exact zeros and ones, as hard-concrete samples have."""
    g = torch.Generator().manual_seed(seed + 7)
    return (torch.rand(shape, generator=g) * 1.4 - 0.2).clamp(0, 1).to(device=device, dtype=dtype)


def run_with_grads(fn, q, k, v, mask, seed=1, gate=None, **kw):
    """(out, weights, grads of q, k, v, a float mask and the gate) for a random linear loss of
    both outputs."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    m = mask
    if mask is not None and mask.is_floating_point():
        m = mask.detach().clone().requires_grad_()
        leaves.append(m)
    if gate is not None:
        gate = gate.detach().clone().requires_grad_()
        leaves.append(gate)
        kw["gate"] = gate
    out, w = fn(*leaves[:3], m, return_weights=True, **kw)
    g = torch.Generator().manual_seed(seed)
    go = torch.randn(out.shape, generator=g).to(out)
    gw = torch.randn(w.shape, generator=g).to(w)
    loss = (out.float() * go.float()).sum() + (w.float() * gw.float()).sum()
    grads = torch.autograd.grad(loss, leaves)
    return out.detach(), w.detach(), grads


def assert_all_close(got, want, rtol, atol) -> None:
    for name, a, b in zip(("out", "weights"), got[:2], want[:2], strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")
    assert len(got[2]) == len(want[2])
    names = ("dq", "dk", "dv", "dmask or dgate", "dgate")
    for name, a, b in zip(names, got[2], want[2], strict=False):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


# --------------------------------------------------------------------------- reference


def test_reference_matches_sdpa_and_fully_masked_rows_are_zero() -> None:
    q, k, v = make_qkv(3, 2, 4, 5, 6, 7, dtype=torch.float64)
    keep = make_mask("bool", (3, 2, 4, 5))
    out, w = slot_attention_ref(q, k, v, keep, return_weights=True)
    dead = ~keep.any(-1)  # fully masked rows
    assert dead.any() and (~dead).any()
    assert torch.equal(out[dead], torch.zeros_like(out[dead]))
    assert torch.equal(w[dead], torch.zeros_like(w[dead]))
    torch.testing.assert_close(w[~dead].sum(-1), torch.ones_like(w[~dead].sum(-1)))
    assert torch.equal(w[~keep.expand_as(w)], torch.zeros_like(w[~keep.expand_as(w)]))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.testing.assert_close(out[~dead], want[~dead], rtol=1e-6, atol=1e-6)
    # the equivalent additive mask gives the same result, and so does an explicit scale
    add = torch.zeros(keep.shape, dtype=torch.float64).masked_fill(~keep, NEG_INF)
    out2, w2 = slot_attention_ref(q, k, v, add, return_weights=True, scale=1 / math.sqrt(6))
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(w2, w)


def test_reference_no_nan_gradients_on_masked_rows() -> None:
    q, k, v = make_qkv(2, 1, 3, 4, 5, 5, dtype=torch.float64)
    add = make_mask("additive", (2, 1, 3, 4), dtype=torch.float64)
    _, _, grads = run_with_grads(slot_attention_ref, q, k, v, add)
    for grad in grads:
        assert torch.isfinite(grad).all()
    dq, dmask = grads[0], grads[3]
    assert torch.equal(dq[:, :, 0], torch.zeros_like(dq[:, :, 0]))  # row 0 fully masked
    assert torch.equal(dmask[torch.isinf(add)], torch.zeros_like(dmask[torch.isinf(add)]))


def test_reference_gradcheck() -> None:
    q, k, v = (t.requires_grad_() for t in make_qkv(2, 2, 3, 4, 3, 2, dtype=torch.float64))
    add = make_mask("additive", (1, 2, 3, 4), dtype=torch.float64)
    add = torch.where(torch.isinf(add), add, 0.3 * add).requires_grad_()

    def f(q, k, v, m):
        return slot_attention_ref(q, k, v, m, return_weights=True)

    assert torch.autograd.gradcheck(f, (q, k, v, add))


def test_reference_gate_scales_each_message_after_the_softmax() -> None:
    q, k, v = make_qkv(3, 2, 4, 5, 6, 7, dtype=torch.float64)
    keep = make_mask("bool", (3, 2, 4, 5))
    gate = make_gate((3, 1, 4, 5), dtype=torch.float64)
    out, w = slot_attention_ref(q, k, v, keep, return_weights=True, gate=gate)
    plain_out, plain_w = slot_attention_ref(q, k, v, keep, return_weights=True)
    torch.testing.assert_close(w, plain_w)  # the weights are the softmax's, before the gate
    want = torch.einsum("bhqk,bhkd->bhqd", plain_w * gate, v)  # sum_j w_ij g_ij v_j
    torch.testing.assert_close(out, want)
    ones = slot_attention_ref(q, k, v, keep, gate=torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(ones, plain_out)


def test_reference_gradcheck_with_gate() -> None:
    q, k, v = (t.requires_grad_() for t in make_qkv(2, 2, 3, 4, 3, 2, dtype=torch.float64))
    keep = make_mask("bool", (2, 1, 3, 4))
    gate = make_gate((2, 2, 3, 4), dtype=torch.float64).requires_grad_()

    def f(q, k, v, g):
        return slot_attention_ref(q, k, v, keep, return_weights=True, gate=g)

    assert torch.autograd.gradcheck(f, (q, k, v, gate))


@pytest.mark.parametrize(
    "shape",
    [(5,), (4, 5), (3, 1, 4, 5), (1, 2, 1, 5), (2, 4, 5)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_mask_broadcasting(shape: tuple[int, ...]) -> None:
    q, k, v = make_qkv(3, 2, 4, 5, 3, 3)
    keep = make_mask("bool", shape, seed=3)
    keep_full = keep.expand(3, 2, 4, 5)
    out = slot_attention(q, k, v, keep, backend="reference")
    torch.testing.assert_close(out, slot_attention_ref(q, k, v, keep_full.clone()))


@pytest.mark.parametrize(
    ("change", "exc", "match"),
    [
        ({"mask": torch.ones(3, 5, dtype=torch.bool)}, InvalidInputError, "mask"),
        ({"mask": torch.ones(4, 5, dtype=torch.int64)}, InvalidTypeError, "mask"),
        ({"mask": torch.ones(1, 1, 1, 4, 5, dtype=torch.bool)}, InvalidInputError, "mask"),
        ({"k": torch.zeros(2, 1, 5, 4)}, InvalidInputError, "k"),
        ({"v": torch.zeros(2, 1, 4, 3)}, InvalidInputError, "v"),
        ({"q": torch.zeros(2, 1, 0, 3)}, InvalidInputError, "q"),
        ({"q": torch.zeros(2, 4, 3)}, InvalidInputError, "q"),
        ({"q": torch.zeros(2, 1, 4, 3, dtype=torch.int32)}, InvalidTypeError, "q"),
        ({"gate": torch.ones(3, 5)}, InvalidInputError, "gate"),
        ({"gate": torch.ones(4, 5, dtype=torch.bool)}, InvalidTypeError, "gate"),
        ({"gate": [[1.0] * 5] * 4}, InvalidTypeError, "gate"),
    ],
)
def test_invalid_inputs_raise(change, exc, match) -> None:
    x = {"q": torch.zeros(2, 1, 4, 3), "k": torch.zeros(2, 1, 5, 3), "v": torch.zeros(2, 1, 5, 2)}
    x["mask"] = None
    x.update(change)
    for backend in ("reference", "triton"):
        with pytest.raises(exc, match=match):
            slot_attention(**x, backend=backend)


def test_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(attn_mod, "slot_attention_triton", lambda *a, **k: calls.append("t"))
    monkeypatch.setattr(attn_mod, "slot_attention_ref", lambda *a, **k: calls.append("r"))
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    cpu = make_qkv(1, 1, 2, 2, 2, 2)
    dev = make_qkv(1, 1, 2, 2, 2, 2, device=DEVICE)
    attn_mod.slot_attention(*cpu)
    assert calls.pop() == "r"
    monkeypatch.setenv(BACKEND_ENV_VAR, "triton")
    attn_mod.slot_attention(*dev)
    assert calls.pop() == "t"
    attn_mod.slot_attention(*dev, backend="reference")
    assert calls.pop() == "r"
    assert not calls


# --------------------------------------------------------------------------- Triton kernels

triton_cases = [
    # (B*, H, S_q, S_k, d, d_v, mask kind, mask shape, gate shape): shapes "full" | "rows" |
    # "keys" | "none"
    (1, 1, 1, 1, 1, 1, "none", "full", "none"),
    (3, 2, 5, 3, 7, 6, "bool", "full", "none"),
    (2, 1, 6, 6, 16, 16, "additive", "full", "none"),
    (4, 3, 4, 5, 3, 5, "additive", "rows", "none"),
    (2, 2, 17, 9, 5, 4, "bool", "keys", "none"),
    (3, 2, 5, 3, 7, 6, "bool", "full", "full"),
    (2, 1, 6, 6, 16, 16, "additive", "rows", "full"),
    (4, 3, 4, 5, 3, 5, "none", "full", "rows"),
    (2, 2, 17, 9, 5, 4, "bool", "keys", "keys"),
]


def _pair_shape(case, where: str) -> tuple[int, ...]:
    bs, h, sq, sk = case[:4]
    return {"full": (bs, h, sq, sk), "rows": (sq, sk), "keys": (bs, 1, 1, sk)}[where]


@pytest.mark.parametrize("case", triton_cases, ids=lambda c: "-".join(map(str, c)))
def test_triton_matches_reference(case) -> None:
    pytest.importorskip("triton")
    bs, h, sq, sk, d, dv, kind, mask_where, gate_where = case
    q, k, v = make_qkv(bs, h, sq, sk, d, dv, device=DEVICE, seed=sq + sk)
    mask = make_mask(kind, _pair_shape(case, mask_where), seed=d, device=DEVICE)
    gate = None
    if gate_where != "none":
        gate = make_gate(_pair_shape(case, gate_where), seed=dv, device=DEVICE)
    got = run_with_grads(slot_attention, q, k, v, mask, gate=gate, backend="triton")
    want = run_with_grads(slot_attention_ref, q, k, v, mask, gate=gate)
    assert_all_close(got, want, rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    bs=st.integers(1, 3),
    h=st.integers(1, 2),
    sq=st.integers(1, 9),
    sk=st.integers(1, 9),
    d=st.integers(1, 9),
    dv=st.integers(1, 9),
    kind=st.sampled_from(["none", "bool", "additive"]),
    gated=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_triton_matches_reference_random(bs, h, sq, sk, d, dv, kind, gated, seed) -> None:
    pytest.importorskip("triton")
    q, k, v = make_qkv(bs, h, sq, sk, d, dv, device=DEVICE, seed=seed)
    mask = make_mask(kind, (bs, h, sq, sk), seed=seed, device=DEVICE)
    gate = make_gate((bs, 1, sq, sk), seed=seed, device=DEVICE) if gated else None
    got = run_with_grads(slot_attention, q, k, v, mask, gate=gate, backend="triton")
    want = run_with_grads(slot_attention_ref, q, k, v, mask, gate=gate)
    assert_all_close(got, want, rtol=1e-4, atol=1e-5)


def test_triton_fully_masked_and_noncontiguous() -> None:
    pytest.importorskip("triton")
    q, k, v = make_qkv(2, 3, 4, 5, 6, 6, device=DEVICE)
    qn = q.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    keep = torch.zeros(2, 3, 4, 5, dtype=torch.bool, device=DEVICE)
    keep[1, :, 2:, 1] = True
    out, w = slot_attention(qn, k, v, keep, return_weights=True, backend="triton")
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert torch.equal(out[0], torch.zeros_like(out[0])) and torch.equal(
        w[0], torch.zeros_like(w[0])
    )
    want_out, want_w = slot_attention_ref(q, k, v, keep, return_weights=True)
    torch.testing.assert_close(out, want_out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w, want_w, rtol=1e-4, atol=1e-5)
    # without weights: same output, and gradients still flow
    qg = q.clone().requires_grad_()
    out2 = slot_attention(qg, k, v, keep, backend="triton")
    torch.testing.assert_close(out2, want_out, rtol=1e-4, atol=1e-5)
    (dq,) = torch.autograd.grad(out2.sum(), qg)
    assert torch.isfinite(dq).all() and torch.equal(dq[0], torch.zeros_like(dq[0]))


def test_triton_rejects_float64() -> None:
    pytest.importorskip("triton")
    q, k, v = make_qkv(1, 1, 2, 2, 2, 2, dtype=torch.float64, device=DEVICE)
    with pytest.raises(InvalidTypeError, match="float64"):
        slot_attention(q, k, v, backend="triton")


# --------------------------------------------------------------------------- compiled path, no GPU


def test_kernels_compile_for_sm90() -> None:
    """The compiled (not interpreted) path: both kernels lower to a cubin for an H100."""
    mod = "s2ssm.triton_kernels._slot_attention_kernels"
    blocks = "BLOCK_SQ=16, BLOCK_SK=16, BLOCK_D=64, BLOCK_DV=64"
    calls = f"""
compile_sm90("{mod}", "_attn_fwd_kernel", dict(MASK_MODE=1, HAS_GATE=True, STORE_W=True,
             {blocks}), 2,
             {{"mask_ptr": "*u8", "q_ptr": "*bf16", "k_ptr": "*bf16", "v_ptr": "*bf16"}},
             floats=("scale",))
compile_sm90("{mod}", "_attn_bwd_kernel", dict(MASK_MODE=2, HAS_GATE=True, HAS_DW=True,
             STORE_DS=True, STORE_DG=True, {blocks}), 4, floats=("scale",))
"""
    names = compile_kernels_offline(calls)
    assert names == ["_attn_fwd_kernel", "_attn_bwd_kernel"]


# --------------------------------------------------------------------------- GPU, real sizes


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("slots", [4, 8, 16, 32])
def test_gpu_real_sizes(dtype: torch.dtype, slots: int) -> None:
    pytest.importorskip("triton")
    q, k, v = make_qkv(1024, 2, slots, slots, 64, 64, device="cuda", dtype=dtype)
    mask = make_mask("additive", (1024, 1, slots, slots), device="cuda", dtype=dtype)
    gate = make_gate((1024, 1, slots, slots), device="cuda")
    got = run_with_grads(slot_attention, q, k, v, mask, gate=gate, backend="triton")
    want = run_with_grads(slot_attention_ref, q, k, v, mask, gate=gate)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert_all_close(got, want, rtol=tol, atol=tol)


@pytest.mark.gpu
def test_gpu_deterministic() -> None:
    pytest.importorskip("triton")
    q, k, v = make_qkv(4096, 2, 9, 9, 64, 64, device="cuda")
    mask = make_mask("additive", (4096, 1, 9, 9), device="cuda")
    first = run_with_grads(slot_attention, q, k, v, mask, backend="triton")
    second = run_with_grads(slot_attention, q, k, v, mask, backend="triton")
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    for a, b in zip(first[2], second[2], strict=True):
        assert torch.equal(a, b)
