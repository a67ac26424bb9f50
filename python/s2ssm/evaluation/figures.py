"""The drawing rules every figure shares (matplotlib, Agg; ``s2ssm[plot]``): graph heatmaps
with child rows and parent columns, the diagonal greyed out (self-loops are not gated by the
model and not scored by the SHD, ``diagonal="ignore"``), cell values written in, readable
labels, one colour bar per figure, atomic PNG writes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2ssm.errors import S2ssmError
from s2ssm.files import atomic_write

__all__ = ["LABEL_SIZE", "add_colorbar", "draw_graph", "object_labels", "pyplot", "save_figure"]

#: Font size of tick labels and cell values (titles are one point larger).
LABEL_SIZE = 8


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the environment
        raise S2ssmError("plotting needs matplotlib: pip install 's2ssm[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, *, dpi: int = 120, tight: bool = True) -> None:
    """Save ``fig`` as ``path`` (format from its suffix) atomically."""
    bbox = "tight" if tight else None
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches=bbox))


def object_labels(k: int) -> tuple[list[str], list[str]]:
    """Row (child) and column (parent, env last) labels of a ``(k, k + 1)`` graph."""
    from s2ssm.sim import OBJECTS

    names = [str(n).replace("_", " ") for n in OBJECTS][:k]
    names += [f"obj{i}" for i in range(len(names), k)]
    return names, [*names, "env"]


def draw_graph(
    ax: Any, matrix: Any, title: str, *, values: bool = True, row_labels: bool = True
) -> Any:
    """Draws a ``(k, k + 1)`` graph (bool or edge shares in [0, 1]) on ``ax``; returns the
    image (for :func:`add_colorbar`). ``row_labels``: name the children (the first panel of a
    row of panels; the others leave the space to it)."""
    plt = pyplot()
    m = np.asarray(matrix, dtype=float).copy()
    k = m.shape[0]
    m[np.eye(k, m.shape[1], dtype=bool)] = np.nan
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    image = ax.imshow(m, vmin=0.0, vmax=1.0, cmap=cmap)
    rows, cols = object_labels(k)
    ax.set_xticks(range(k + 1), cols, rotation=45, ha="right", fontsize=LABEL_SIZE)
    ax.set_yticks(range(k), rows if row_labels else [], fontsize=LABEL_SIZE)
    ax.set_title(title, fontsize=LABEL_SIZE + 1)
    if values:
        for i in range(k):
            for j in range(k + 1):
                if i == j:
                    ax.text(j, i, "self", ha="center", va="center", fontsize=LABEL_SIZE - 1)
                else:
                    v = m[i, j]
                    colour = "black" if v > 0.6 else "white"
                    ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=LABEL_SIZE - 1,
                            color=colour)  # fmt: skip
    return image


def add_colorbar(fig: Any, image: Any, axes: Sequence[Any] | Any, label: str) -> Any:
    """One colour bar for the whole figure, beside ``axes``."""
    bar = fig.colorbar(image, ax=axes, shrink=0.8, pad=0.02)
    bar.set_label(label, fontsize=LABEL_SIZE)
    bar.ax.tick_params(labelsize=LABEL_SIZE)
    return bar
