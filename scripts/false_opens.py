"""Where does a run open an edge into the ball that the truth does not have? (issue #14, a
diagnostic)

On the validation sequences (neutral, seed 2000029, 128 x 16) of a trained run: for each
parent of the ball (left paddle, right paddle, score), the transitions whose learned local
graph has the edge (the evaluation's rule: a causal path through the open edges) while the
truth has not, counted by what happens at that transition (the first that applies): a point,
a collision (with either paddle), the step right after a collision, the ball near a paddle's
collision band (:func:`s2ssm.evaluation.events.transition_events`), elsewhere. Each cell is
``false opens / transitions of that kind``. Usage: ``python scripts/false_opens.py RUN [RUN
...]``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from s2ssm import sim
from s2ssm.evaluation.events import EVENTS, transition_events
from s2ssm.evaluation.metrics import encode_sequences
from s2ssm.training.checkpoint import find_checkpoint, load_model
from s2ssm.training.data import generate_sequences

OBJECTS = sim.OBJECTS
BALL = OBJECTS.index("ball")
PARENTS = ("left_paddle", "right_paddle", "score")
PLACES = ("point", "collision", "after a collision", "near a paddle", "elsewhere")


def transition_places(events: np.ndarray) -> np.ndarray:
    """(N, T') indices into :data:`EVENTS` -> (N, T') indices into :data:`PLACES`."""
    point, collision = events == EVENTS.index("point"), events == EVENTS.index("collision")
    after = np.zeros_like(collision)
    after[:, 1:] = collision[:, :-1]
    places = np.full(events.shape, PLACES.index("elsewhere"))
    places[events == EVENTS.index("near_paddle")] = PLACES.index("near a paddle")
    places[after & ~point & ~collision] = PLACES.index("after a collision")
    places[collision] = PLACES.index("collision")
    places[point] = PLACES.index("point")
    return places


def main() -> None:
    torch.set_num_threads(1)
    data = generate_sequences(("neutral",), 128, 16, seed=2_000_029, intervention_prob=0.0)
    states = sim.generate("neutral", 128, 16, seed=2_000_029, intervention_prob=0.0, render=False)
    states = np.asarray(states.states)
    places = transition_places(
        transition_events(states, data.local_graphs, OBJECTS, sim.STATE_NAMES)
    )
    truth = np.asarray(data.local_graphs[:, 1:], dtype=bool)
    env = torch.from_numpy(data.env_ids)
    print("| run | edge | true edges, open on them | " + " | ".join(PLACES) + " |")
    print("|---|---|---|" + "---|" * len(PLACES))
    for run in sys.argv[1:]:
        model, _ = load_model(find_checkpoint(run))
        model.eval()
        slots = encode_sequences(model, data, torch.device("cpu"))
        with torch.no_grad():
            graphs = [
                model.dynamics(slots[i : i + 16], env[i : i + 16], None).local_graphs()
                for i in range(0, len(slots), 16)
            ]
        learned = torch.cat(graphs)[:, :-1].numpy()  # transitions t -> t + 1
        for name in PARENTS:
            p = OBJECTS.index(name)
            y, opened = truth[..., BALL, p], learned[..., BALL, p]
            cells = [run, f"{name} -> ball", f"{int(y.sum())}, {int((opened & y).sum())}"]
            for k in range(len(PLACES)):
                where = (places == k) & ~y
                cells.append(f"{int((opened & where).sum())} / {int(where.sum())}")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
