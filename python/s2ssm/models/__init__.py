"""S2-SSM: a local causal world model from slot state space models and gated attention.

After Petri, Asprino and Gangemi, "Learning Local Causal World Models with State Space Models and
Attention" (arXiv 2505.02074). One file per part, read in this order:

1. :mod:`~s2ssm.models.vae` -- **object encoding.** Each object's masked frame (frame x its
   ground-truth mask) goes through a small convolutional VAE (:class:`ObjectVAE`) to a
   D-dimensional slot; the decoder reconstructs each object's masked image and
   :func:`compose_frame` sums them into a frame.
2. :mod:`~s2ssm.models.environment` -- **environment slot.** A learned codebook
   (:class:`EnvironmentSlot`) gives one extra slot per sequence from its environment id,
   optionally plus a projection of the simulator's intervention indicators; :func:`fit_env_code`
   fits a new code for an unseen environment.
3. :mod:`~s2ssm.models.gates` -- **edge gates.** :class:`EdgeGate` scores every (child object,
   parent slot) pair from the slots at that time step; :func:`sample_edges` turns the scores
   into binary edges (hard-concrete in training; why, in that module's docstring).
4. :mod:`~s2ssm.models.blocks` -- **SlotSSM blocks.** :class:`SlotSSMBlock` = a Mamba layer over
   time, shared by the slots and run on each slot's sequence independently (free evolution),
   then masked cross-attention from the object slots to the object slots + environment slot at
   each time step (interactions), the mask being the sampled edges, then an MLP. ``kind =
   "transformer"`` swaps the Mamba layer for causal self-attention over time (the SPARTAN-style
   baseline).
5. :mod:`~s2ssm.models.causal_graph` -- **causal graph.** Per layer i the gates give an
   adjacency A_i (child x parent); the local causal graph of a step is Ā = (A_L + I) ... (A_1 +
   I) (:func:`path_count_matrix`), an edge wherever Ā - I is positive.
6. :mod:`~s2ssm.models.world_model` -- **world model.** :class:`SlotDynamics` predicts every
   object's next slot; :class:`S2SSM` holds the VAE and the dynamics.
7. :mod:`~s2ssm.models.sparsity` -- **loss.** Next-slot MSE + λ x (path count |Ā| minus the self
   paths) + a small decay of gate logits past their bound, :func:`dynamics_loss`, with λ from
   the dual schedule :class:`LambdaSchedule`. The dense SSM baseline is λ = 0.

Imports flow down this list (a part imports only parts above it); a new baseline is a new file
here, built from these parts.

Gate options measured for locality (``docs/results.md``, "Gate options"; validation split,
first experiment): ``model.gate_scorer = "mlp"`` (an MLP over the pair instead of one inner
product), ``model.gate_clip_gradient`` (the hard-concrete clip passes the gradient straight
through) and ``model.edge_rule = "open_probability"`` (evaluation edges = open in most training
samples). None is the default: none made the learned local graphs beat the best constant
graph, the clip gradient changed the SHD by less than the seed does, and the other two made it
worse (the MLP kept ball -> paddle open but opened paddle -> ball on more transitions without
a collision; the shifted evaluation rule opens every gate whose logit sits in (-1.2, 0)).
"""

from __future__ import annotations

from s2ssm.models.blocks import CausalTimeAttention, SlotSSMBlock
from s2ssm.models.causal_graph import (
    adjacency_layers,
    local_edge_scores,
    local_graph_from_edges,
    path_count_matrix,
    path_penalty,
)
from s2ssm.models.environment import EnvironmentSlot
from s2ssm.models.gates import (
    NEG_MASK,
    EdgeGate,
    MLPEdgeGate,
    open_probability_shift,
    sample_edges,
)
from s2ssm.models.sparsity import LambdaSchedule, dynamics_loss
from s2ssm.models.vae import ObjectVAE, compose_frame, image_moments, object_images
from s2ssm.models.world_model import S2SSM, DynamicsOutput, SlotDynamics, fit_env_code, rollout

__all__ = [
    "NEG_MASK",
    "S2SSM",
    "CausalTimeAttention",
    "DynamicsOutput",
    "EdgeGate",
    "EnvironmentSlot",
    "LambdaSchedule",
    "MLPEdgeGate",
    "ObjectVAE",
    "SlotDynamics",
    "SlotSSMBlock",
    "adjacency_layers",
    "compose_frame",
    "dynamics_loss",
    "fit_env_code",
    "image_moments",
    "local_edge_scores",
    "local_graph_from_edges",
    "object_images",
    "open_probability_shift",
    "path_count_matrix",
    "path_penalty",
    "rollout",
    "sample_edges",
]
