"""S2-SSM model: shapes, gradients, gates, path counting, λ schedule, loss."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s2ssm import graph
from s2ssm.config import Config, ModelConfig, SparsityConfig, VAEConfig, apply_overrides
from s2ssm.errors import InvalidInputError, InvalidTypeError
from s2ssm.models import (
    NEG_MASK,
    S2SSM,
    DynamicsOutput,
    EdgeGate,
    LambdaSchedule,
    MLPEdgeGate,
    ObjectVAE,
    SlotDynamics,
    adjacency_layers,
    candidate_edges,
    compose_frame,
    dynamics_loss,
    edge_benefits,
    fit_env_code,
    identify_env_codes,
    local_graph_from_edges,
    object_images,
    open_probability_shift,
    path_count_matrix,
    path_penalty,
    rollout,
    sample_edges,
)

K, D = 4, 8


def small_model_config(**overrides: object) -> ModelConfig:
    base = {"d_model": 16, "num_layers": 2, "d_state": 4, "expand": 2, "num_heads": 2}
    base.update(overrides)
    return ModelConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# -- object encoding ---------------------------------------------------------------------------


def test_object_images_select_each_objects_pixels() -> None:
    frames = torch.randint(1, 256, (2, 3, 8, 8, 3), dtype=torch.uint8)
    masks = torch.randint(0, 16, (2, 3, 8, 8), dtype=torch.uint8)
    images = object_images(frames, masks, K)
    assert images.shape == (2, 3, K, 3, 8, 8)
    assert images.dtype == torch.float32
    for k in range(K):
        inside = ((masks >> k) & 1).bool()
        expected = frames.float().div(255).movedim(-1, -3) * inside.unsqueeze(-3)
        torch.testing.assert_close(images[:, :, k], expected)


def test_object_images_reject_bad_input() -> None:
    frames = torch.zeros(2, 8, 8, 3, dtype=torch.uint8)
    with pytest.raises(InvalidTypeError, match="uint8"):
        object_images(frames.float(), torch.zeros(2, 8, 8, dtype=torch.uint8), K)
    with pytest.raises(InvalidInputError, match="frames must be"):
        object_images(frames, torch.zeros(2, 8, 7, dtype=torch.uint8), K)


def test_background_subtracted_images_compose_back_to_the_frame() -> None:
    from s2ssm import sim

    batch = sim.generate("neutral", 6, 8, seed=5, resolution=16, intervention_prob=0.5)
    frames = torch.from_numpy(np.asarray(batch.frames))
    masks = torch.from_numpy(np.asarray(batch.masks))
    scene = torch.from_numpy(sim.background(16))
    images = object_images(frames, masks, K, scene)
    assert float(images.min()) < 0.0  # dark objects on the light field
    covered = sum(((masks >> k) & 1).int() for k in range(K))  # objects per pixel
    composed = compose_frame(images, scene).movedim(-3, -1)
    single = covered <= 1  # overlaps would double count, as without a background
    torch.testing.assert_close(composed[single], frames.float().div(255)[single])
    with pytest.raises(InvalidInputError, match="background"):
        object_images(frames, masks, K, scene[:8])


def test_image_moments_move_continuously_with_the_object() -> None:
    from s2ssm import sim
    from s2ssm.models import image_moments

    states = np.zeros((801, len(sim.STATE_NAMES)))
    states[:, 0] = np.linspace(4.0, 12.0, 801)  # the left paddle, in steps of 0.01
    states[:, 1], states[:, 2], states[:, 3], states[:, 5] = 16.0, 16.0, 16.0, 2.0
    frames, masks = sim.render(states, resolution=32)
    scene = torch.from_numpy(sim.background(32))
    images = object_images(torch.from_numpy(frames), torch.from_numpy(masks), K, scene)[:, 0]
    moments = image_moments(images)
    steps = (moments[1:] - moments[:-1]).abs().amax(dim=0)
    # a 0.01 move of the paddle moves no moment by more than a few hundredths (a hard presence
    # switch or a background-grey edge made some jump by 0.1 - 1)
    assert float(steps.max()) < 0.03
    span = moments.amax(dim=0) - moments.amin(dim=0)
    assert float(span[1]) > 0.4  # the red channel's centroid y (blue paddle on grey) follows


def test_vae_shapes_and_gradients() -> None:
    vae = ObjectVAE(VAEConfig(latent_dim=D, channels=(4, 8)), resolution=16)
    torch.nn.init.normal_(vae.decoder[-1].weight, std=0.1)  # zero-initialised: would hide grads
    images = torch.rand(5, 3, 3, 16, 16)
    mu, logvar = vae.encode(images)
    assert mu.shape == logvar.shape == (5, 3, D)
    assert vae.decode(mu).shape == (5, 3, 3, 16, 16)
    assert compose_frame(vae.decode(mu)).shape == (5, 3, 16, 16)
    loss, metrics = vae.loss(images.flatten(0, 1))
    loss.backward()
    assert set(metrics) == {"vae_recon", "vae_kl"}
    for name, p in vae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- gates ---------------------------------------------------------------------------------------


def test_eval_edges_are_thresholded_probabilities() -> None:
    logits = torch.randn(3, K, K + 1) * 3
    mask, edges, gate = sample_edges(
        logits, mode="straight_through", temperature=0.5, training=False, threshold=0.7
    )
    assert gate is None
    assert torch.equal(edges, torch.sigmoid(logits) > 0.7)
    assert torch.equal(mask, torch.where(edges, 0.0, NEG_MASK))


@pytest.mark.parametrize("temperature", [0.3, 1.0])
def test_gumbel_sigmoid_edges_follow_the_gate_probability(temperature: float) -> None:
    # P(z + logistic noise > 0) = sigmoid(z) whatever the temperature
    logits = torch.tensor([-2.0, -0.5, 0.0, 1.0, 2.5]).repeat(20000, 1)
    _, edges, _ = sample_edges(
        logits, mode="straight_through", temperature=temperature, training=True, threshold=0.5
    )
    freq = edges.float().mean(0)
    torch.testing.assert_close(freq, torch.sigmoid(logits[0]), atol=0.015, rtol=0)


def test_straight_through_forward_is_binary_and_backward_is_relaxed() -> None:
    logits = torch.randn(64, K, K + 1, requires_grad=True)
    mask, edges, gate = sample_edges(
        logits, mode="straight_through", temperature=0.5, training=True, threshold=0.5
    )
    assert gate is None
    assert torch.equal(mask.detach(), torch.where(edges, 0.0, NEG_MASK))
    mask.sum().backward()
    assert logits.grad is not None
    assert (logits.grad > 0).all()  # d log sigmoid(y) / dz > 0 everywhere


def test_relaxed_gate_is_log_sigmoid() -> None:
    logits = torch.randn(16, K, K + 1)
    torch.manual_seed(1)
    mask, edges, _ = sample_edges(
        logits, mode="relaxed", temperature=0.5, training=True, threshold=0.5
    )
    assert (mask <= 0).all()
    assert torch.equal(edges, mask > math.log(0.5))
    with pytest.raises(InvalidInputError, match="mode"):
        sample_edges(logits, mode="hard", temperature=1.0, training=True, threshold=0.5)
    with pytest.raises(InvalidInputError, match="gradient"):
        sample_edges(
            logits, mode="relaxed", temperature=1.0, training=True, threshold=0.5, gradient="x"
        )


@pytest.mark.parametrize("temperature", [0.5, 2.0 / 3.0])
def test_hard_concrete_gate_is_clipped_and_open_with_the_shifted_probability(
    temperature: float,
) -> None:
    logits = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0]).repeat(20000, 1).requires_grad_(True)
    mask, edges, gate = sample_edges(
        logits, mode="hard_concrete", temperature=temperature, training=True, threshold=0.5
    )
    assert gate is not None and ((gate >= 0) & (gate <= 1)).all()
    assert torch.equal(edges, gate > 0) and not mask.requires_grad
    assert torch.equal(mask, torch.where(edges, 0.0, NEG_MASK))
    assert (gate == 1).any() and ((gate > 0) & (gate < 1)).any()
    shift = open_probability_shift("hard_concrete", temperature)
    assert shift == pytest.approx(-temperature * math.log(0.1 / 1.1))
    torch.testing.assert_close(
        edges.float().mean(0), torch.sigmoid(logits[0].detach() + shift), atol=0.015, rtol=0
    )
    gate.sum().backward()
    assert logits.grad is not None and (logits.grad >= 0).all() and logits.grad.sum() > 0


def test_clip_gradient_keeps_the_gate_and_passes_the_gradient_of_clipped_samples() -> None:
    logits = torch.full((4000, 3), 3.0).requires_grad_(True)  # mostly clipped at 1
    torch.manual_seed(1)
    _, edges, gate = sample_edges(
        logits, mode="hard_concrete", temperature=0.5, training=True, threshold=0.5
    )
    torch.manual_seed(1)
    _, edges_st, gate_st = sample_edges(
        logits,
        mode="hard_concrete",
        temperature=0.5,
        training=True,
        threshold=0.5,
        clip_gradient=True,
    )
    assert gate is not None and gate_st is not None
    assert torch.equal(edges, edges_st) and torch.equal(gate, gate_st)  # same values
    clipped = gate.detach() == 1
    assert clipped.float().mean() > 0.5
    (grad,) = torch.autograd.grad(gate.sum(), logits)
    (grad_st,) = torch.autograd.grad(gate_st.sum(), logits)
    assert (grad[clipped] == 0).all()  # the clip blocks it
    # straight through: the unclipped gate's gradient, sigmoid'(y) > 0 (up to float32
    # underflow far out in the tail of the noise)
    assert (grad_st[clipped] >= 0).all() and (grad_st[clipped] > 0).float().mean() > 0.9
    inside = (gate.detach() > 0) & (gate.detach() < 1)
    torch.testing.assert_close(grad_st[inside], grad[inside])


def test_evaluation_rule_open_probability_uses_the_training_shift() -> None:
    shift = open_probability_shift("hard_concrete", 0.5)
    logits = torch.tensor([-3.0, -1.5, -1.0, 0.0, 2.0])
    _, plain, _ = sample_edges(
        logits, mode="hard_concrete", temperature=0.5, training=False, threshold=0.5
    )
    _, shifted, _ = sample_edges(
        logits,
        mode="hard_concrete",
        temperature=0.5,
        training=False,
        threshold=0.5,
        eval_shift=shift,
    )
    assert plain.tolist() == [False, False, False, False, True]
    assert shifted.tolist() == (torch.sigmoid(logits + shift) > 0.5).tolist()
    assert shifted.tolist() == [False, False, True, True, True]  # shift = 0.5 log 11 = 1.2


def test_mlp_edge_gate_is_an_mlp_over_the_pair_and_its_difference() -> None:
    gate = MLPEdgeGate(D, K, K + 1, init_bias=1.0, hidden=6)
    x, y = torch.randn(5, K, D), torch.randn(5, K + 1, D)
    z, overshoot = gate(x, y)
    assert z.shape == (5, K, K + 1) and overshoot is None
    # the reference: one hidden layer over the concatenation (x_i, y_j, x_i - y_j)
    w1 = torch.cat([gate.child.weight, gate.parent.weight, gate.diff.weight], dim=1)
    for b in range(5):
        for i in range(K):
            for j in range(K + 1):
                pair = torch.cat([x[b, i], y[b, j], x[b, i] - y[b, j]])
                hidden = torch.nn.functional.gelu(w1 @ pair + gate.child.bias)
                want = gate.out.weight[0] @ hidden + gate.bias[i, j]
                torch.testing.assert_close(z[b, i, j], want, atol=1e-5, rtol=1e-5)
    # state dependent from the start: the spread over pairs is not negligible next to the bias
    assert z.std() > 0.05
    bounded, over = MLPEdgeGate(D, K, K + 1, init_bias=1.0, bound=0.5)(x, y)
    assert over is not None and bounded.abs().max() <= 0.5


@pytest.mark.parametrize("rule", ["logit", "open_probability"])
def test_dynamics_with_the_mlp_gate_and_clip_gradient_train(rule: str) -> None:
    cfg = small_model_config(gate_scorer="mlp", gate_clip_gradient=True, edge_rule=rule)
    model = SlotDynamics(cfg, latent_dim=D)
    torch.nn.init.normal_(model.head.weight, std=0.1)
    slots = torch.randn(3, 7, K, D)
    out = model(slots, torch.tensor([0, 3, 10]))
    loss, _ = dynamics_loss(out, slots, lam=0.1)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        ev = model(slots, torch.tensor([0, 3, 10]))
    shift = out.open_shift if rule == "open_probability" else 0.0
    assert ev.eval_shift == shift
    probs = torch.sigmoid(ev.gate_logits + shift)
    off = ~torch.eye(K, K + 1, dtype=torch.bool)
    assert torch.equal(ev.edges[..., off], (probs > 0.5)[..., off])
    with pytest.raises(InvalidInputError, match="gate_scorer"):
        Config(model=small_model_config(gate_scorer="attention"))
    with pytest.raises(InvalidInputError, match="edge_rule"):
        Config(model=small_model_config(edge_rule="vote"))


def test_bounded_gate_logits_stay_inside_the_bound_and_keep_their_order() -> None:

    free = EdgeGate(16, K, K + 1, init_bias=30.0)
    bounded = EdgeGate(16, K, K + 1, init_bias=30.0, bound=4.0)
    bounded.load_state_dict(free.state_dict())
    children, parents = torch.randn(8, K, 16), torch.randn(8, K + 1, 16)
    (z, none), (zb, overshoot) = free(children, parents), bounded(children, parents)
    assert none is None and overshoot is not None
    assert z.max() > 20 and zb.abs().max() < 4.0
    torch.testing.assert_close(zb, 4.0 * torch.tanh(z / 4.0))
    torch.testing.assert_close(overshoot, (z.abs() - 4.0).clamp(min=0.0))
    with pytest.raises(InvalidInputError, match="gate_logit_bound"):
        Config(model=ModelConfig(gate_logit_bound=-1.0))
    with pytest.raises(InvalidInputError, match="gate_init_bias"):
        Config(model=ModelConfig(gate_logit_bound=4.0, gate_init_bias=5.0))
    with pytest.raises(InvalidInputError, match="gate_logit_decay"):
        Config(model=ModelConfig(gate_logit_decay=-1.0))


def test_message_gate_is_binary_forward_and_sigmoid_backward() -> None:
    logits = torch.randn(64, K, K + 1, requires_grad=True)
    torch.manual_seed(3)
    mask, edges, gate = sample_edges(
        logits,
        mode="straight_through",
        temperature=0.5,
        training=True,
        threshold=0.5,
        gradient="message",
    )
    torch.manual_seed(3)
    mask_mode, edges_mode, _ = sample_edges(
        logits, mode="straight_through", temperature=0.5, training=True, threshold=0.5
    )
    assert torch.equal(edges, edges_mode) and torch.equal(mask, mask_mode.detach())
    assert not mask.requires_grad  # the gradient goes through the gate, not the mask
    assert gate is not None and torch.equal(gate.detach(), edges.float())
    gate.sum().backward()
    assert logits.grad is not None  # d sigmoid(y) / dz >= 0 (0 where it underflows)
    assert (logits.grad >= 0).all() and (logits.grad > 0).float().mean() > 0.9


# -- causal graph --------------------------------------------------------------------------------


def brute_force_paths(layers: np.ndarray) -> np.ndarray:
    """Count, by enumeration, the walks parent -> ... -> child through child x parent layers
    where each step follows an edge of its layer or stays put."""
    n_layers, n, _ = layers.shape
    counts = np.zeros((n, n), dtype=np.int64)
    for start in range(n):
        for walk in itertools.product(range(n), repeat=n_layers):
            node, ways = start, 1
            for layer, nxt in zip(layers, walk, strict=True):
                ways *= int(layer[nxt, node]) + (1 if nxt == node else 0)
                node = nxt
            counts[node, start] += ways
    return counts


def test_path_count_matrix_matches_enumeration() -> None:
    rng = np.random.default_rng(0)
    layers = rng.integers(0, 3, size=(3, 4, 4))
    got = path_count_matrix(torch.from_numpy(layers).double()).numpy()
    np.testing.assert_array_equal(got, brute_force_paths(layers))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    n_layers=st.integers(1, 4),
    n=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
)
def test_path_count_matrix_matches_rust_path_counts(
    batch: int, n_layers: int, n: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    binary = rng.random((batch, n_layers, n, n)) < 0.4
    ours = path_count_matrix(torch.from_numpy(binary).double()).numpy()
    theirs = graph.path_counts(binary, layout="child_parent")
    np.testing.assert_array_equal(ours, theirs.astype(np.float64))
    weights = rng.random((batch, n_layers, n, n))
    np.testing.assert_allclose(
        path_count_matrix(torch.from_numpy(weights)).numpy(),
        graph.path_counts(weights, layout="child_parent"),
        rtol=1e-12,
    )


def test_adjacency_layers_drop_self_edges_and_add_an_environment_row() -> None:
    gates = torch.rand(2, 3, K, K + 1)
    square = adjacency_layers(gates)
    assert square.shape == (2, 3, K + 1, K + 1)
    assert (square[..., K, :] == 0).all()
    assert (torch.diagonal(square, dim1=-2, dim2=-1) == 0).all()
    off = ~torch.eye(K, K + 1, dtype=torch.bool)
    torch.testing.assert_close(square[..., :K, :][..., off], gates[..., off])
    with pytest.raises(InvalidInputError, match="K \\+ 1"):
        adjacency_layers(torch.rand(2, 3, K, K))


def test_local_graph_matches_rust_causal_graph() -> None:
    edges = torch.rand(5, 6, 3, K, K + 1) < 0.3
    ours = local_graph_from_edges(edges).numpy()
    square = adjacency_layers(edges.to(torch.uint8)).numpy().reshape(30, 3, K + 1, K + 1)
    theirs = graph.causal_graph(square, layout="child_parent")[:, :K, :].reshape(5, 6, K, K + 1)
    np.testing.assert_array_equal(ours, theirs)


def test_path_penalty_counts_non_trivial_paths_and_has_gradients() -> None:
    zeros = torch.zeros(2, 3, K, K + 1)
    assert path_penalty(zeros).item() == 0.0
    one_edge = zeros.clone()
    one_edge[..., 0, 1] = 1.0  # 1 -> 0 in every layer: 3 layers give 3 paths
    assert path_penalty(one_edge).item() == pytest.approx(3.0)
    probs = torch.rand(2, 2, K, K + 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(path_penalty, (probs,))


# -- dynamics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ssm", "transformer"])
@pytest.mark.parametrize("use_interventions", [False, True])
def test_dynamics_shapes_and_gradients(kind: str, use_interventions: bool) -> None:
    cfg = small_model_config(kind=kind, use_interventions=use_interventions)
    model = SlotDynamics(cfg, latent_dim=D)
    nn_head = model.head
    torch.nn.init.normal_(nn_head.weight, std=0.1)  # the zero init would hide upstream gradients
    slots = torch.randn(3, 7, K, D)
    inter = torch.rand(3, 7, 5) < 0.3 if use_interventions else None
    out = model(slots, torch.tensor([0, 3, 10]), inter)
    assert out.pred.shape == (3, 7, K, D)
    assert out.gate_logits.shape == (3, 7, 2, K, K + 1)
    assert out.edges.shape == (3, 7, 2, K, K + 1) and out.edges.dtype == torch.bool
    assert out.local_graphs().shape == (3, 7, K, K + 1)
    loss, metrics = dynamics_loss(out, slots, lam=0.1)
    loss.backward()
    assert set(metrics) >= {"mse", "paths", "loss", "edge_density"}
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ["ssm", "transformer"])
def test_dynamics_are_causal_in_time(kind: str) -> None:
    model = SlotDynamics(small_model_config(kind=kind), latent_dim=D).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    slots = torch.randn(2, 9, K, D)
    later = slots.clone()
    later[:, 5:] += torch.randn_like(later[:, 5:])
    ids = torch.tensor([1, 2])
    with torch.no_grad():
        a, b = model(slots, ids).pred, model(later, ids).pred
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize(
    ("gate", "message"),
    [("straight_through", "attention"), ("hard_concrete", "attention"),
     ("hard_concrete", "gated_sum")],
)  # fmt: skip
@pytest.mark.parametrize("attend_self", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_closed_gates_isolate_objects(
    attend_self: bool, training: bool, gate: str, message: str
) -> None:
    cfg = small_model_config(
        gate_init_bias=-40.0,
        gate_logit_bound=0.0,
        attend_self=attend_self,
        gate=gate,
        message=message,
        gate_clip_gradient=message == "gated_sum",
    )
    model = SlotDynamics(cfg, latent_dim=D).train(training)
    torch.nn.init.normal_(model.head.weight, std=0.1)
    slots = torch.randn(2, 6, K, D)
    other = slots.clone()
    other[:, :, 1:] = torch.randn_like(other[:, :, 1:])  # every object but 0 changes
    ids = torch.tensor([0, 0])
    a, b = model(slots, ids), model(other, ids)
    c = model(slots, torch.tensor([3, 5]))  # another environment
    assert not a.edges.any()
    torch.testing.assert_close(a.pred[:, :, 0], b.pred[:, :, 0], rtol=0, atol=0)
    torch.testing.assert_close(a.pred, c.pred, rtol=0, atol=0)
    assert not torch.allclose(a.pred[:, :, 1], b.pred[:, :, 1])
    if training:  # no NaN gradients from the rows whose edges are all closed
        a.pred.sum().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    # with open gates object 0 does see the others
    model_open = SlotDynamics(
        small_model_config(gate_init_bias=20.0, message=message), latent_dim=D
    ).eval()
    torch.nn.init.normal_(model_open.head.weight, std=0.1)
    with torch.no_grad():
        c, d = model_open(slots, ids), model_open(other, ids)
    assert not torch.allclose(c.pred[:, :, 0], d.pred[:, :, 0])


@pytest.mark.parametrize(
    ("gate", "gradient"),
    [("straight_through", "message"), ("straight_through", "mask"), ("hard_concrete", "mask")],
)
def test_a_lone_open_edge_gets_a_gradient_only_through_its_message(
    gate: str, gradient: str
) -> None:
    # child 0 has one open parent (the environment): the softmax over one edge is 1 whatever
    # the additive mask, so the mask gradient cannot tell the edge is useful; the message can
    cfg = small_model_config(
        gate_init_bias=-40.0,
        gate_logit_bound=0.0,
        gate=gate,
        gate_gradient=gradient,
        gate_temperature=1.0,
        num_layers=1,
    )
    model = SlotDynamics(cfg, latent_dim=D).train()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    edge_gate = model.blocks[0].gate
    with torch.no_grad():
        edge_gate.bias[0, K] = 2.0
    out = model(torch.randn(4, 6, K, D), torch.tensor([0, 1, 2, 3]))
    assert out.edges[..., 0, K].any() and not out.edges[..., 1:, :].any()
    out.pred[..., 0, :].pow(2).sum().backward()
    assert edge_gate.bias.grad is not None
    grad = edge_gate.bias.grad[0, K].abs().item()
    assert (grad < 1e-6) if gate == "straight_through" and gradient == "mask" else (grad > 1e-4)


@pytest.mark.parametrize("message", ["attention", "gated_sum"])
def test_closed_samples_learn_what_opening_would_do_only_in_the_gated_sum(message: str) -> None:
    # every gate closed (logit -40): with the clip's straight-through gradient the gated sum
    # still tells each gate what its message would change, the softmax over open edges cannot
    cfg = small_model_config(
        gate_init_bias=-40.0, gate_logit_bound=0.0, message=message, gate_clip_gradient=True,
        num_layers=1,
    )  # fmt: skip
    model = SlotDynamics(cfg, latent_dim=D).train()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    out = model(torch.randn(3, 5, K, D), torch.tensor([0, 1, 2]))
    assert not out.edges.any()
    out.pred.pow(2).sum().backward()
    bias_grad = model.blocks[0].gate.bias.grad
    assert bias_grad is not None
    off_diagonal = ~torch.eye(K, K + 1, dtype=torch.bool)
    if message == "gated_sum":
        assert (bias_grad[off_diagonal].abs() > 0).all()
    else:
        assert bias_grad.abs().max() == 0


@pytest.mark.parametrize("scorer", ["bilinear", "mlp"])
def test_a_fixed_gate_bias_stays_at_its_start_while_the_scores_learn(scorer: str) -> None:
    cfg = small_model_config(gate_learn_bias=False, gate_init_bias=0.5, gate_scorer=scorer)
    model = SlotDynamics(cfg, latent_dim=D).train()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    slots = torch.randn(3, 5, K, D)
    for _ in range(3):
        out = model(slots, torch.tensor([0, 1, 2]))
        loss, _ = dynamics_loss(out, slots, lam=1e-2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for i, block in enumerate(model.blocks):
        torch.testing.assert_close(block.gate.bias, before[f"blocks.{i}.gate.bias"])
        assert block.gate.bias.grad is None
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(".gate." in n for n in moved)


def test_gated_sum_is_the_gate_weighted_sum_of_projected_parents() -> None:
    cfg = small_model_config(message="gated_sum", num_layers=1, gate_init_bias=0.0)
    torch.manual_seed(3)
    block = SlotDynamics(cfg, latent_dim=D).blocks[0].eval()
    x, env = torch.randn(2, 3, K, 16), torch.randn(2, 3, 16)
    with torch.no_grad():
        got, _logits, edges, _ = block(x, env)
        # the same block written out: temporal layer, then sum_j e_ij W_o W_v norm(y_j)
        seq = x.transpose(1, 2).reshape(2 * K, 3, 16)
        h = (seq + block.temporal(block.norm_time(seq))).view(2, K, 3, 16).transpose(1, 2)
        parents = block.norm_key(torch.cat([h, env.unsqueeze(2)], dim=2))
        e = edges.float() * ~torch.eye(K, K + 1, dtype=torch.bool)
        msg = torch.einsum("btij,btjd->btid", e, block.value(parents))
        want = h + block.message_out(msg) + block.message_bias
        want = want + block.mlp(block.norm_mlp(want))
    torch.testing.assert_close(got, want)
    assert e.any() and not e[..., :, :K][..., ~torch.eye(K, dtype=torch.bool)].all()
    with pytest.raises(InvalidInputError, match="gated_sum"):
        Config(model=small_model_config(message="gated_sum", gate="straight_through"))


def test_message_gradient_is_the_derivative_of_gate_scaled_messages() -> None:
    # the straight-through message gate (1 in value on open edges) leaves the output as it is,
    # and its gradient is that of out(g) = W_o (sum_j a_j g_j v_j) with the weights a held fixed
    att = SlotDynamics(small_model_config(num_heads=2), latent_dim=D).blocks[0].attention
    children, parents = torch.randn(5, K, 16), torch.randn(5, K + 1, 16)
    logits = torch.randn(5, K, K + 1, requires_grad=True)
    edges = torch.rand(5, K, K + 1) > 0.3
    mask = torch.where(edges, 0.0, NEG_MASK)
    soft = torch.sigmoid(logits)
    gate = edges + soft - soft.detach()  # what sample_edges(gradient="message") returns
    out, _ = att(children, parents, mask=mask, gate=gate)
    plain, weights = att(children, parents, mask=mask, return_weights=True)
    torch.testing.assert_close(out, plain)
    cot = torch.randn(5, K, 16)
    (grad,) = torch.autograd.grad((out * cot).sum(), logits)
    values = att._heads(att.v_proj(parents)).detach()
    msg = torch.einsum("bhqk,bqk,bhkd->bqhd", weights.detach(), torch.sigmoid(logits), values)
    ref = msg.flatten(2) @ att.out_proj.weight.detach().T
    (want,) = torch.autograd.grad((ref * cot).sum(), logits)
    torch.testing.assert_close(grad, want)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("gate", ["straight_through", "hard_concrete"])
def test_without_env_parent_the_environment_has_no_edges_and_no_effect(gate: str) -> None:
    model = SlotDynamics(small_model_config(env_parent=False, gate=gate), latent_dim=D)
    torch.nn.init.normal_(model.head.weight, std=0.1)
    slots = torch.randn(2, 6, K, D)
    for training in (True, False):
        model.train(training)
        torch.manual_seed(1)
        a = model(slots, torch.tensor([0, 0]))
        torch.manual_seed(1)
        b = model(slots, torch.tensor([3, 5]))
        assert not a.edges[..., K].any() and a.edges[..., :K].any()
        assert (a.gate_probs[..., K] == 0).all()
        torch.testing.assert_close(a.pred, b.pred, rtol=0, atol=0)
        loss, _ = dynamics_loss(a, slots, lam=0.1)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_dynamics_reject_bad_input() -> None:
    model = SlotDynamics(small_model_config(), latent_dim=D)
    with pytest.raises(InvalidInputError, match="slots must be"):
        model(torch.randn(2, 5, K + 1, D), torch.tensor([0, 0]))
    with pytest.raises(InvalidInputError, match="env_ids must be in"):
        model(torch.randn(2, 5, K, D), torch.tensor([0, 11]))
    with pytest.raises(InvalidInputError, match="env_ids must be"):
        model(torch.randn(2, 5, K, D), torch.tensor([0]))
    with_inter = SlotDynamics(small_model_config(use_interventions=True), latent_dim=D)
    with pytest.raises(InvalidInputError, match="interventions"):
        with_inter(torch.randn(2, 5, K, D), torch.tensor([0, 0]))


def test_rollout_first_step_is_the_one_step_prediction() -> None:
    model = SlotDynamics(small_model_config(), latent_dim=D).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    ctx = torch.randn(2, 4, K, D)
    ids = torch.tensor([0, 1])
    preds = rollout(model, ctx, 3, ids)
    assert preds.shape == (2, 3, K, D)
    with torch.no_grad():
        torch.testing.assert_close(preds[:, 0], model(ctx, ids).pred[:, -1])
        second = model(torch.cat([ctx, preds[:, :1]], 1), ids).pred[:, -1]
    torch.testing.assert_close(preds[:, 1], second)


def test_fit_env_code_lowers_the_loss_and_extends_the_codebook() -> None:
    model = SlotDynamics(small_model_config(), latent_dim=D)
    torch.nn.init.normal_(model.head.weight, std=0.3)
    slots = torch.randn(2, 5, K, D)
    model.eval()
    with torch.no_grad():
        code0 = model.env_slot.codebook.weight.mean(0, keepdim=True)
        before = torch.nn.functional.mse_loss(
            model(slots, None, env_code=code0).pred[:, :-1], slots[:, 1:]
        )
    code = fit_env_code(model, slots, steps=8, lr=0.1)
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(
            model(slots, None, env_code=code.unsqueeze(0)).pred[:, :-1], slots[:, 1:]
        )
    assert after < before
    new_id = model.env_slot.extend_codebook(code)
    assert new_id == 11 and model.env_slot.codebook.num_embeddings == 12
    with torch.no_grad():
        via_id = model(slots, torch.full((2,), new_id)).pred
        via_code = model(slots, None, env_code=code.unsqueeze(0)).pred
    torch.testing.assert_close(via_id, via_code)


def test_identified_env_codes_see_only_the_context_and_each_sequence_alone() -> None:
    model = SlotDynamics(small_model_config(use_interventions=True), latent_dim=D)
    torch.nn.init.normal_(model.head.weight, std=0.3)
    slots = torch.randn(3, 7, K, D)
    inter = torch.rand(3, 7, 5) < 0.3
    init = model.env_slot.codebook.weight.detach().mean(0)
    codes = identify_env_codes(model, slots, 4, inter, init=init, steps=6, lr=0.1)
    assert codes.shape == (3, model.cfg.d_model) and model.training  # mode restored
    # what comes after the context (the scored steps) does not move the codes
    later = slots.clone()
    later[:, 4:] = torch.randn(3, 3, K, D) * 5
    flipped = inter.clone()
    flipped[:, 4:] = ~flipped[:, 4:]
    again = identify_env_codes(model, later, 4, flipped, init=init, steps=6, lr=0.1)
    torch.testing.assert_close(again, codes, rtol=0, atol=0)
    # the context does move them, and each sequence's code only through its own context
    moved = slots.clone()
    moved[0, 1] += 1.0
    third = identify_env_codes(model, moved, 4, inter, init=init, steps=6, lr=0.1)
    assert not torch.allclose(third[0], codes[0])
    torch.testing.assert_close(third[1:], codes[1:], rtol=1e-5, atol=1e-6)
    alone = identify_env_codes(model, slots[1:2], 4, inter[1:2], init=init, steps=6, lr=0.1)
    torch.testing.assert_close(alone[0], codes[1], rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the fit lowers the context's error

        def context_mse(code: torch.Tensor) -> float:
            out = model(slots[:, :4], None, inter[:, :4], env_code=code)
            return float(((out.pred[:, :-1] - slots[:, 1:4]) ** 2).mean())

        assert context_mse(codes) < context_mse(init.unsqueeze(0))
    with pytest.raises(InvalidInputError, match="context"):
        identify_env_codes(model, slots, 1, inter, init=init)


def test_whole_model_encodes_and_decodes() -> None:
    cfg = apply_overrides(
        Config(),
        [
            "data.resolution=16",
            "vae.channels=[4, 8]",
            f"vae.latent_dim={D}",
            "model.d_model=16",
            "model.d_state=4",
        ],
    )
    model = S2SSM(cfg)
    frames = torch.randint(0, 256, (2, 5, 16, 16, 3), dtype=torch.uint8)
    masks = torch.randint(0, 16, (2, 5, 16, 16), dtype=torch.uint8)
    slots = model.encode_slots(frames, masks)
    assert slots.shape == (2, 5, K, D)
    assert model.decode_frames(slots).shape == (2, 5, 3, 16, 16)


# -- loss and λ ----------------------------------------------------------------------------------


def test_loss_is_mse_plus_lambda_times_paths() -> None:
    model = SlotDynamics(small_model_config(), latent_dim=D)
    slots = torch.randn(2, 5, K, D)
    out = model(slots, torch.tensor([0, 0]))
    loss0, _ = dynamics_loss(out, slots, 0.0)
    loss1, m1 = dynamics_loss(out, slots, 0.25)
    mse = torch.nn.functional.mse_loss(out.pred[:, :-1], slots[:, 1:])
    assert loss0.item() == pytest.approx(mse.item())
    # the hard concrete's open probability: sigmoid(z + temperature x log(1.1 / 0.1))
    shift = model.cfg.gate_temperature * math.log(1.1 / 0.1)
    paths = path_penalty(torch.sigmoid(out.gate_logits[:, :-1] + shift))
    assert loss1.item() == pytest.approx(mse.item() + 0.25 * paths.item(), rel=1e-6)
    assert m1["paths"] == pytest.approx(paths.item())


def test_logit_decay_adds_the_squared_overshoot_past_the_bound() -> None:
    cfg = small_model_config(gate_logit_bound=4.0, gate_logit_decay=0.5)
    model = SlotDynamics(cfg, latent_dim=D)
    overshoots: list[torch.Tensor] = []
    for block in model.blocks:
        with torch.no_grad():  # logits drifted past the bound
            block.gate.bias.fill_(6.0)
        block.gate.register_forward_hook(lambda _m, _i, out: overshoots.append(out[1]))
    slots = torch.randn(2, 5, K, D)
    out = model(slots, torch.tensor([0, 1]))
    # per block: the mean over positions of the summed squared overshoot (checked against
    # max(|z| - bound, 0) in the bounded-logits test)
    drift = sum(o.detach().pow(2).sum(dim=(-2, -1)).mean() for o in overshoots)
    assert len(overshoots) == 2 and drift > 2 * 20 * 1.0  # every logit >= 1 past the bound
    torch.testing.assert_close(
        torch.as_tensor(out.logit_decay).detach(), 0.5 * drift, rtol=1e-5, atol=0
    )
    loss, metrics = dynamics_loss(out, slots, lam=0.0)
    assert loss.item() == pytest.approx(metrics["mse"] + 0.5 * float(drift), rel=1e-5)
    assert metrics["gate_decay"] == pytest.approx(0.5 * float(drift), rel=1e-5)


def reference_lambda(cfg: SparsityConfig, errors: list[float]) -> list[float]:
    """λ of steps 0..len(errors) by the rule of the LambdaSchedule docstring, written out
    independently (step k's λ depends on the smoothed errors of steps < k)."""
    lams: list[float] = []
    smoothed: float | None = None
    lam = 0.0
    target = cfg.target
    for k in range(len(errors) + 1):
        if not cfg.enabled or k < cfg.warmup_steps:
            lam = 0.0
        elif k == cfg.warmup_steps:
            lam = cfg.lambda_init
            if cfg.target_ratio > 0 and cfg.target_window > 0:
                last = errors[max(0, k - cfg.target_window) : k]
                target = cfg.target_ratio * sum(last) / len(last)
            elif cfg.target_ratio > 0:
                assert smoothed is not None
                target = cfg.target_ratio * smoothed
        else:
            assert smoothed is not None
            if cfg.rule == "exponential":
                tau = max(target, 1e-12)
                lam = lam * math.exp(cfg.rate * (tau - smoothed) / tau)
                lam = min(max(lam, cfg.lambda_min), cfg.lambda_max)
            elif smoothed < target:
                lam = min(lam * cfg.growth, cfg.lambda_max)
            else:
                lam = max(lam * cfg.shrink, cfg.lambda_min)
        lams.append(lam)
        if k < len(errors):
            e = errors[k]
            smoothed = e if smoothed is None else cfg.ema * smoothed + (1 - cfg.ema) * e
    return lams


@settings(max_examples=60, deadline=None)
@given(
    errors=st.lists(st.floats(0, 1e-3), min_size=1, max_size=60),
    ema=st.sampled_from([0.0, 0.5, 0.9]),
    warmup=st.integers(0, 10),
    enabled=st.booleans(),
    ratio=st.sampled_from([0.0, 0.8, 1.0, 1.5]),
    window=st.sampled_from([0, 1, 3, 20]),
    rule=st.sampled_from(["steps", "exponential"]),
)
def test_lambda_schedule_follows_its_rule(
    errors: list[float],
    ema: float,
    warmup: int,
    enabled: bool,
    ratio: float,
    window: int,
    rule: str,
) -> None:
    ratio = ratio if warmup > 0 else 0.0
    cfg = SparsityConfig(
        rule=rule,
        rate=0.3,
        target_ratio=ratio,
        target_window=window,
        enabled=enabled,
        lambda_init=1e-3,
        lambda_min=1e-4,
        lambda_max=2e-3,
        target=3e-4,
        growth=1.1,
        shrink=0.8,
        ema=ema,
        warmup_steps=warmup,
    )
    schedule = LambdaSchedule(cfg)
    first = schedule.value
    got = [schedule.update(e) for e in errors]
    assert first == (cfg.lambda_init if enabled and warmup == 0 else 0.0)
    expected = reference_lambda(cfg, errors)
    assert first == expected[0]
    assert got == pytest.approx(expected[1:], rel=1e-12)
    active = got[warmup:] if enabled else []
    assert all(cfg.lambda_min <= v <= cfg.lambda_max for v in active)
    assert all(v == 0.0 for v in got[: max(0, warmup - 1)])
    if not enabled:
        assert set(got) == {0.0}


def test_lambda_grows_below_target_and_shrinks_above() -> None:
    cfg = SparsityConfig(lambda_init=1e-3, growth=2.0, shrink=0.5, ema=0.0, warmup_steps=1)
    schedule = LambdaSchedule(cfg)
    assert schedule.value == 0.0  # warm-up step: no penalty
    assert schedule.update(0.0) == 1e-3  # end of warm-up: lambda_init
    assert schedule.update(0.0) == pytest.approx(2e-3)
    assert schedule.update(1.0) == pytest.approx(1e-3)
    state = schedule.state_dict()
    clone = LambdaSchedule(cfg)
    clone.load_state_dict(state)
    assert clone.update(0.0) == schedule.update(0.0)


def test_relative_target_is_set_from_the_warm_up_error() -> None:
    cfg = SparsityConfig(
        target=1.0, target_ratio=1.5, lambda_init=1e-3, growth=2.0, shrink=0.5, ema=0.0,
        warmup_steps=2,
    )  # fmt: skip
    schedule = LambdaSchedule(cfg)
    schedule.update(0.4)
    assert schedule.update(0.2) == 1e-3 and schedule.target == pytest.approx(0.3)
    assert schedule.update(0.25) == pytest.approx(2e-3)  # below 1.5 x 0.2
    assert schedule.update(0.35) == pytest.approx(1e-3)  # above
    clone = LambdaSchedule(cfg)
    clone.load_state_dict(schedule.state_dict())
    assert clone.target == schedule.target and clone.update(0.1) == schedule.update(0.1)
    with pytest.raises(InvalidInputError, match="target_ratio"):
        Config(sparsity=SparsityConfig(target_ratio=1.0, warmup_steps=0))
    with pytest.raises(InvalidInputError, match="target_ratio"):
        Config(sparsity=SparsityConfig(target_ratio=-1.0))


def test_relative_target_from_a_window_of_warm_up_errors_resumes_mid_window() -> None:
    cfg = SparsityConfig(
        target_ratio=2.0, target_window=3, warmup_steps=4, lambda_init=1e-3, ema=0.9
    )
    errors = [9.0, 0.1, 0.2, 0.6, 0.5]
    schedule = LambdaSchedule(cfg)
    schedule.update(errors[0])
    schedule.update(errors[1])
    clone = LambdaSchedule(cfg)  # a run resumed inside the window
    clone.load_state_dict(schedule.state_dict())
    for e in errors[2:]:
        schedule.update(e)
        clone.update(e)
    # 2 x mean(0.1, 0.2, 0.6): the first error, outside the window, does not count
    assert schedule.target == pytest.approx(0.6) and clone.target == schedule.target
    with pytest.raises(InvalidInputError, match="target_window"):
        Config(sparsity=SparsityConfig(target_window=-1))


def test_exponential_rule_steps_in_proportion_to_the_relative_error() -> None:
    cfg = SparsityConfig(
        rule="exponential", rate=0.5, target=0.2, lambda_init=1e-3, lambda_min=1e-6,
        lambda_max=1.0, ema=0.0, warmup_steps=1,
    )  # fmt: skip
    schedule = LambdaSchedule(cfg)
    assert schedule.update(0.0) == 1e-3
    # error half the target: relative slack 0.5 -> lambda x e^(0.5 x 0.5)
    assert schedule.update(0.1) == pytest.approx(1e-3 * math.exp(0.25))
    # error twice the target -> lambda x e^(-0.5): more error, less penalty (the sign)
    assert schedule.update(0.4) == pytest.approx(1e-3 * math.exp(0.25 - 0.5))
    assert schedule.update(0.2) == pytest.approx(1e-3 * math.exp(-0.25))  # at tau: unchanged
    for _ in range(200):
        schedule.update(100.0)
    assert schedule.value == cfg.lambda_min
    with pytest.raises(InvalidInputError, match=r"sparsity\.rule"):
        Config(sparsity=SparsityConfig(rule="paper"))
    with pytest.raises(InvalidInputError, match=r"sparsity\.rate"):
        Config(sparsity=SparsityConfig(rate=0.0))


def test_reference_error_fixes_tau_through_the_warm_up() -> None:
    cfg = SparsityConfig(
        target_ratio=1.1, target_window=2, warmup_steps=2, lambda_init=1e-3, growth=2.0,
        shrink=0.5, ema=0.0,
    )  # fmt: skip
    schedule = LambdaSchedule(cfg, reference_error=0.2)
    assert schedule.target == pytest.approx(0.22)
    schedule.update(5.0)
    assert schedule.update(5.0) == 1e-3 and schedule.target == pytest.approx(0.22)
    assert schedule.update(0.21) == pytest.approx(2e-3)  # below 1.1 x 0.2
    assert schedule.update(0.23) == pytest.approx(1e-3)


def test_plateau_rule_converges_when_two_windows_of_density_agree() -> None:
    cfg = SparsityConfig(warmup_steps=2, plateau_window=3, plateau_tol=0.05, lambda_init=1e-3)
    schedule = LambdaSchedule(cfg)
    densities = [0.9, 0.9, 0.8, 0.6, 0.4, 0.3, 0.3, 0.2]  # windows: (0.8 0.6 0.4) (0.3 0.3 0.2)
    for d in densities:
        schedule.update(1e-4, d)
        assert not schedule.converged  # the warm-up's densities do not count
    assert schedule.last_density == pytest.approx((0.3 + 0.3 + 0.2) / 3)
    clone = LambdaSchedule(cfg)  # resumed mid-window: the same decision
    clone.load_state_dict(schedule.state_dict())
    for s in (schedule, clone):
        s.update(1e-4, 0.25)
        s.update(1e-4, 0.25)
        assert not s.converged
        s.update(1e-4, 0.25)  # window (0.25 0.25 0.25): 0.017 from (0.3 0.3 0.2)
        assert s.converged
    without = LambdaSchedule(SparsityConfig(warmup_steps=0))
    dense = LambdaSchedule(SparsityConfig(warmup_steps=0, enabled=False, plateau_window=2))
    for _ in range(10):
        without.update(1e-4, 0.5)
        dense.update(1e-4, 0.5)
    assert not without.converged and not dense.converged
    with pytest.raises(InvalidInputError, match="plateau_window"):
        Config(sparsity=SparsityConfig(plateau_window=-1))


# -- the counterfactual gradient of Bernoulli gates ----------------------------------------------


def test_bernoulli_edges_follow_the_gate_probability_and_pass_no_gradient() -> None:
    logits = torch.tensor([-2.0, 0.0, 1.5]).repeat(20_000, 1).requires_grad_(True)
    mask, edges, gate = sample_edges(
        logits, mode="bernoulli", temperature=0.5, training=True, threshold=0.5
    )
    assert gate is None and not mask.requires_grad
    assert torch.equal(mask == 0, edges)
    share = edges.float().mean(0)
    assert torch.allclose(share, torch.sigmoid(logits[0].detach()), atol=0.015)
    assert open_probability_shift("bernoulli", 0.5) == 0.0


@pytest.mark.parametrize(("explore", "closed"), [(0.2, 0.0), (0.0, 0.3), (0.1, 0.2)])
def test_bernoulli_exploration_keeps_both_arms_of_every_edge(explore: float, closed: float) -> None:
    logits = torch.tensor([-40.0, 0.0, 40.0]).repeat(20_000, 1)
    _, edges, _ = sample_edges(
        logits,
        mode="bernoulli",
        temperature=0.5,
        training=True,
        threshold=0.5,
        explore=explore,
        explore_closed=closed,
    )
    share = edges.float().mean(0)
    expected = torch.tensor([explore, explore + (1 - explore - closed) / 2, 1 - closed])
    assert torch.allclose(share, expected, atol=0.015)
    cfg = Config()
    with pytest.raises(InvalidInputError, match="gate_explore_closed"):
        apply_overrides(cfg, ["model.gate_explore=0.6", "model.gate_explore_closed=0.5"])


@pytest.mark.parametrize(("explore", "closed"), [(0.0, 0.0), (0.1, 0.2)])
def test_threshold_draws_open_the_evaluation_edges_up_to_exploration(
    explore: float, closed: float
) -> None:
    # p = 0, 0.475, 0.525, 0.574, 1: open at threshold 0.5 from the third, at 0.56 from the fourth
    logits = torch.tensor([-40.0, -0.1, 0.1, 0.3, 40.0]).repeat(20_000, 1)
    for threshold in (0.5, 0.56):
        _, edges, _ = sample_edges(
            logits,
            mode="bernoulli",
            temperature=0.5,
            training=True,
            threshold=threshold,
            explore=explore,
            explore_closed=closed,
            draw="threshold",
        )
        shut = torch.tensor([1.0, 1.0, threshold > 0.525, 0.0, 0.0])
        expected = shut * explore + (1 - shut) * (1 - closed)
        assert torch.allclose(edges.float().mean(0), expected, atol=0.012)
    with pytest.raises(InvalidInputError, match="draw must be"):
        sample_edges(logits, mode="bernoulli", temperature=0.5, training=True, threshold=0.5,
                     draw="map")  # fmt: skip
    with pytest.raises(InvalidInputError, match="gate_draw"):
        apply_overrides(Config(), ["model.gate_draw=map"])


def _benefit_setup(
    **overrides: object,
) -> tuple[SlotDynamics, torch.Tensor, torch.Tensor, DynamicsOutput]:
    """A Bernoulli-gated model with spread gate biases, random slots and its training pass."""
    model = SlotDynamics(small_model_config(gate="bernoulli", **overrides), latent_dim=D)
    torch.nn.init.normal_(model.head.weight, std=0.3)
    for block in model.blocks:
        torch.nn.init.normal_(block.gate.bias, std=2.0)
    slots = torch.randn(3, 6, K, D)
    env = torch.tensor([0, 2, 5])
    return model, slots, env, model(slots, env)


@pytest.mark.parametrize(
    ("env_parent", "layout"), [(False, "interleaved"), (True, "interleaved"), (True, "time_first")]
)
def test_edge_benefits_are_the_error_differences_of_single_edge_flips(
    env_parent: bool, layout: str
) -> None:
    model, slots, env, out = _benefit_setup(env_parent=env_parent, layout=layout)
    benefit = edge_benefits(model, slots, env, None, out.edges)
    assert benefit.shape == (3, 5, K, K + 1)
    pairs = candidate_edges(K, env_parent)
    assert len(pairs) == K * (K - 1) + (K if env_parent else 0)
    expected = torch.zeros_like(benefit)
    for i, j in pairs:  # written out: one pass with the edge open, one closed, per edge
        errors = []
        for state in (True, False):
            edges = out.edges.clone()
            edges[:, :, :, i, j] = state
            with torch.no_grad():
                pred = model(slots, env, forced_edges=edges).pred
            errors.append(((pred[:, :-1] - slots[:, 1:]) ** 2).mean(dim=(-2, -1)))
        expected[:, :, i, j] = errors[1] - errors[0]
    assert torch.allclose(benefit, expected, atol=1e-6)
    assert benefit.abs().sum() > 0
    undecided = torch.ones(K, K + 1, dtype=torch.bool)
    for i, j in pairs:
        undecided[i, j] = False
    assert (benefit[..., undecided] == 0).all()


def test_resampled_benefits_replace_one_parent_by_a_random_draw_of_it() -> None:
    model, slots, env, out = _benefit_setup(layout="time_first", benefit="resampled")
    torch.manual_seed(7)
    benefit = edge_benefits(model, slots, env, None, out.edges)
    torch.manual_seed(7)
    expected = torch.zeros_like(benefit)
    with torch.no_grad():
        history = model.encode_history(slots)
        pairs = candidate_edges(K, env_parent=True)
        draws = [torch.randperm(3 * 6) if j < K else None for _, j in pairs]  # the same order
        for (i, j), draw in zip(pairs, draws, strict=True):  # written out
            edges = out.edges.clone()
            edges[:, :, :, i, j] = True
            moved = history.clone()
            if j == K:  # the environment: closed instead
                other = edges.clone()
                other[:, :, :, i, j] = False
            else:
                assert draw is not None
                other = edges
                moved[:, :, j] = history[:, :, j].reshape(3 * 6, -1)[draw].view(3, 6, -1)
            errors = []
            for x, e in ((history, edges), (moved, other)):
                pred = model.interact(x, slots, env, forced_edges=e).pred
                errors.append(((pred[:, :-1, i] - slots[:, 1:, i]) ** 2).sum(-1) / (K * D))
            expected[:, :, i, j] = errors[1] - errors[0]
    torch.testing.assert_close(benefit, expected, rtol=1e-5, atol=1e-7)
    assert benefit[..., :K].abs().sum() > 0
    with pytest.raises(InvalidInputError, match="benefit = 'resampled'"):
        apply_overrides(Config(), ["model.gate='bernoulli'", "model.benefit='resampled'"])


@pytest.mark.parametrize("kind", ["ssm", "transformer"])
def test_time_first_messages_reach_only_the_next_step(kind: str) -> None:
    """layout "time_first": an edge of step s changes the prediction of s -> s + 1 alone, so
    the edges of a step are its whole local graph; "interleaved": later steps change too."""
    for layout, local in (("time_first", True), ("interleaved", False)):
        cfg = small_model_config(kind=kind, gate="bernoulli", layout=layout, interaction_layers=2)
        model = SlotDynamics(cfg, latent_dim=D).eval()
        torch.nn.init.normal_(model.head.weight, std=0.3)
        layers = 2 if layout == "time_first" else cfg.num_layers
        assert len(model.blocks) == layers
        assert len(model.history) == (cfg.num_layers if layout == "time_first" else 0)
        slots = torch.randn(2, 7, K, D)
        ids = torch.tensor([0, 1])
        edges = torch.ones(2, 7, layers, K, K + 1, dtype=torch.bool)
        cut = edges.clone()
        cut[:, 3, :, 2, 0] = False  # object 0 -> object 2 at step 3 only
        with torch.no_grad():
            a = model(slots, ids, forced_edges=edges).pred
            b = model(slots, ids, forced_edges=cut).pred
        assert a.shape == (2, 7, K, D)
        torch.testing.assert_close(a[:, :3], b[:, :3], rtol=0, atol=0)
        assert not torch.allclose(a[:, 3, 2], b[:, 3, 2])
        later = torch.allclose(a[:, 4:], b[:, 4:], rtol=0, atol=0)
        assert later == local, layout


def test_forced_edges_replace_the_sampled_ones() -> None:
    model = SlotDynamics(small_model_config(gate="bernoulli"), latent_dim=D)
    torch.nn.init.normal_(model.head.weight, std=0.3)
    slots = torch.randn(2, 5, K, D)
    closed = torch.zeros(2, 5, 2, K, K + 1, dtype=torch.bool)
    out = model(slots, torch.tensor([0, 1]), forced_edges=closed)
    assert not out.edges.any()
    alone = SlotDynamics(small_model_config(gate="bernoulli"), latent_dim=D)
    alone.load_state_dict(model.state_dict())
    for b in range(K):  # every object alone: its prediction ignores the others' slots
        moved = slots.clone()
        moved[:, :, [o for o in range(K) if o != b]] += 1.0
        again = alone(moved, torch.tensor([0, 1]), forced_edges=closed)
        assert torch.allclose(again.pred[:, :, b], out.pred[:, :, b], atol=1e-6)
    with pytest.raises(InvalidInputError, match="forced_edges"):
        model(slots, torch.tensor([0, 1]), forced_edges=closed[:, :, :1])


def test_the_counterfactual_gate_term_is_the_natural_gradient_of_error_plus_paths() -> None:
    """d loss / d z = -(benefit - lam x price) per transition, where price = how many causal
    paths opening the gate adds (the path count is multilinear in the gates, so that is the
    count with the gate open minus the count with it closed): the gradient of the expected
    error + lam x paths of a Bernoulli(sigmoid(z)) edge, divided by p (1 - p)."""
    model = SlotDynamics(small_model_config(gate="bernoulli"), latent_dim=D)
    for block in model.blocks:
        torch.nn.init.normal_(block.gate.bias, std=1.0)
    slots = torch.randn(2, 5, K, D)
    out = model(slots, torch.tensor([0, 1]))
    logits = out.gate_logits.detach().requires_grad_(True)
    out.gate_logits = logits
    benefit = torch.randn(1, 4, K, K + 1)
    lam = 0.3
    loss, metrics = dynamics_loss(out, slots, lam, benefit)
    loss.backward()
    p = torch.sigmoid(logits.detach()[:1, :-1]).double()

    def count(q: torch.Tensor) -> torch.Tensor:
        return path_count_matrix(adjacency_layers(q)).sum(dim=(-2, -1))

    price = torch.zeros_like(p)
    for layer, i, j in itertools.product(range(2), range(K), range(K + 1)):
        hi, lo = p.clone(), p.clone()
        hi[:, :, layer, i, j], lo[:, :, layer, i, j] = 1.0, 0.0
        price[:, :, layer, i, j] = count(hi) - count(lo)
    assert (price[..., torch.eye(K, K + 1, dtype=torch.bool)] == 0).all()
    expected = torch.zeros_like(logits)
    advantage = benefit.unsqueeze(2).double() - lam * price
    expected[:1, :-1] = (-advantage / 4).float()
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    mse = torch.nn.functional.mse_loss(out.pred[:, :-1], slots[:, 1:])
    gain = (p * benefit.unsqueeze(2)).sum(dim=(-3, -2, -1)).mean()
    paths = path_penalty(torch.sigmoid(logits.detach()[:, :-1]))
    assert loss.item() == pytest.approx(mse.item() + lam * paths.item(), rel=1e-5)
    assert metrics["gate_gain"] == pytest.approx(gain.item(), rel=1e-5)
