"""S2-SSM: a local causal world model from slot state space models and gated attention.

After Petri, Asprino and Gangemi, "Learning Local Causal World Models with State Space Models and
Attention" (arXiv 2505.02074). Read top to bottom:

1. **Object encoding.** Each object's masked frame (frame x its ground-truth mask) goes through a
   small convolutional VAE (:class:`ObjectVAE`) to a D-dimensional slot; the decoder reconstructs
   each object's masked image and :func:`compose_frame` sums them into a frame.
2. **Environment slot.** A learned codebook (:class:`EnvironmentSlot`) gives one extra slot per
   sequence from its environment id, optionally plus a projection of the simulator's intervention
   indicators; :func:`fit_env_code` fits a new code for an unseen environment.
3. **Edge gates.** :class:`EdgeGate` scores every (child object, parent slot) pair from the slots
   at that time step; :func:`sample_edges` turns the scores into binary edges.
4. **SlotSSM blocks.** :class:`SlotSSMBlock` = a Mamba layer over time, shared by the slots and
   run on each slot's sequence independently (free evolution), then masked cross-attention from
   the object slots to the object slots + environment slot at each time step (interactions), the
   mask being the sampled edges, then an MLP. ``kind = "transformer"`` swaps the Mamba layer for
   causal self-attention over time (the SPARTAN-style baseline).
5. **Causal graph.** Per layer i the gates give an adjacency A_i (child x parent); the local
   causal graph of a step is Ā = (A_L + I) ... (A_1 + I) (:func:`path_count_matrix`), an edge
   wherever Ā - I is positive.
6. **World model.** :class:`SlotDynamics` predicts every object's next slot; :class:`S2SSM` holds
   the VAE and the dynamics.
7. **Loss.** Next-slot MSE + λ x (path count |Ā| minus the self paths) + a small decay of gate
   logits past their bound, :func:`dynamics_loss`, with λ from the dual schedule
   :class:`LambdaSchedule`. The dense SSM baseline is λ = 0.

Gate choice (documented, as the issue asks): edges are **hard-concrete** gates (Louizos et al.,
2018, the stretched and clipped binary concrete) in training: ``y = (z + logistic noise) /
temperature``, ``g = clip(sigmoid(y) x 1.2 - 0.1, 0, 1)``, an edge is open where ``g > 0``. The
attention renormalises over the open edges only (a closed edge passes exactly nothing, as at
evaluation) and multiplies each open edge's message by g, so the gradient of the prediction loss
reaches a gate through the message its edge carries: exact for the sampled relaxation, and
non-zero for an edge that is the only one open in its row. At evaluation an edge exists where
``sigmoid(z) > edge_threshold``. The sparsity penalty uses the probability that a sample is open,
``sigmoid(z + temperature x log 11)`` (the expected adjacency, an L0 penalty) rather than the
samples: same optimum, far less variance. ``model.gate_logit_bound`` soft-clips z
(``bound x tanh(z / bound)``) so that no gate probability reaches 0 or 1, and
``model.gate_logit_decay`` keeps z from drifting past the bound, where the penalty's gradient
would vanish.

Why not the straight-through Gumbel-sigmoid (``gate = "straight_through"``, kept as an option):
with the gate as an additive log-mask inside the softmax (``gate_gradient = "mask"``) the
attention weights are ``g x exp(score)`` renormalised, and a row whose open edges all shrink
together does not change, so the loss cannot tell an edge is useful, only which of the open
edges is more useful; an edge alone in its row gets no gradient at all and the penalty shuts it
(measured: the learned graph kept the information-free environment edges and lost ball ->
paddle). The straight-through gradient through the message (``gate_gradient = "message"``) is
the first-order effect of scaling the message at g = 1, which overstates what closing costs
(the loss is convex in g) and shut every gate even with λ = 0. ``gate = "relaxed"`` puts the
relaxed gate inside the softmax in the forward pass too.

An object's own slot is not a parent in the attention: it reaches the object's next slot through
the residual stream and the temporal layer, always (the ``+ I`` of the path product, so A_i has a
zero diagonal). The attention reads only the open parents (other objects, the environment), and
an object with no open parent gets only ``message_bias``, a learned constant per object (so that
no edge is kept open as a source of a constant). ``model.attend_self = true`` puts
the own slot back into the attention, ungated: the softmax then mixes it with the parents, a
data-dependent gate through which a model can shut a parent out without closing its edge.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2ssm.config import Config, ModelConfig, SparsityConfig, VAEConfig
from s2ssm.errors import InvalidInputError, InvalidTypeError

__all__ = [
    "NEG_MASK",
    "S2SSM",
    "DynamicsOutput",
    "EdgeGate",
    "EnvironmentSlot",
    "LambdaSchedule",
    "ObjectVAE",
    "SlotDynamics",
    "SlotSSMBlock",
    "adjacency_layers",
    "compose_frame",
    "dynamics_loss",
    "fit_env_code",
    "local_graph_from_edges",
    "object_images",
    "open_probability_shift",
    "path_count_matrix",
    "path_penalty",
    "rollout",
    "sample_edges",
]

# Additive mask value of a closed edge. -inf, not a large finite value: with the object's own slot
# outside the attention a row can have every edge closed, and a finite mask would then fall back
# to the plain softmax over the closed edges (a leak); both attention paths give an all -inf row
# zero weights, a zero output and zero gradients.
NEG_MASK = float("-inf")


# --------------------------------------------------------------------------------------------
# 1. Object encoding
# --------------------------------------------------------------------------------------------


def object_images(
    frames: Tensor, masks: Tensor, num_objects: int, background: Tensor | None = None
) -> Tensor:
    """Masked object images: (..., H, W, 3) uint8 frames and (..., H, W) uint8 bit masks
    (bit k = object k) give (..., K, 3, H, W) float32, object k's pixels and zeros elsewhere.

    Without ``background`` the pixels are the frame's, in [0, 1]. With it ((H, W, 3) uint8, the
    static scene, :func:`s2ssm.sim.background`) they are ``frame - background`` in [-1, 1]: an
    anti-aliased edge pixel then holds ``coverage x (colour - background)`` instead of a
    coverage-dependent share of background grey, so an object's image (and its slot) moves
    continuously with the object instead of jumping with its sub-pixel phase.
    """
    if frames.dtype != torch.uint8 or masks.dtype != torch.uint8:
        raise InvalidTypeError(
            f"frames and masks must be uint8, got {frames.dtype} and {masks.dtype}"
        )
    if frames.shape[:-1] != masks.shape or frames.shape[-1] != 3:
        raise InvalidInputError(
            f"frames must be (..., H, W, 3) and masks (..., H, W) with the same leading shape, "
            f"got {tuple(frames.shape)} and {tuple(masks.shape)}"
        )
    image = frames.movedim(-1, -3).float().div(255.0)  # (..., 3, H, W)
    if background is not None:
        if background.shape != frames.shape[-3:]:
            raise InvalidInputError(
                f"background must be {tuple(frames.shape[-3:])} like one frame, got "
                f"{tuple(background.shape)}"
            )
        image = image - background.movedim(-1, -3).float().div(255.0)
    bits = torch.arange(num_objects, device=masks.device, dtype=torch.uint8)
    obj = (masks.unsqueeze(-3) >> bits.view(-1, 1, 1)) & 1  # (..., K, H, W)
    return image.unsqueeze(-4) * obj.unsqueeze(-3).float()


def compose_frame(object_recons: Tensor, background: Tensor | None = None) -> Tensor:
    """A frame from per-object images: (..., K, 3, H, W) -> (..., 3, H, W), summed onto the
    ``background`` ((H, W, 3) uint8, if the images were made with one) and clipped to [0, 1]."""
    frame = object_recons.sum(dim=-4)
    if background is not None:
        frame = frame + background.movedim(-1, -3).to(frame.dtype).div(255.0)
    return frame.clamp(0.0, 1.0)


def _coords(height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(2, H, W) pixel-centre coordinates in [-1, 1] (CoordConv channels)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


_N_MOMENTS = 15
# Pseudo-mass added to every channel's mass before normalising (intensity units: one full
# pixel). A hard "is this channel present" switch makes the centroid jump from 0 to wherever a
# faint sliver appears in a channel (an anti-aliased edge, the ball touching a paddle); with
# the pseudo-mass the centroid and spread fade in continuously with the mass.
_MOMENT_PSEUDO_MASS = 1.0


def image_moments(images: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, 15): per colour channel the mass (mean absolute intensity x 10),
    the centroid (y, x) and spread (std y, std x) weighted by the absolute intensity, in [-1, 1]
    coordinates, each shrunk towards 0 by a pseudo-mass of one pixel so that all 15 are
    continuous in the image (signed, background-subtracted images work as well)."""
    h, w = images.shape[-2:]
    grid = _coords(h, w, images.device, images.dtype).flatten(1)  # (2, H*W)
    flat = images.flatten(2).abs()  # (N, 3, H*W)
    mass = flat.sum(-1, keepdim=True)  # (N, 3, 1)
    weights = flat / (mass + _MOMENT_PSEUDO_MASS)
    mean = torch.einsum("ncp,kp->nck", weights, grid)  # (N, 3, 2)
    centred = grid[None, None] - mean[..., None]  # (N, 3, 2, H*W)
    var = torch.einsum("ncp,nckp->nck", weights, centred.pow(2))
    std = (var + 1e-6).sqrt() - 1e-3  # smooth at 0, 0 for an empty channel
    feats = torch.cat([mass * (10.0 / (h * w)), mean, std], dim=-1)
    return feats.flatten(1)


