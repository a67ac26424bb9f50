"""Can the slots tell a collision or a point at time t? (issue #14, a diagnostic)

A supervised probe, which reads the true local graphs of the training data (a cheat, and the
ceiling of any gate that sees these slots): an MLP on the shared VAE's slots of all objects at
(t - 1, t) predicts the true edge of the transition t -> t + 1, trained on the training
sequences (neutral, ``data.seed`` 0, 2048 x 16) and scored (AUROC) on the validation
sequences (seed 2000029, 256 x 16). The same probe on the simulator's true states is the
reference. Usage: ``python scripts/locality_probe.py runs/first/vae``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from s2ssm import sim
from s2ssm.evaluation.graph_baselines import auroc
from s2ssm.evaluation.metrics import encode_sequences
from s2ssm.training.checkpoint import find_checkpoint, load_model
from s2ssm.training.data import generate_sequences

OBJECTS = sim.OBJECTS
BALL, SCORE = OBJECTS.index("ball"), OBJECTS.index("score")
LEFT, RIGHT = OBJECTS.index("left_paddle"), OBJECTS.index("right_paddle")
EDGES = {"left_paddle -> ball": (BALL, LEFT), "right_paddle -> ball": (BALL, RIGHT)}
EDGES["ball -> score"] = (SCORE, BALL)


def features(model: torch.nn.Module, seed: int, n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(slot features, state features, labels) of the transitions t -> t + 1, t = 1 .. T - 2."""
    data = generate_sequences(("neutral",), n, 16, seed=seed, intervention_prob=0.0)
    slots = encode_sequences(model, data, torch.device("cpu"), 256).numpy()
    states = sim.generate("neutral", n, 16, seed=seed, intervention_prob=0.0, render=False).states
    t = slots.shape[1] - 2
    slot_x = np.concatenate([slots[:, 1:-1].reshape(n, t, -1), slots[:, :-2].reshape(n, t, -1)], -1)
    states = np.asarray(states)
    state_x = np.concatenate([states[:, 1:-1], states[:, :-2]], -1)
    graphs = data.local_graphs[:, 2:]
    labels = {name: graphs[..., c, p].reshape(-1) for name, (c, p) in EDGES.items()}
    return slot_x.reshape(n * t, -1), state_x.reshape(n * t, -1), labels


def probe(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, steps: int = 3000):
    """Scores of an MLP probe (balanced logistic loss) trained on (x_train, y_train)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.tensor((x_train - mean) / std, dtype=torch.float32)
    xe = torch.tensor((x_eval - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y_train, dtype=torch.float32)
    net = torch.nn.Sequential(
        torch.nn.Linear(xt.shape[1], 128),
        torch.nn.SiLU(),
        torch.nn.Linear(128, 128),
        torch.nn.SiLU(),
        torch.nn.Linear(128, 1),
    )
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    weight = torch.tensor((1 - y_train.mean()) / max(y_train.mean(), 1e-6))
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (512,), generator=gen)
        logits = net(xt[idx]).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, yt[idx], pos_weight=weight
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return net(xe).squeeze(-1).numpy()


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model, _ = load_model(find_checkpoint(sys.argv[1]))
    model.eval()
    slot_tr, state_tr, y_tr = features(model, 0, 2048)
    slot_va, state_va, y_va = features(model, 2_000_029, 256)
    print("| edge | rate | probe on true states AUROC | probe on slots (t-1, t) AUROC |")
    print("|---|---|---|---|")
    for name in EDGES:
        on_states = auroc(probe(state_tr, y_tr[name], state_va), y_va[name])
        on_slots = auroc(probe(slot_tr, y_tr[name], slot_va), y_va[name])
        print(f"| {name} | {y_va[name].mean():.3f} | {on_states:.3f} | {on_slots:.3f} |")


if __name__ == "__main__":
    main()
