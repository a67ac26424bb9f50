"""Is the Bernoulli gates' training signal local? (issue #14, a diagnostic)

On the validation sequences (neutral, seed 2000029, 128 x 16) of a run trained with
``model.gate = "bernoulli"``: the counterfactual benefit of each paddle -> ball and ball ->
score edge (:func:`s2ssm.models.edge_benefits`, the error it saves at each transition, which
reads the next step) and the gate's probability (max over the layers), their AUROC against
the true edge, and per event of :mod:`s2ssm.evaluation.events` the share of transitions whose
benefit exceeds λ and whose gate is open. Usage: ``python scripts/benefit_locality.py RUN LAMBDA``
(λ: the last ``lambda`` of RUN's ``metrics.jsonl``).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from s2ssm import sim
from s2ssm.evaluation.events import EVENTS, transition_events
from s2ssm.evaluation.graph_baselines import auroc
from s2ssm.evaluation.metrics import encode_sequences
from s2ssm.models import edge_benefits
from s2ssm.training.checkpoint import find_checkpoint, load_model
from s2ssm.training.data import generate_sequences

OBJECTS = sim.OBJECTS
BALL, SCORE = OBJECTS.index("ball"), OBJECTS.index("score")
LEFT, RIGHT = OBJECTS.index("left_paddle"), OBJECTS.index("right_paddle")
EDGES = {"left_paddle -> ball": (BALL, LEFT), "right_paddle -> ball": (BALL, RIGHT)}
EDGES["ball -> score"] = (SCORE, BALL)


def main() -> None:
    torch.set_num_threads(1)
    model, _ = load_model(find_checkpoint(sys.argv[1]))
    model.eval()
    lam = float(sys.argv[2])
    data = generate_sequences(("neutral",), 128, 16, seed=2_000_029, intervention_prob=0.0)
    states = sim.generate("neutral", 128, 16, seed=2_000_029, intervention_prob=0.0, render=False)
    slots = encode_sequences(model, data, torch.device("cpu"))
    env = torch.from_numpy(data.env_ids)
    benefits, probs = [], []
    with torch.no_grad():
        for i in range(0, len(slots), 16):
            s, e = slots[i : i + 16], env[i : i + 16]
            out = model.dynamics(s, e, None)
            benefits.append(edge_benefits(model.dynamics, s, e, None, out.edges))
            probs.append(out.gate_probs[:, :-1].amax(dim=2))
    benefit, prob = torch.cat(benefits).numpy(), torch.cat(probs).numpy()
    truth = data.local_graphs[:, 1:]
    events = transition_events(
        np.asarray(states.states), data.local_graphs, OBJECTS, sim.STATE_NAMES
    ).reshape(-1)
    print(
        "| edge | benefit AUROC | gate AUROC | "
        + " | ".join(f"{e}: P(benefit > λ), P(open)" for e in EVENTS)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(EVENTS))
    for name, (c, p) in EDGES.items():
        y = truth[..., c, p].reshape(-1)
        b, g = benefit[..., c, p].reshape(-1), prob[..., c, p].reshape(-1)
        cells = [
            f"{(b[events == k] > lam).mean():.2f}, {(g[events == k] > 0.5).mean():.2f}"
            for k in range(len(EVENTS))
        ]
        print(f"| {name} | {auroc(b, y):.3f} | {auroc(g, y):.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
