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
   fits a new code for an unseen environment, :func:`identify_env_codes` one per sequence from
   its first few steps (the environment identified from data at test time).
3. :mod:`~s2ssm.models.gates` -- **edge gates.** :class:`EdgeGate` scores every (child object,
   parent slot) pair from the slots at that time step; :func:`sample_edges` turns the scores
   into binary edges (hard-concrete in training; why, in that module's docstring).
4. :mod:`~s2ssm.models.blocks` -- **SlotSSM blocks.** :class:`SlotSSMBlock` = a Mamba layer over
   time, shared by the slots and run on each slot's sequence independently (free evolution),
   then masked cross-attention from the object slots to the object slots + environment slot at
   each time step (interactions), the mask being the sampled edges, then an MLP. ``kind =
   "transformer"`` swaps the Mamba layer for causal self-attention over time (an ablation of the
   temporal layer, S2-SSM's gates kept). :mod:`~s2ssm.models.spartan`, ``kind = "spartan"``:
   SPARTAN (arXiv 2411.06890) in the same block, time attention and hard attention masks
   sampled from the attention's own query-key scores, no gate of its own.
5. :mod:`~s2ssm.models.causal_graph` -- **causal graph.** Per layer i the gates give an
   adjacency A_i (child x parent); the local causal graph of a step is Ā = (A_L + I) ... (A_1 +
   I) (:func:`path_count_matrix`), an edge wherever Ā - I is positive.
6. :mod:`~s2ssm.models.world_model` -- **world model.** :class:`SlotDynamics` predicts every
   object's next slot; :class:`S2SSM` holds the VAE and the dynamics.
7. :mod:`~s2ssm.models.counterfactual` -- **counterfactual benefits.** With ``model.gate =
   "bernoulli"`` :func:`edge_benefits` re-runs the dynamics with each edge forced open and
   closed: the error each edge saves at each transition, from which the gates learn.
8. :mod:`~s2ssm.models.sparsity` -- **loss.** Next-slot MSE + λ x (path count |Ā| minus the self
   paths) + a small decay of gate logits past their bound, :func:`dynamics_loss`, with λ from
   the dual schedule :class:`LambdaSchedule`. The dense SSM baseline is λ = 0.

Imports flow down this list (a part imports only parts above it); a new baseline is a new file
here, built from these parts.

The gates of ``configs/small_cpu.toml``: ``model.gate = "bernoulli"``, hard Bernoulli edges
that learn from counterfactual benefits (:mod:`~s2ssm.models.counterfactual`): each edge of a
few sequences per batch is re-run open and closed, and the error difference is the exact
derivative of the expected error in the edge's probability, per transition, for closed samples
too. With the relaxed hard-concrete gates an edge's worth reaches the gate only through the
samples drawn open and through one static bias that the penalty lowers on every transition, and
ball -> paddles was shut in some seeds while paddle -> ball stayed shut on collisions. On the
validation split (``docs/results.md``, "Bernoulli gates with counterfactual benefits") the
counterfactual gates keep ball -> paddles in every seed and open paddle -> ball on collisions in
more seeds, at a similar mean SHD: where they fail is the price λ (near misses are informative,
so a low λ opens paddle -> ball there too), not the gradient. The hard concrete stays the
default of :class:`~s2ssm.config.ModelConfig` and of the ``--quick`` protocol, whose tables were
measured with it.

``configs/small_cpu.toml`` also sets ``model.layout = "time_first"``: the temporal blocks run
per slot first, then one block of interactions within the step, so a message of step t reaches
the prediction of t -> t + 1 alone. In the paper's interleaved layout it also reaches later
steps through the next block's temporal layer, and the benefit of a transition holds what
earlier steps carried. With ``model.d_model = 64`` and ``sparsity.lambda_max = 2e-4``
(uncapped, λ keeps rising after the warm-up and shuts ball -> paddles) paddle -> ball ranks at
AUROC 0.95-0.97 on the validation split over seeds 0-3, against 0.87-0.97, and the mean local
SHD is 0.272 against 0.554 for the interleaved d = 32 default before it. On the README's test
split (five seeds, with the closed exploration below): 0.155-0.199, still 2.2-2.8x the best
constant graph. The counterfactual passes skip the history, which no edge changes: a d = 64 run
trains in 234-277 s beside another run, where the interleaved d = 32 one took 578-731 s (in the
earlier environment).

The same file draws every edge closed on at least 5 % of the training transitions
(``model.gate_explore_closed = 0.05``). Without that, a gate open on nearly every sample leaves
the prediction without its parent untrained where it is open, and the edge's benefit there
measures the untrained closed arm: at the points (the ball reset to the centre, which no model
predicts well) the ball took the messages of both paddles and of the score on 61-100 % of them
in 4 of 5 seeds, 0-17 % with it (``scripts/false_opens.py``); the mean validation local SHD
falls from 0.287 to 0.188 over five seeds, lower in every seed. At d = 32 and λ ≤ 1e-4 ball ->
score is local (AUROC 0.99, open on 53-77 % of the points); at d = 64 it ranks the points but
stays shut on them.

Options measured for locality on the validation split of the first experiment
(``docs/results.md``, "Gate options", "What else was tried" and "Local messages"), none of
them the default because none beat the best constant graph or the defaults there:

* ``model.gate_scorer = "mlp"``: an MLP over (x_i, y_j, x_i - y_j) instead of one inner product,
  enough capacity for "the ball is about to hit this paddle". Worse: it shuts ball -> paddles
  in more seeds, and paddle -> ball stays as closed as with the bilinear score.
* ``model.gate_clip_gradient``: the hard-concrete clip passes the gradient straight through.
  Within seed noise.
* ``model.message = "gated_sum"`` (with the clip gradient): a closed sample still learns what
  opening would do. Paddle -> ball still never opens on collisions.
* ``model.edge_rule = "open_probability"``: evaluation edges = open in most training samples,
  the training rule. Opens every gate whose logit sits in (-1.2, 0): more false edges.
* ``data.velocity = "previous"``: the ball's direction in one frame. The gates see the causes
  of time t anyway: each block's gates score its slots *after* its temporal layer, which
  carries the slot's history (its velocity). Within seed noise.
* ``model.gate_learn_bias = false``: the per-edge bias held at its start, so that only the
  state-dependent score can close a gate. Paddle -> ball stays closed; with the MLP scorer
  worse on average over four seeds, and ball -> score shut.
* ``model.benefit = "resampled"`` (the parent's state replaced by a random draw of it, its
  interventional effect rather than its information): does not cut the near misses.
* ``model.gate_draw = "threshold"``: training edges are the evaluation's (p > 0.5) up to the
  two explorations, so that the closed arm is learnt where the gate is shut. Worse: an open
  gate's closed arm is learnt on 5 % of its transitions, and the points open again.
* λ: ``sparsity.rule = "exponential"`` (the paper's multiplicative rule) with
  ``sparsity.plateau_window`` (stop once the edge density plateaus) over-prunes;
  ``sparsity.target_run`` (τ = the dense model's converged error) prunes too little within
  the run (density 0.40-0.63).

What fails, measured: paddle -> ball is closed on nearly every transition, collision or not
(AUROC 0.43-0.95, P(open | collision) 0-0.3), although the paddle's information is worth the
most exactly there (``s2ssm.evaluation.events``, test split, five seeds: on collisions the
ball's error is 1.4-2.4x the dense SSM's, elsewhere the same): the penalty shuts the edge
through its static bias before the gate has learnt which states need it. With the Bernoulli
gates the slots are not the limit (a supervised probe on the slots at t - 1 and t ranks
collisions and points at AUROC 0.99, ``scripts/locality_probe.py``) but the training signal
is: the counterfactual benefit ranks collisions at AUROC 0.77-0.82 and points not at all,
because the dynamics predict neither well (``scripts/benefit_locality.py``; ``docs/results.md``,
"Where the locality is lost"). With local messages (``layout = "time_first"``) and a wider
model both become separable, and what remains is where the paddle's position is informative
although the paddle causes nothing: the transitions near a paddle (false opens on 18-45 % of
them with closed exploration; ``scripts/false_opens.py``; ``docs/results.md``, "The first
experiment at d = 64, time_first"), and ball -> score, which stays shut on the points because
no model predicts the score's change there.
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
from s2ssm.models.counterfactual import candidate_edges, edge_benefits
from s2ssm.models.environment import EnvironmentSlot
from s2ssm.models.gates import (
    NEG_MASK,
    EdgeGate,
    MLPEdgeGate,
    open_probability_shift,
    sample_edges,
)
from s2ssm.models.sparsity import LambdaSchedule, dynamics_loss
from s2ssm.models.spartan import HardMaskAttention, masked_softmax_attention
from s2ssm.models.vae import ObjectVAE, compose_frame, image_moments, object_images
from s2ssm.models.world_model import (
    S2SSM,
    DynamicsOutput,
    SlotDynamics,
    fit_env_code,
    identify_env_codes,
    rollout,
)

__all__ = [
    "NEG_MASK",
    "S2SSM",
    "CausalTimeAttention",
    "DynamicsOutput",
    "EdgeGate",
    "EnvironmentSlot",
    "HardMaskAttention",
    "LambdaSchedule",
    "MLPEdgeGate",
    "ObjectVAE",
    "SlotDynamics",
    "SlotSSMBlock",
    "adjacency_layers",
    "candidate_edges",
    "compose_frame",
    "dynamics_loss",
    "edge_benefits",
    "fit_env_code",
    "identify_env_codes",
    "image_moments",
    "local_edge_scores",
    "local_graph_from_edges",
    "masked_softmax_attention",
    "object_images",
    "open_probability_shift",
    "path_count_matrix",
    "path_penalty",
    "rollout",
    "sample_edges",
]
