"""s2ssm.nn modules: shapes, causality, recurrent stepping, masks, backends agree (CPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.nn import Mamba, SlotAttention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.usefixtures("exact_fp32_matmul")


@pytest.mark.parametrize(("d_model", "d_state", "d_conv", "expand"), [(8, 4, 3, 2), (5, 3, 1, 1)])
def test_mamba_shape_and_backward(d_model: int, d_state: int, d_conv: int, expand: int) -> None:
    torch.manual_seed(0)
    m = Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
    x = torch.randn(3, 10, d_model, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_mamba_is_causal() -> None:
    torch.manual_seed(1)
    m = Mamba(6, d_state=4, d_conv=4)
    x = torch.randn(2, 12, 6)
    y = m(x)
    t0 = 7
    x2 = x.clone()
    x2[:, t0] += torch.randn(2, 6)
    y2 = m(x2)
    torch.testing.assert_close(y2[:, :t0], y[:, :t0], rtol=0, atol=0)
    assert (y2[:, t0:] - y[:, t0:]).abs().amax(-1).min() > 0  # every later step is affected
    # gradient view: the output at t has no gradient w.r.t. inputs after t
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(m(xg)[:, 4].sum(), xg)
    assert torch.equal(g[:, 5:], torch.zeros_like(g[:, 5:])) and g[:, :5].abs().sum() > 0


def test_mamba_step_matches_forward() -> None:
    torch.manual_seed(2)
    m = Mamba(7, d_state=3, d_conv=3, expand=2, dt_rank=2)
    x = torch.randn(2, 9, 7)
    y = m(x)
    conv_state, ssm_state = m.allocate_inference_cache(2)
    outs = []
    for t in range(9):
        out, conv_state, ssm_state = m.step(x[:, t], conv_state, ssm_state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), y, rtol=1e-5, atol=1e-6)


def test_mamba_triton_backend_matches_reference() -> None:
    pytest.importorskip("triton")
    torch.manual_seed(3)
    ref = Mamba(4, d_state=3, d_conv=2, expand=1, backend="reference").to(DEVICE)
    tri = Mamba(4, d_state=3, d_conv=2, expand=1, backend="triton").to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 4, device=DEVICE)
    xr, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yt = ref(xr), tri(xt)
    torch.testing.assert_close(yt, yr, rtol=1e-4, atol=1e-5)
    yr.sum().backward()
    yt.sum().backward()
    torch.testing.assert_close(xt.grad, xr.grad, rtol=1e-4, atol=1e-5)
    for (name, pr), pt in zip(ref.named_parameters(), tri.parameters(), strict=True):
        torch.testing.assert_close(pt.grad, pr.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_mamba_rejects_bad_input() -> None:
    m = Mamba(4)
    with pytest.raises(InvalidInputError, match="d_model"):
        m(torch.zeros(2, 3, 5))
    with pytest.raises(InvalidInputError, match="x"):
        m(torch.zeros(3, 4))
    with pytest.raises(InvalidTypeError, match="x"):
        m(torch.zeros(2, 3, 4, dtype=torch.int64))
    with pytest.raises(InvalidInputError, match="d_state"):
        Mamba(4, d_state=0)
    with pytest.raises(InvalidTypeError, match="expand"):
        Mamba(4, expand=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("heads", [1, 2])
def test_slot_attention_shapes_masks_backward(heads: int) -> None:
    torch.manual_seed(4)
    sa = SlotAttention(8, num_heads=heads, kdim=6)
    qs = torch.randn(5, 3, 8, requires_grad=True)
    ks = torch.randn(5, 4, 6, requires_grad=True)
    keep = torch.rand(5, 3, 4) > 0.4
    keep[0, 1] = False  # a fully masked query row
    out, w = sa(qs, ks, mask=keep, return_weights=True)
    assert out.shape == (5, 3, 8) and w is not None and w.shape == (5, heads, 3, 4)
    assert torch.equal(w[0, :, 1], torch.zeros_like(w[0, :, 1]))
    assert torch.equal(w[~keep.unsqueeze(1).expand_as(w)], torch.zeros(int((~keep).sum()) * heads))
    # a fully masked row only gets the output projection's bias
    torch.testing.assert_close(out[0, 1], sa.out_proj.bias)
    out2, none = sa(qs, ks, mask=keep)
    assert none is None
    torch.testing.assert_close(out2, out)
    # additive gate mask, per head, receives a gradient
    gates = torch.randn(1, heads, 3, 4, requires_grad=True)
    out3, w3 = sa(qs, ks, mask=gates, return_weights=True)
    (out3.sum() + w3.square().sum()).backward()
    assert gates.grad is not None and gates.grad.abs().sum() > 0
    assert qs.grad is not None and ks.grad is not None
    # a message gate (B*, S_q, S_k): ones change nothing; it receives a gradient
    ones, _ = sa(qs, ks, mask=keep, gate=torch.ones(5, 3, 4))
    torch.testing.assert_close(ones, out)
    message_gate = torch.rand(5, 3, 4, requires_grad=True)
    out4, _ = sa(qs, ks, mask=keep, gate=message_gate)
    out4.sum().backward()
    assert message_gate.grad is not None and message_gate.grad[keep].abs().sum() > 0
    assert torch.equal(message_gate.grad[~keep], torch.zeros(int((~keep).sum())))
    with pytest.raises(InvalidInputError, match="keys"):
        sa(qs, torch.randn(5, 4, 8))
    with pytest.raises(InvalidInputError, match="num_heads"):
        SlotAttention(8, num_heads=3)


def test_slot_attention_triton_backend_matches_reference() -> None:
    pytest.importorskip("triton")
    torch.manual_seed(5)
    ref = SlotAttention(6, num_heads=2, backend="reference").to(DEVICE)
    tri = SlotAttention(6, num_heads=2, backend="triton").to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    qs, ks = torch.randn(3, 3, 6, device=DEVICE), torch.randn(3, 5, 6, device=DEVICE)
    gates = torch.randn(3, 3, 5, device=DEVICE).masked_fill(torch.rand(3, 3, 5) > 0.7, -torch.inf)
    gr, gt = gates.clone().requires_grad_(), gates.clone().requires_grad_()
    message_gate = torch.rand(3, 3, 5, device=DEVICE)
    mr, mt = message_gate.clone().requires_grad_(), message_gate.clone().requires_grad_()
    outr, wr = ref(qs, ks, mask=gr, return_weights=True, gate=mr)
    outt, wt = tri(qs, ks, mask=gt, return_weights=True, gate=mt)
    torch.testing.assert_close(outt, outr, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(wt, wr, rtol=1e-4, atol=1e-5)
    (outr.sum() + wr.square().sum()).backward()
    (outt.sum() + wt.square().sum()).backward()
    torch.testing.assert_close(gt.grad, gr.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mt.grad, mr.grad, rtol=1e-4, atol=1e-5)
    for pr, pt in zip(ref.parameters(), tri.parameters(), strict=True):
        torch.testing.assert_close(pt.grad, pr.grad, rtol=1e-4, atol=1e-5)


NO_TRITON_SCRIPT = """
import sys
sys.modules["triton"] = None  # make `import triton` fail
import torch
import s2ssm.nn
import s2ssm.triton_kernels as tk
assert not tk.has_triton()
u = torch.randn(1, 2, 5)
y = tk.selective_scan(u, u.abs(), -torch.ones(2, 3), torch.randn(1, 3, 5), torch.randn(1, 3, 5))
q = torch.randn(2, 1, 3, 4)
out = tk.slot_attention(q, q, q, torch.ones(3, 3, dtype=torch.bool))
m = s2ssm.nn.Mamba(4, d_state=2)
assert m(torch.randn(1, 3, 4)).shape == (1, 3, 4)
try:
    tk.selective_scan(u, u.abs(), -torch.ones(2, 3), torch.randn(1, 3, 5), torch.randn(1, 3, 5),
                      backend="triton")
except ValueError as e:
    assert "triton" in str(e)
else:
    raise AssertionError("backend='triton' without triton did not raise")
print("ok")
"""


def test_import_and_reference_path_without_triton() -> None:
    """``import s2ssm.triton_kernels`` / ``s2ssm.nn`` work, and the ops run, without triton."""
    env = {k: v for k, v in os.environ.items() if k != "S2SSM_KERNEL_BACKEND"}
    res = subprocess.run(
        [sys.executable, "-c", NO_TRITON_SCRIPT], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
