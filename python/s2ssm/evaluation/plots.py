"""Figures of a checkpoint (matplotlib, Agg; install ``s2ssm[plot]``).

- ``graphs_<env>.png``: the learned global graph (share of local graphs with each edge) beside
  the environment's true global graph, and the learned vs true local graph of a few transitions;
- ``rollout_<env>.png``: a strip of true frames over the frames decoded from an autoregressive
  rollout (the context frames are reconstructions of the observed slots).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ssm.config import apply_overrides
from s2ssm.evaluation.figures import (
    LABEL_SIZE,
    add_colorbar,
    draw_graph,
    pyplot,
    save_figure,
)
from s2ssm.evaluation.metrics import evaluate_env
from s2ssm.training.checkpoint import load_model
from s2ssm.training.data import env_id
from s2ssm.training.trainer import select_device

__all__ = ["plot", "plot_graphs", "plot_rollout"]


def plot_graphs(raw: dict[str, Any], env: str, path: Path, examples: int = 3) -> Path:
    """Learned vs true global graph and ``examples`` local graphs (first sequence)."""
    plt = pyplot()
    share = np.asarray(raw["learned_share"], dtype=float)
    learned, truth = raw["learned"], raw["truth"]
    steps = np.linspace(0, learned.shape[1] - 1, examples).astype(int)
    fig, axes = plt.subplots(2, 1 + examples, figsize=(3.2 * (1 + examples), 6.2))
    panels = [
        (axes[0, 0], share, "learned global (share)", True),
        (axes[1, 0], raw["true_global"], "true global", True),
    ]
    for j, t in enumerate(steps, start=1):
        panels.append((axes[0, j], learned[0, t], f"learned local t={t}->{t + 1}", False))
        panels.append((axes[1, j], truth[0, t], f"true local t={t}->{t + 1}", False))
    for ax, matrix, title, first in panels:
        image = draw_graph(ax, matrix, title, row_labels=first)
    add_colorbar(fig, image, axes.ravel().tolist(), "edge share (global) / edge (local)")
    fig.suptitle(f"{env}: rows = child (t + 1), columns = parent (t); grey: self, not scored")
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_rollout(model: Any, raw: dict[str, Any], context: int, env: str, path: Path) -> Path:
    """True frames (top) and decoded context + rollout frames (bottom) of the first sequence."""
    plt = pyplot()
    data = raw["data"]
    horizon = raw["rollout"].shape[1]
    true = data.frames[0, : context + horizon].astype(np.float32) / 255.0
    with torch.no_grad():
        slots = torch.cat([raw["slots"][0, :context], raw["rollout"][0]], dim=0)
        decoded = model.decode_frames(slots).clamp(0, 1).movedim(-3, -1).cpu().numpy()
    n = context + horizon
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0))
    for t in range(n):
        for row, image in ((0, true[t]), (1, decoded[t])):
            ax = axes[row, t]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, t].set_title(("ctx " if t < context else "pred ") + str(t), fontsize=LABEL_SIZE)
    axes[0, 0].set_ylabel("true", fontsize=LABEL_SIZE + 1)
    axes[1, 0].set_ylabel("model", fontsize=LABEL_SIZE + 1)
    fig.suptitle(f"{env}: rollout of {horizon} steps after {context} observed")
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot(
    checkpoint: str | Path,
    *,
    envs: list[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out_dir: str | Path | None = None,
    device: str = "auto",
) -> list[Path]:
    """Write the figures of ``checkpoint`` for ``envs`` (default ``eval.envs``); returns paths."""
    pyplot()
    dev = select_device(device)
    model, info = load_model(checkpoint, dev)
    config = apply_overrides(info.config, overrides)
    names = list(envs) if envs else list(config.eval.envs)
    for name in names:
        env_id(name)
    target = Path(out_dir) if out_dir is not None else info.path.parent.parent / "plots"
    paths = []
    for name in names:
        _, raw = evaluate_env(model, config, name, dev)
        paths.append(plot_graphs(raw, name, target / f"graphs_{name}.png"))
        paths.append(
            plot_rollout(model, raw, config.eval.context, name, target / f"rollout_{name}.png")
        )
    return paths