class ObjectVAE(nn.Module):
    """VAE of one object's masked image (3 x H x W, see :func:`object_images`) to a D-dimensional
    slot.

    Encoder: CoordConv (RGB + 2 coordinate channels), one stride-2 4x4 conv per entry of
    ``channels``, and the image's intensity moments, then a linear layer to mean and
    log-variance. Decoder: the latent predicts a coloured Gaussian blob (colour, centre, size)
    which is rendered, then a spatial broadcast decoder (the latent tiled over the image with
    the coordinate channels and the blob, 3x3 convs) adds a correction that shapes it. Plain
    pixel decoders sit for thousands of steps at the all-black image on these few-pixel
    objects; the blob gives the gradient a place to start.
    """

    def __init__(self, cfg: VAEConfig, resolution: int) -> None:
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.beta = cfg.beta
        self.resolution = resolution
        chans = (5, *cfg.channels)
        side = resolution // 2 ** len(cfg.channels)
        enc: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(chans):
            enc += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*enc)
        # conv features + the image's intensity moments (mass, centroid, spread per colour
        # channel): a fresh conv encoder barely sees a few-pixel object, the moments make its
        # position and size readable from the first step
        n_conv = chans[-1] * side * side
        self.to_stats = nn.Linear(n_conv + _N_MOMENTS, 2 * cfg.latent_dim)
        with torch.no_grad():  # the posterior mean starts as the moments (+ small conv part)
            self.to_stats.weight[:, :n_conv].mul_(0.1)
            self.to_stats.weight[:, n_conv:].zero_()
            m = min(_N_MOMENTS, cfg.latent_dim)
            self.to_stats.weight[:m, n_conv : n_conv + m] = torch.eye(m)
        # start with a small posterior variance: unit noise on a fresh encoder's tiny means
        # teaches the decoder to ignore the latent (posterior collapse) before it can learn
        nn.init.constant_(self.to_stats.bias[cfg.latent_dim :], -6.0)
        hidden = cfg.decoder_channels
        self.blob = nn.Linear(cfg.latent_dim, 7)  # colour logits (3), centre (2), log-std (2)
        nn.init.normal_(self.blob.weight, std=0.01)
        nn.init.zeros_(self.blob.bias)
        nn.init.constant_(self.blob.bias[5:], math.log(0.1))
        last = nn.Conv2d(hidden, 3, 1)
        nn.init.zeros_(last.weight)  # the decoder starts as the blob alone
        nn.init.zeros_(last.bias)  # type: ignore[arg-type]
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg.latent_dim + 5, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.SiLU(),
            last,
        )

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(..., 3, H, W) -> posterior mean and log-variance, each (..., D)."""
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])
        h, w = flat.shape[-2:]
        grid = _coords(h, w, flat.device, flat.dtype).expand(flat.shape[0], -1, -1, -1)
        feats = self.encoder(torch.cat([flat, grid], dim=1)).flatten(1)
        stats = self.to_stats(torch.cat([feats, image_moments(flat)], dim=1))
        mu, logvar = stats.chunk(2, dim=-1)
        return mu.reshape(*lead, -1), logvar.clamp(-10.0, 10.0).reshape(*lead, -1)

    def decode(self, z: Tensor) -> Tensor:
        """(..., D) -> reconstructed masked images (..., 3, H, W), unclipped."""
        lead = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])
        r = self.resolution
        grid = _coords(r, r, flat.device, flat.dtype).expand(flat.shape[0], -1, -1, -1)
        tiled = flat[:, :, None, None].expand(-1, -1, r, r)
        p = self.blob(flat)
        colour = torch.tanh(p[:, :3])  # signed: background-subtracted images
        centre = torch.tanh(p[:, 3:5])
        std = torch.exp(p[:, 5:7].clamp(-5.0, 1.0))
        offset = (grid - centre[:, :, None, None]) / std[:, :, None, None]
        blob = colour[:, :, None, None] * torch.exp(-0.5 * offset.pow(2).sum(1, keepdim=True))
        # a linear correction (no output sigmoid: it saturates at 0 on black images and stalls)
        out = blob + self.decoder(torch.cat([tiled, grid, blob], dim=1))
        return out.reshape(*lead, *out.shape[-3:])

    def loss(self, images: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Negative ELBO per image: summed squared pixel error + beta x KL (reparameterised)."""
        mu, logvar = self.encode(images)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = self.decode(z)
        rec = (recon - images).pow(2).flatten(-3).sum(-1).mean()
        kl = (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(-1).mean()
        total = rec + self.beta * kl
        return total, {"vae_recon": float(rec.detach()), "vae_kl": float(kl.detach())}


# --------------------------------------------------------------------------------------------
# 2. Environment slot
# --------------------------------------------------------------------------------------------


class EnvironmentSlot(nn.Module):
    """The extra slot of a sequence: a codebook row (its environment) + intervention tokens.

    Intervention indicators enter as exogenous inputs: the token at position t carries the
    indicators of the transition t -> t + 1 (``interventions[:, t + 1]``), the one the position
    predicts; the last position, which predicts nothing, gets none.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.codebook = nn.Embedding(cfg.num_env_codes, cfg.d_model)
        nn.init.normal_(self.codebook.weight, std=0.5)
        self.interventions = (
            nn.Linear(cfg.num_interventions, cfg.d_model, bias=False)
            if cfg.use_interventions
            else None
        )
        self.num_interventions = cfg.num_interventions

    def forward(
        self,
        env_ids: Tensor | None,
        batch: int,
        length: int,
        interventions: Tensor | None = None,
        env_code: Tensor | None = None,
    ) -> Tensor:
        """(B, T, d_model) environment tokens. ``env_code`` (B or 1, d_model) overrides the
        codebook (used to fit a code for a new environment)."""
        if env_code is not None:
            code = env_code.expand(batch, -1)
        else:
            if env_ids is None:
                raise InvalidInputError("env_ids is required when env_code is not given")
            if env_ids.shape != (batch,):
                raise InvalidInputError(f"env_ids must be ({batch},), got {tuple(env_ids.shape)}")
            if int(env_ids.min()) < 0 or int(env_ids.max()) >= self.codebook.num_embeddings:
                raise InvalidInputError(
                    f"env_ids must be in [0, {self.codebook.num_embeddings}), got "
                    f"{env_ids.min().item()}..{env_ids.max().item()}"
                )
            code = self.codebook(env_ids)
        tokens = code.unsqueeze(1).expand(batch, length, -1)
        if self.interventions is not None:
            if interventions is None:
                raise InvalidInputError("model.use_interventions is set: pass interventions")
            if interventions.shape != (batch, length, self.num_interventions):
                raise InvalidInputError(
                    f"interventions must be ({batch}, {length}, {self.num_interventions}), got "
                    f"{tuple(interventions.shape)}"
                )
            nxt = torch.zeros_like(interventions, dtype=tokens.dtype)
            nxt[:, :-1] = interventions[:, 1:].to(tokens.dtype)
            tokens = tokens + self.interventions(nxt)
        return tokens

    @torch.no_grad()
    def extend_codebook(self, code: Tensor) -> int:
        """Append ``code`` (d_model,) as a new codebook row; returns its id."""
        old = self.codebook.weight
        if code.shape != (old.shape[1],):
            raise InvalidInputError(f"code must be ({old.shape[1]},), got {tuple(code.shape)}")
        new = nn.Embedding(old.shape[0] + 1, old.shape[1], device=old.device, dtype=old.dtype)
        new.weight.copy_(torch.cat([old, code.to(old).unsqueeze(0)]))
        self.codebook = new
        return old.shape[0]


# --------------------------------------------------------------------------------------------
# 3. Edge gates
# --------------------------------------------------------------------------------------------


class EdgeGate(nn.Module):
    """Gate logits z[i, j] = <Wq x_i, Wk y_j> / sqrt(d) + b[i, j] for child object i and parent
    slot j (objects, then the environment): state dependent, so graphs are local.

    ``bound`` > 0 maps the logits through ``bound x tanh(z / bound)``, which keeps every gate
    probability inside [sigmoid(-bound), sigmoid(bound)]: no edge is ever certain, so a closed
    edge is still sampled open now and then (and can come back) and an open one still closed
    now and then (so the loss keeps measuring what it is worth). The prediction keeps pushing a
    useful gate's logit up, past the point where the tanh passes any gradient, and the penalty
    then cannot reach it; ``model.gate_logit_decay`` adds ``decay x max(|z| - bound, 0)^2`` to
    the loss (the overshoot is returned beside the logits), which holds z near the bound.
    """

    def __init__(
        self,
        d_model: int,
        num_children: int,
        num_parents: int,
        init_bias: float,
        bound: float = 0.0,
    ):
        super().__init__()
        self.bound = bound
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        nn.init.normal_(self.query.weight, std=0.02)
        nn.init.normal_(self.key.weight, std=0.02)
        self.bias = nn.Parameter(torch.full((num_children, num_parents), float(init_bias)))
        self.scale = 1.0 / math.sqrt(d_model)

    def forward(self, children: Tensor, parents: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B*, K, d) and (B*, K + 1, d) -> logits (B*, K, K + 1) in float32, and how far the
        logits before the bound overshoot it, ``max(|z| - bound, 0)`` (None without a bound)."""
        q = self.query(children).float()
        k = self.key(parents).float()
        z = q @ k.transpose(-1, -2) * self.scale + self.bias
        if self.bound <= 0:
            return z, None
        return self.bound * torch.tanh(z / self.bound), (z.abs() - self.bound).clamp(min=0.0)


# Hard concrete (Louizos et al., 2018): the binary concrete sample stretched to (GAMMA, ZETA)
# and clipped to [0, 1], so that a share of the samples is exactly 0 (closed) or 1.
HARD_CONCRETE_GAMMA = -0.1
HARD_CONCRETE_ZETA = 1.1


def open_probability_shift(mode: str, temperature: float) -> float:
    """s such that ``sigmoid(z + s)`` is the probability that a training sample of the gate is
    open (non-zero): 0 for the Gumbel-sigmoid, ``-temperature x log(-GAMMA / ZETA)`` for the
    hard concrete."""
    if mode == "hard_concrete":
        return -temperature * math.log(-HARD_CONCRETE_GAMMA / HARD_CONCRETE_ZETA)
    return 0.0


def sample_edges(
    logits: Tensor,
    *,
    mode: str,
    temperature: float,
    training: bool,
    threshold: float,
    gradient: str = "mask",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Edges from gate logits: returns (additive log-mask, binary edges, message gate), the first
    two shaped as logits, the gate None unless the attention must scale each edge's message
    by it.

    Training, with logistic noise ``n = log u - log(1 - u)``, ``u ~ U(0, 1)``:

    * ``mode="straight_through"``: ``y = (z + n) / temperature``; edges = ``y > 0``; mask =
      ``0`` on edges and ``NEG_MASK`` elsewhere in the forward pass. Backward:
      ``gradient="mask"`` gives the mask the gradient of ``log sigmoid(y)``;
      ``gradient="message"`` detaches the mask and returns the gate
      ``edges + sigmoid(y) - stop_gradient(sigmoid(y))`` (value 0/1, gradient of
      ``sigmoid(y)``), which scales each edge's message in the backward pass only.
    * ``mode="relaxed"``: mask = ``log sigmoid(y)`` (fractional edges inside the softmax).
    * ``mode="hard_concrete"``: gate ``g = clip(sigmoid(y) x (ZETA - GAMMA) + GAMMA, 0, 1)``,
      edges = ``g > 0``, mask 0 / ``NEG_MASK`` (no gradient): the attention renormalises over
      the open edges and multiplies each open edge's message by g, the gradient flowing
      through g (exact for the sampled relaxation).

    Evaluation (``training=False``): edges = ``sigmoid(z) > threshold``, deterministic, mask as
    in the straight-through forward pass, no gate.
    """
    if mode not in ("straight_through", "relaxed", "hard_concrete"):
        raise InvalidInputError(
            f"mode must be 'straight_through', 'relaxed' or 'hard_concrete', got {mode!r}"
        )
    if gradient not in ("mask", "message"):
        raise InvalidInputError(f"gradient must be 'mask' or 'message', got {gradient!r}")
    if not training:
        edges = torch.sigmoid(logits) > threshold
        mask = torch.where(edges, 0.0, NEG_MASK).to(logits.dtype)
        return mask, edges, None
    u = torch.rand_like(logits).clamp(1e-6, 1.0 - 1e-6)
    y = (logits + torch.log(u) - torch.log1p(-u)) / temperature
    if mode == "hard_concrete":
        stretched = torch.sigmoid(y) * (HARD_CONCRETE_ZETA - HARD_CONCRETE_GAMMA)
        gate = (stretched + HARD_CONCRETE_GAMMA).clamp(0.0, 1.0)
        edges = gate > 0
        return torch.where(edges, 0.0, NEG_MASK).to(logits.dtype), edges, gate
    edges = y > 0
    if mode == "relaxed":
        return F.logsigmoid(y), edges, None
    hard = torch.where(edges, 0.0, NEG_MASK).to(logits.dtype)
    if gradient == "message":
        soft = torch.sigmoid(y)
        return hard, edges, edges.to(soft.dtype) + (soft - soft.detach())
    soft = F.logsigmoid(y)
    return hard + (soft - soft.detach()), edges, None


# --------------------------------------------------------------------------------------------
# 4. SlotSSM blocks
# --------------------------------------------------------------------------------------------


class CausalTimeAttention(nn.Module):
    """Causal self-attention over time with learned positions (the Transformer baseline's
    replacement for the Mamba layer): (batch, length, d) -> same shape."""

    def __init__(self, d_model: int, num_heads: int, max_len: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.position = nn.Parameter(torch.zeros(max_len, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        if t > self.position.shape[0]:
            raise InvalidInputError(
                f"sequence length {t} exceeds model.max_len {self.position.shape[0]}"
            )
        q, k, v = self.qkv(x + self.position[:t]).chunk(3, dim=-1)
        q, k, v = (
            z.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2) for z in (q, k, v)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


def _kernel_modules():  # type: ignore[no-untyped-def]
    from s2ssm import nn as s2nn

    return s2nn


class SlotSSMBlock(nn.Module):
    """Temporal layer per slot, then gated cross-attention across slots, then an MLP (pre-norm,
    residual). Input (B, T, K, d) object slots and (B, T, d) environment tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        s2nn = _kernel_modules()
        d, k = cfg.d_model, cfg.num_objects
        backend = cfg.backend or None
        self.norm_time = nn.LayerNorm(d)
        self.temporal: nn.Module
        if cfg.kind == "ssm":
            self.temporal = s2nn.Mamba(
                d, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand, backend=backend
            )
        else:
            self.temporal = CausalTimeAttention(d, cfg.num_heads, cfg.max_len)
        self.norm_query = nn.LayerNorm(d)
        self.norm_key = nn.LayerNorm(d)
        self.gate = EdgeGate(d, k, k + 1, cfg.gate_init_bias, cfg.gate_logit_bound)
        self.attention = s2nn.SlotAttention(d, num_heads=cfg.num_heads, backend=backend)
        # A constant per child object added to the attention output: the "no parent" message.
        # Without it an always-open edge from a constant slot (the environment token when one
        # environment is trained) is worth keeping as a bias source, and the penalty must
        # fight edges that carry no information.
        self.message_bias = nn.Parameter(torch.zeros(k, d))
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d)
        )
        self.gate_mode = cfg.gate
        self.gate_gradient = cfg.gate_gradient
        self.temperature = cfg.gate_temperature
        self.threshold = cfg.edge_threshold
        self.register_buffer("self_edges", torch.eye(k, k + 1, dtype=torch.bool), persistent=False)
        self.self_mask = 0.0 if cfg.attend_self else NEG_MASK
        self.env_parent = cfg.env_parent
        env_column = torch.zeros(k, k + 1, dtype=torch.bool)
        env_column[:, k] = True
        self.register_buffer("env_column", env_column, persistent=False)

    def forward(self, x: Tensor, env: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns (new slots, gate logits (B, T, K, K + 1), edges (B, T, K, K + 1) bool, logit
        drift); the diagonal (self) entries of logits and edges are meaningless and zeroed
        later. The drift is the mean over positions of the summed squared overshoot of the
        unbounded logits past ``gate_logit_bound`` (0 without a bound)."""
        b, t, k, d = x.shape
        # Free evolution: every slot's sequence through the same temporal layer, independently.
        seq = x.transpose(1, 2).reshape(b * k, t, d)
        seq = seq + self.temporal(self.norm_time(seq))
        x = seq.view(b, k, t, d).transpose(1, 2)
        # Interactions: at each step, object slots attend to object slots + the environment slot.
        children = self.norm_query(x).reshape(b * t, k, d)
        parents = self.norm_key(torch.cat([x, env.unsqueeze(2)], dim=2)).reshape(b * t, k + 1, d)
        logits, overshoot = self.gate(children, parents)
        if not self.env_parent:  # the environment slot is no parent: its edges stay closed
            # a finite logit: sigmoid gives exactly 0, and log sigmoid stays finite (no NaN)
            logits = logits.masked_fill(self.env_column, -1e4)
        mask, edges, gate = sample_edges(
            logits,
            mode=self.gate_mode,
            temperature=self.temperature,
            training=self.training,
            threshold=self.threshold,
            gradient=self.gate_gradient,
        )
        self_edges: Tensor = self.self_edges  # type: ignore[assignment]
        mask = mask.masked_fill(self_edges, self.self_mask)  # own slot: the residual path
        if gate is not None:
            # hard concrete: each open edge's message scaled by g (forward and backward);
            # straight-through "message": g is 1 in value and passes its gradient only
            gate = gate.masked_fill(self_edges, 1.0).to(children.dtype)
        out, _ = self.attention(children, parents, mask=mask.to(children.dtype), gate=gate)
        x = x + out.reshape(b, t, k, d) + self.message_bias
        x = x + self.mlp(self.norm_mlp(x))
        drift = x.new_zeros((), dtype=torch.float32)
        if overshoot is not None:
            drift = overshoot.pow(2).sum(dim=(-2, -1)).mean()
        return x, logits.view(b, t, k, k + 1), edges.view(b, t, k, k + 1), drift


# --------------------------------------------------------------------------------------------
# 5. Causal graph
# --------------------------------------------------------------------------------------------


def adjacency_layers(per_layer: Tensor) -> Tensor:
    """Square child x parent adjacencies from per-layer gates.

    (..., L, K, K + 1) gate values (probabilities or 0/1 edges) -> (..., L, K + 1, K + 1): the
    object-object diagonal is zeroed (self edges are the ``+ I``) and a zero row is added for the
    environment slot, which no attention updates.
    """
    *lead, layers, k, n = per_layer.shape
    if n != k + 1:
        raise InvalidInputError(f"gates must be (..., L, K, K + 1), got {tuple(per_layer.shape)}")
    diag = torch.eye(k, n, dtype=torch.bool, device=per_layer.device)
    a = per_layer.masked_fill(diag, 0)
    return torch.cat([a, a.new_zeros(*lead, layers, 1, n)], dim=-2)


def path_count_matrix(layers: Tensor) -> Tensor:
    """Ā = (A_L + I) @ ... @ (A_1 + I) for child x parent layers (..., L, N, N): Ā[i, j] counts
    the paths from parent j (first layer's input) to child i (last layer's output), the trivial
    path included. Differentiable; the layout of
    ``s2ssm.graph.path_counts(layout="child_parent")``.
    """
    if layers.dim() < 3 or layers.shape[-1] != layers.shape[-2]:
        raise InvalidInputError(f"layers must be (..., L, N, N), got {tuple(layers.shape)}")
    n = layers.shape[-1]
    eye = torch.eye(n, dtype=layers.dtype, device=layers.device)
    total = eye.expand(*layers.shape[:-3], n, n)
    for i in range(layers.shape[-3]):
        total = (layers[..., i, :, :] + eye) @ total
    return total


def path_penalty(gate_probs: Tensor) -> Tensor:
    """Mean over the leading dims of |Ā| minus the self paths, i.e. sum(Ā - I), from gate
    probabilities (..., L, K, K + 1): the expected number of non-trivial causal paths."""
    probs = gate_probs if gate_probs.dtype == torch.float64 else gate_probs.float()
    counts = path_count_matrix(adjacency_layers(probs))
    n = counts.shape[-1]
    return (counts.sum(dim=(-2, -1)) - n).mean()


def local_graph_from_edges(edges: Tensor) -> Tensor:
    """Binary local graphs (..., K, K + 1) (child object at t + 1 x parent slot at t, last column
    the environment) from per-layer binary edges (..., L, K, K + 1): (Ā - I) > 0."""
    counts = path_count_matrix(adjacency_layers(edges.to(torch.float64)))
    k = edges.shape[-2]
    eye = torch.eye(counts.shape[-1], dtype=counts.dtype, device=counts.device)
    return ((counts - eye) > 0)[..., :k, :]


# --------------------------------------------------------------------------------------------
# 6. World model
# --------------------------------------------------------------------------------------------


@dataclass
class DynamicsOutput:
    """What one pass of :class:`SlotDynamics` returns."""

    pred: Tensor  # (B, T, K, D): predicted slot at t + 1 from everything up to t
    gate_logits: Tensor  # (B, T, L, K, K + 1), float32
    edges: Tensor  # (B, T, L, K, K + 1) bool: the edges this pass used (sampled or thresholded)
    open_shift: float = 0.0  # see open_probability_shift
    # gate_logit_decay x the squared overshoot of the gate logits past their bound: keeps the
    # logits where the bound's tanh still passes a gradient (a loss term, see dynamics_loss)
    logit_decay: Tensor | float = 0.0

    @property
    def gate_probs(self) -> Tensor:
        """(B, T, L, K, K + 1): the probability that each edge is open in a training sample."""
        return torch.sigmoid(self.gate_logits + self.open_shift)

    def local_graphs(self) -> Tensor:
        """(B, T, K, K + 1) bool: the learned local graph of each transition t -> t + 1."""
        return local_graph_from_edges(self.edges)


class SlotDynamics(nn.Module):
    """The S2-SSM dynamics (or its Transformer twin): slots (B, T, K, D) -> next slots."""

    def __init__(self, cfg: ModelConfig, latent_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_dim = latent_dim
        self.embed = nn.Linear(latent_dim, cfg.d_model)
        self.object_id = nn.Parameter(torch.randn(cfg.num_objects, cfg.d_model) * 0.02)
        self.env_slot = EnvironmentSlot(cfg)
        self.blocks = nn.ModuleList(SlotSSMBlock(cfg) for _ in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, latent_dim)
        nn.init.zeros_(self.head.weight)  # start from "nothing moves": pred = current slot
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        slots: Tensor,
        env_ids: Tensor | None,
        interventions: Tensor | None = None,
        env_code: Tensor | None = None,
    ) -> DynamicsOutput:
        if slots.dim() != 4 or slots.shape[2:] != (self.cfg.num_objects, self.latent_dim):
            raise InvalidInputError(
                f"slots must be (B, T, {self.cfg.num_objects}, {self.latent_dim}), got "
                f"{tuple(slots.shape)}"
            )
        b, t = slots.shape[:2]
        x = self.embed(slots) + self.object_id
        env = self.env_slot(env_ids, b, t, interventions, env_code).to(x.dtype)
        logits, edges = [], []
        drift = slots.new_zeros((), dtype=torch.float32)
        for block in self.blocks:
            x, z, e, block_drift = block(x, env)
            logits.append(z)
            edges.append(e)
            drift = drift + block_drift
        pred = slots + self.head(self.norm_out(x)).to(slots.dtype)
        shift = open_probability_shift(self.cfg.gate, self.cfg.gate_temperature)
        return DynamicsOutput(
            pred,
            torch.stack(logits, dim=2),
            torch.stack(edges, dim=2),
            open_shift=shift,
            logit_decay=self.cfg.gate_logit_decay * drift,
        )


class S2SSM(nn.Module):
    """The whole world model: the object VAE and the slot dynamics."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.vae = ObjectVAE(config.vae, config.data.resolution)
        self.dynamics = SlotDynamics(config.model, config.vae.latent_dim)
        self.background: Tensor | None
        if config.vae.subtract_background:
            from s2ssm import sim

            scene = torch.from_numpy(sim.background(config.data.resolution))
            self.register_buffer("background", scene, persistent=False)
        else:
            self.background = None

    def object_images(self, frames: Tensor, masks: Tensor) -> Tensor:
        """The VAE's input: (..., H, W, 3) frames and (..., H, W) masks -> (..., K, 3, H, W)."""
        return object_images(frames, masks, self.config.model.num_objects, self.background)

    def encode_slots(self, frames: Tensor, masks: Tensor) -> Tensor:
        """Slots (posterior means) from uint8 frames (B, T, H, W, 3) and masks (B, T, H, W)."""
        return self.vae.encode(self.object_images(frames, masks))[0]

    def decode_frames(self, slots: Tensor) -> Tensor:
        """(..., K, D) slots -> composed frames (..., 3, H, W) in [0, 1]."""
        return compose_frame(self.vae.decode(slots), self.background)


@torch.no_grad()
def rollout(
    dynamics: SlotDynamics,
    context: Tensor,
    horizon: int,
    env_ids: Tensor | None,
    interventions: Tensor | None = None,
    env_code: Tensor | None = None,
) -> Tensor:
    """Autoregressive prediction: (B, C, K, D) observed slots -> (B, horizon, K, D) predicted
    slots, each prediction fed back as the next input. ``interventions`` (B, C + horizon, I) if the
    model uses them. Runs the whole prefix at each step (fine for the short horizons here)."""
    seq = context
    preds = []
    for _ in range(horizon):
        length = seq.shape[1]
        inter = None if interventions is None else interventions[:, : length + 1]
        if inter is not None and inter.shape[1] == length + 1:
            # the last position predicts length -> length + 1; pass its indicators along
            out = dynamics(torch.cat([seq, seq[:, -1:]], dim=1), env_ids, inter, env_code)
            nxt = out.pred[:, length - 1]
        else:
            nxt = dynamics(seq, env_ids, inter, env_code).pred[:, -1]
        preds.append(nxt)
        seq = torch.cat([seq, nxt.unsqueeze(1)], dim=1)
    return torch.stack(preds, dim=1)


def fit_env_code(
    dynamics: SlotDynamics,
    slots: Tensor,
    interventions: Tensor | None = None,
    *,
    steps: int = 100,
    lr: float = 1e-2,
) -> Tensor:
    """Fit an environment code for sequences of an unseen environment: start from the codebook
    mean and minimise the next-slot MSE over the code alone (everything else frozen, gates
    deterministic). Returns the code (d_model,); ``dynamics.env_slot.extend_codebook`` adds it."""
    was_training = dynamics.training
    dynamics.eval()
    code = dynamics.env_slot.codebook.weight.detach().mean(0).clone().requires_grad_(True)
    opt = torch.optim.Adam([code], lr=lr)
    for _ in range(steps):
        out = dynamics(slots, None, interventions, env_code=code.unsqueeze(0))
        loss = F.mse_loss(out.pred[:, :-1], slots[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dynamics.zero_grad(set_to_none=True)
    dynamics.train(was_training)
    return code.detach()


# --------------------------------------------------------------------------------------------
# 7. Loss and the λ schedule
# --------------------------------------------------------------------------------------------


def dynamics_loss(
    out: DynamicsOutput, slots: Tensor, lam: float
) -> tuple[Tensor, dict[str, float]]:
    """Next-slot MSE over the transitions 0..T-2 (targets detached) + lam x path penalty of the
    same positions + the gate logits' decay past their bound (``out.logit_decay``). Returns
    (loss, float metrics: mse, paths, loss, edge_density = mean open gates, gate_decay)."""
    mse = F.mse_loss(out.pred[:, :-1].float(), slots[:, 1:].detach().float())
    paths = path_penalty(out.gate_probs[:, :-1])
    loss = (mse + lam * paths if lam > 0 else mse) + out.logit_decay
    k = out.edges.shape[-2]
    off_diag = ~torch.eye(k, k + 1, dtype=torch.bool, device=out.edges.device)
    density = out.edges[..., off_diag].float().mean()
    return loss, {
        "mse": float(mse.detach()),
        "paths": float(paths.detach()),
        "loss": float(loss.detach()),
        "edge_density": float(density),
        "gate_decay": float(torch.as_tensor(out.logit_decay).detach()),
    }


class LambdaSchedule:
    """The dual step on λ, the weight of the path penalty.

    With e_k the prediction MSE of dynamics step k (k = 0, 1, ...), the smoothed error is
    ``ē_k = e_0`` if k = 0 else ``ema x ē_{k-1} + (1 - ema) x e_k``, the target is
    ``τ = target``, or ``τ = target_ratio x ē_{W-1}`` (W = warmup_steps) when target_ratio > 0,
    or, when also ``target_window = n > 0``, ``τ = target_ratio x mean(e_{W-m}, ..., e_{W-1})``
    with m = min(n, W) (batch errors of several environments scatter by +-20 %, so one smoothed
    value at step W-1 sets a noisy τ), and the λ used by step k is

        λ_k = 0                                     for k < W    (learn to predict first)
        λ_k = lambda_init                           for k = W
        λ_{k+1} = min(λ_k x growth, lambda_max)     if ē_k < τ   (prediction is good enough:
                                                                  buy more sparsity)
        λ_{k+1} = max(λ_k x shrink, lambda_min)     otherwise    (too sparse: back off)

    λ = 0 throughout when ``enabled`` is false (the dense baseline). This is a multiplicative
    (log-space) ascent on the Lagrange multiplier of the constraint "error <= τ". The warm-up
    matters with Adam: its updates ignore the gradient scale, so any λ > 0 on a model that
    cannot predict yet shuts every gate. A relative target (``target_ratio``) reads "do not
    predict worse than the dense model did at the end of the warm-up", which carries across
    slot spaces and data sets where an absolute MSE does not. All constants are fields of
    :class:`SparsityConfig`.
    """

    def __init__(self, cfg: SparsityConfig) -> None:
        self.cfg = cfg
        self.smoothed: float | None = None
        self.steps = 0
        self.target = cfg.target
        self.window_sum = 0.0  # sum of the errors of the warm-up's last target_window steps
        self.value = self._start()

    def _start(self) -> float:
        cfg = self.cfg
        if not cfg.enabled or self.steps < cfg.warmup_steps:
            return 0.0
        return cfg.lambda_init

    def update(self, error: float) -> float:
        """Feed the MSE of the step just taken; returns the λ for the next step."""
        cfg = self.cfg
        self.smoothed = (
            error if self.smoothed is None else cfg.ema * self.smoothed + (1 - cfg.ema) * error
        )
        if cfg.warmup_steps - cfg.target_window <= self.steps < cfg.warmup_steps:
            self.window_sum += error
        if cfg.enabled and self.steps >= cfg.warmup_steps:
            if self.smoothed < self.target:
                self.value = min(self.value * cfg.growth, cfg.lambda_max)
            else:
                self.value = max(self.value * cfg.shrink, cfg.lambda_min)
        self.steps += 1
        if self.steps == cfg.warmup_steps:
            self.value = self._start()
            if cfg.target_ratio > 0 and cfg.target_window > 0:
                count = min(cfg.target_window, cfg.warmup_steps)
                self.target = cfg.target_ratio * self.window_sum / count
            elif cfg.target_ratio > 0:
                self.target = cfg.target_ratio * self.smoothed
        return self.value

    def state_dict(self) -> dict[str, float | int | None]:
        return {
            "value": self.value,
            "smoothed": self.smoothed,
            "steps": self.steps,
            "target": self.target,
            "window_sum": self.window_sum,
        }

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        self.value = float(state["value"])  # type: ignore[arg-type]
        smoothed = state["smoothed"]
        self.smoothed = None if smoothed is None else float(smoothed)
        self.steps = int(state["steps"])  # type: ignore[arg-type]
        target = state.get("target")  # absent in checkpoints written before target_ratio
        self.target = self.cfg.target if target is None else float(target)
        self.window_sum = float(state.get("window_sum") or 0.0)  # type: ignore[arg-type]
