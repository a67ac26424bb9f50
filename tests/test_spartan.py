"""SPARTAN (``model.kind = "spartan"``, :mod:`s2ssm.models.spartan`) against written-out
references: the masked softmax and its straight-through gradient, the mask sampling of a block,
the evaluation rule, and the dual ascent on the constraint's multiplier."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s2ssm.config import Config, ModelConfig, SparsityConfig
from s2ssm.errors import InvalidInputError
from s2ssm.models import LambdaSchedule, SlotDynamics, SlotSSMBlock
from s2ssm.models.spartan import HardMaskAttention, masked_softmax_attention

SPARTAN = {"kind": "spartan", "gate": "straight_through", "d_model": 8, "max_len": 16}


def loop_attention(scores: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """w_ij = A_ij exp(s_ij) / sum_j' A_ij' exp(s_ij'), out_i = sum_j w_ij v_j, in loops."""
    b, h, k, p = scores.shape
    out = torch.zeros(b, h, k, values.shape[-1], dtype=torch.float64)
    for n in range(b):
        for head in range(h):
            for i in range(k):
                z = sum(
                    float(mask[n, i, j]) * math.exp(float(scores[n, head, i, j])) for j in range(p)
                )
                for j in range(p):
                    w = float(mask[n, i, j]) * math.exp(float(scores[n, head, i, j])) / z
                    out[n, head, i] += w * values[n, head, j].double()
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), heads=st.sampled_from([1, 2]), parents=st.integers(2, 5))
def test_masked_softmax_equals_the_loop_reference(seed: int, heads: int, parents: int) -> None:
    g = torch.Generator().manual_seed(seed)
    b, k, dh = 2, 3, 4
    scores = torch.randn(b, heads, k, parents, generator=g) * 3
    mask = (torch.rand(b, k, parents, generator=g) < 0.5).float()
    mask[:, :, 0] = 1.0  # one open entry per row (the block's self edge)
    values = torch.randn(b, heads, parents, dh, generator=g)
    got = masked_softmax_attention(scores, mask, values)
    torch.testing.assert_close(
        got.double(), loop_attention(scores, mask, values), atol=1e-5, rtol=1e-5
    )


def test_straight_through_mask_gradient_reaches_closed_edges_as_written() -> None:
    """dL/dA_ij = exp(s_ij) / Z_i x <dL/dout_i, v_j - out_i>, closed edges included: what
    opening the edge would change, to first order."""
    torch.manual_seed(3)
    scores = torch.randn(1, 1, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[[1.0, 0, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1]]], dtype=torch.float64)
    mask.requires_grad_(True)
    values = torch.randn(1, 1, 4, 5, dtype=torch.float64)
    upstream = torch.randn(1, 1, 3, 5, dtype=torch.float64)
    out = masked_softmax_attention(scores, mask, values)
    (out * upstream).sum().backward()
    expected = torch.zeros(3, 4, dtype=torch.float64)
    a = mask.detach()
    for i in range(3):
        z = sum(float(a[0, i, j]) * math.exp(float(scores[0, 0, i, j])) for j in range(4))
        for j in range(4):
            diff = values[0, 0, j] - out[0, 0, i].detach()
            expected[i, j] = (
                math.exp(float(scores[0, 0, i, j])) / z * float(upstream[0, 0, i] @ diff)
            )
    assert mask.grad is not None
    torch.testing.assert_close(mask.grad[0], expected)
    assert (mask.grad[0][a[0] == 0] != 0).all()


