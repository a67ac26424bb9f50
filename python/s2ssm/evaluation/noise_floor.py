"""The irreducible next-slot error of a slot space: how low any world model's MSE can go.

Interventional Pong is stochastic (paddle noise, ball noise, random serves after a point, the
interventions), so even a model that knew the exact state could not predict the next slot
exactly. :func:`slot_noise_floor` estimates that floor for a given encoder: every transition
s_t -> s_{t+1} of fresh sequences is re-simulated ``draws`` times from the same state s_t with
independent randomness (the NumPy reference dynamics, :mod:`s2ssm.sim.reference`), each
outcome is rendered and encoded, and the floor is the mean over transitions of the (unbiased)
variance of the encoded outcomes: the MSE of the Bayes-optimal predictor E[slot_{t+1} | s_t].

A model only sees past frames, not s_t, so its MSE can sit above the floor for lack of
information too (e.g. the ball's exact direction); it cannot go below it, up to the sampling
error of the estimate. A model that is told the intervention targets of each transition
(``model.use_interventions``) knows more than s_t: pass ``targets`` and the re-simulations
apply the transition's own targets, redrawing only the intervened values and the noise. Read
a model's MSE against this floor, not against zero: the floor depends on the encoder's scale,
which is why next-slot MSEs of different papers are not comparable across latent spaces.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from s2ssm.errors import InvalidInputError

__all__ = ["slot_noise_floor"]

# Seeds of the re-simulations: far from any seed the package draws data with.
_FLOOR_SEED = 0x5EED_F100_0000


def slot_noise_floor(
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    env: str,
    states: np.ndarray,
    *,
    resolution: int,
    intervention_prob: float,
    draws: int = 8,
    batch_size: int = 256,
    targets: np.ndarray | None = None,
    velocity: str = "none",
) -> float:
    """Mean over transitions and slot entries of Var[encode(frame_{t+1}) | s_t].

    ``encode(frames, masks)`` maps uint8 frames (N, 1, H, W, 3) and masks (N, 1, H, W) to
    slots (N, 1, K, D) (e.g. ``S2SSM.encode_slots``); ``states`` (N, T, S) are the simulator's
    states of the sequences (``PongBatch.states``), transitions t -> t + 1 for t < T - 1.
    ``targets`` (N, T, 5) bool, the sequences' ``PongBatch.interventions``: when given, the
    transition t -> t + 1 is re-simulated with the targets of step t + 1 (the floor of a
    predictor that knows them); otherwise the targets are redrawn with ``intervention_prob``.
    ``velocity``: the frames' velocity cue (``"previous"``: each outcome is drawn with the ball
    position of s_t, as the data are).
    """
    from s2ssm.sim import _envs, render
    from s2ssm.sim import reference as ref

    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 3 or states.shape[1] < 2 or states.shape[2] != len(ref.STATE_NAMES):
        raise InvalidInputError(
            f"states must be (N, T >= 2, {len(ref.STATE_NAMES)}), got {states.shape}"
        )
    if draws < 2:
        raise InvalidInputError(f"draws must be >= 2, got {draws}")
    forced = None
    if targets is not None:
        targets = np.asarray(targets)
        if targets.dtype != np.bool_ or targets.shape != (*states.shape[:2], len(ref.TARGETS)):
            raise InvalidInputError(
                f"targets must be bool {(*states.shape[:2], len(ref.TARGETS))} like the "
                f"states, got {targets.dtype} {targets.shape}"
            )
        forced = targets[:, 1:].reshape(-1, len(ref.TARGETS))
    _, mechanisms = _envs._env_bits(env)
    flat = states[:, :-1].reshape(-1, states.shape[-1])
    n = flat.shape[0]
    columns = [flat[:, i] for i in range(flat.shape[1])]
    start = ref.RefState(*columns)
    start.score_left = np.rint(start.score_left).astype(np.int64)
    start.score_right = np.rint(start.score_right).astype(np.int64)
    seqs = np.arange(n, dtype=np.uint64)

    def outcome(draw: int) -> np.ndarray:
        nxt, _, _ = ref.step(
            start, mechanisms, _FLOOR_SEED + draw, seqs, 1, intervention_prob, forced=forced
        )
        return nxt.to_array()

    outcomes = np.stack([outcome(d) for d in range(draws)], axis=1)  # (n, draws, S)
    ball = [ref.STATE_NAMES.index("ball_x"), ref.STATE_NAMES.index("ball_y")]
    previous = np.broadcast_to(flat[:, None, ball], (n, draws, 2))
    total = 0.0
    for i in range(0, n, batch_size):
        frames, masks = render(
            outcomes[i : i + batch_size],
            previous=previous[i : i + batch_size],
            resolution=resolution,
            velocity=velocity,
        )
        f = torch.from_numpy(frames).flatten(0, 1).unsqueeze(1)
        m = torch.from_numpy(masks).flatten(0, 1).unsqueeze(1)
        with torch.no_grad():
            slots = encode(f, m).float().cpu()
        slots = slots.reshape(-1, draws, *slots.shape[2:])  # (b, draws, K, D)
        total += float(slots.var(dim=1, unbiased=True).mean(dim=(1, 2)).sum())
    return total / n