def test_block_samples_its_masks_from_its_own_scores_with_gumbel_sigmoid_noise() -> None:
    """Training edges = 1[(z + log u - log(1 - u)) / T > 0] with z the head-averaged query-key
    score of the normed slots and u the block's uniform draw; no gate module, no bias; the
    own slot is always attended to; evaluation edges = sigmoid(z) > threshold."""
    cfg = ModelConfig(**SPARTAN, num_heads=2, gate_temperature=0.7)
    torch.manual_seed(0)
    block = SlotSSMBlock(cfg).train()
    assert block.gate is None
    attention = block.hard_attention
    assert attention.query.bias is None and attention.key.bias is None  # no static edge term
    x = torch.randn(2, 3, 4, 8)
    env = torch.randn(2, 3, 8)
    torch.manual_seed(11)
    _, logits, edges, drift = block(x, env)
    assert float(drift) == 0.0
    # the reference: the same temporal update, then the scores and the same uniform draw
    seq = x.transpose(1, 2).reshape(8, 3, 8)
    seq = seq + block.temporal(block.norm_time(seq))
    h = seq.view(2, 4, 3, 8).transpose(1, 2)
    children = block.norm_query(h).reshape(6, 4, 8)
    parents = block.norm_key(torch.cat([h, env.unsqueeze(2)], dim=2)).reshape(6, 5, 8)
    q = block.hard_attention.query(children).view(6, 4, 2, 4).transpose(1, 2)
    k = block.hard_attention.key(parents).view(6, 5, 2, 4).transpose(1, 2)
    z = (q @ k.transpose(-1, -2) / 2.0).mean(dim=1)
    torch.testing.assert_close(logits.reshape(6, 4, 5), z, atol=1e-5, rtol=1e-5)
    torch.manual_seed(11)
    block.temporal(block.norm_time(seq))  # no random draws before the mask's
    u = torch.rand(6, 4, 5).clamp(1e-6, 1 - 1e-6)
    expected = (z + torch.log(u) - torch.log1p(-u)) / 0.7 > 0
    assert torch.equal(edges.reshape(6, 4, 5), expected)
    block.eval()
    _, logits_eval, edges_eval, _ = block(x, env)
    assert torch.equal(edges_eval, torch.sigmoid(logits_eval) > cfg.edge_threshold)


def test_all_closed_masks_leave_only_the_own_slot() -> None:
    """With every edge forced closed the attention reads the own slot alone: the message is
    W_o W_v y_i, whatever the other slots hold."""
    cfg = ModelConfig(**SPARTAN)
    torch.manual_seed(1)
    attention = HardMaskAttention(8, 1)
    parents = torch.randn(3, 5, 8)
    children = parents[:, :4]
    mask = torch.eye(4, 5).expand(3, 4, 5)
    scores = attention.scores(children, parents)
    out = attention(scores, mask, parents)
    expected = attention.out(attention.value(parents[:, :4]))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    dyn = SlotDynamics(cfg, 6)
    closed = torch.zeros(2, 4, cfg.num_layers, 4, 5, dtype=torch.bool)
    slots = torch.randn(2, 4, 4, 6)
    moved = slots.clone()
    moved[:, :, 1:] += 5.0  # every object but the first changes
    a = dyn(slots, torch.tensor([0, 1]), forced_edges=closed).pred[:, :, 0]
    b = dyn(moved, torch.tensor([0, 1]), forced_edges=closed).pred[:, :, 0]
    torch.testing.assert_close(a, b)


def test_spartan_trains_its_scores_through_the_masks() -> None:
    cfg = ModelConfig(**SPARTAN, num_layers=2)
    torch.manual_seed(2)
    dyn = SlotDynamics(cfg, 6).train()
    out = dyn(torch.randn(2, 5, 4, 6), torch.tensor([0, 1]))
    (out.pred.pow(2).mean() + out.gate_probs.mean()).backward()
    for block in dyn.blocks:
        assert block.hard_attention.query.weight.grad.abs().sum() > 0
        assert block.hard_attention.key.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"gate": "hard_concrete"}, "straight_through"),
        ({"gate": "straight_through", "gate_scorer": "mlp"}, "gate_scorer"),
        ({"gate": "straight_through", "message": "gated_sum"}, "message"),
    ],
)
def test_spartan_refuses_s2ssm_gate_options(model: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        Config(model=ModelConfig(kind="spartan", **model))


def test_the_lambda_rule_is_dual_ascent_on_the_log_multiplier() -> None:
    """SPARTAN's constraint "error <= tau" in the Lagrangian paths + mu (error - tau): with the
    exponential rule, log mu_{k+1} = log mu_k + rate (e_k - tau) / tau and λ = 1 / mu, written
    out here step by step (no smoothing, no clipping reached)."""
    cfg = SparsityConfig(
        rule="exponential", rate=0.2, target=1.0, lambda_init=1e-3, lambda_min=1e-9,
        lambda_max=1.0, ema=0.0, warmup_steps=1,
    )  # fmt: skip
    schedule = LambdaSchedule(cfg)
    errors = [5.0, 0.5, 2.0, 1.0, 0.1, 3.0]
    schedule.update(errors[0])  # the warm-up step
    log_mu = -math.log(cfg.lambda_init)
    for e in errors[1:]:
        log_mu += cfg.rate * (e - cfg.target) / cfg.target
        assert schedule.update(e) == pytest.approx(math.exp(-log_mu), rel=1e-12)
