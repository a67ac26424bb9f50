"""The report of a reproduction: per-unit records aggregated over seeds (mean ± sample std),
markdown tables, ``results.json`` / ``results.md``, and the overview figures.

Every table reads MSE against the seed's noise floor (``MSE / floor``: each seed has its own
VAE, so raw MSEs of different seeds live in different slot scales)."""

from __future__ import annotations

import logging
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from s2ssm.config import Config, config_to_dict
from s2ssm.errors import InvalidInputError
from s2ssm.evaluation.figures import LABEL_SIZE, add_colorbar, draw_graph, pyplot, save_figure
from s2ssm.evaluation.metrics import TABLE_EDGES
from s2ssm.experiments.protocol import PHASES, Protocol, plan_units, protocol_to_dict
from s2ssm.experiments.rundir import RunDirectory
from s2ssm.files import atomic_write_text, write_json

__all__ = [
    "KEY_EDGES",
    "METRICS",
    "OCCLUSION_METRICS",
    "PHASE_TITLES",
    "aggregate",
    "edge_metric",
    "edge_table",
    "format_mean_std",
    "hardware",
    "markdown_tables",
    "mean_std",
    "occlusion_table",
    "write_figures",
    "write_results",
]

log = logging.getLogger(__name__)

#: The local edges whose AUROC the report tables show, as (parent, child): the interactions
#: (ball -> paddles, paddles -> ball on a collision, ball -> score on a point) and the
#: environment / intervention token's edges.
KEY_EDGES: tuple[tuple[str, str], ...] = (
    *TABLE_EDGES,
    ("env", "left_paddle"),
    ("env", "right_paddle"),
    ("env", "ball"),
)


def edge_metric(parent: str, child: str) -> str:
    """The flat metric name of a local edge's AUROC in aggregated rows."""
    return f"auroc__{parent}__{child}"


#: Metrics aggregated over seeds (those of :class:`s2ssm.evaluation.metrics.EnvResult`).
METRICS: tuple[str, ...] = (
    "mse_1step",
    "mse_copy",
    "mse_floor",
    "mse_over_floor",
    "mse_rollout",
    "shd_local",
    "shd_local_dense",
    "shd_local_empty",
    "shd_best_constant",
    "shd_tokens_only",
    "shd_global",
    "f1",
    "edge_density",
    *(edge_metric(parent, child) for parent, child in KEY_EDGES),
)
#: Metrics of the occlusion units (see :mod:`s2ssm.evaluation.occlusion`), aggregated the same way.
OCCLUSION_METRICS: tuple[str, ...] = (
    "mse_visible",
    "mse_hidden",
    "mse_hidden_clean",
    "mse_hidden_copy",
    "mse_hidden_run_1",
    "mse_hidden_run_2",
    "mse_hidden_run_3+",
    "shd_visible",
    "shd_hidden",
    "shd_hidden_clean",
    "graph_change_hidden",
    "hidden_fraction",
)
PHASE_TITLES = {
    "simple": "Simple environments (trained on all 7)",
    "zero_shot": "Composite environments, zero-shot",
    "finetune": "Composite environments, fine-tuned on 10% of the data",
}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof = 1``; 0 for a single value) of ``values``;
    ``nan`` entries are an error (a failed metric must not vanish into an average)."""
    vals = [float(v) for v in values]
    if not vals:
        raise InvalidInputError("mean_std needs at least one value")
    if any(math.isnan(v) for v in vals):
        raise InvalidInputError(f"mean_std got a nan among {vals}")
    mean = math.fsum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var)


def _derived(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    """``rec`` plus ``mse_over_floor`` = mse_1step / mse_floor where both are there (each seed
    has its own VAE, so raw MSEs of different seeds live in different slot scales and only
    their ratio to the seed's floor averages meaningfully) and the AUROC of every
    :data:`KEY_EDGES` edge (nan where the record has none or it is undefined)."""
    out = dict(rec)
    if "mse_1step" in rec and "mse_floor" in rec:
        floor = float(rec["mse_floor"])
        out["mse_over_floor"] = float(rec["mse_1step"]) / floor if floor > 0 else math.nan
    edges = rec.get("edges")
    if isinstance(edges, Mapping):
        for parent, child in KEY_EDGES:
            value = edges.get(child, {}).get(parent, {}).get("auroc")
            out[edge_metric(parent, child)] = math.nan if value is None else float(value)
    return out


def aggregate(
    records: Iterable[Mapping[str, Any]],
    phases: Sequence[str] = PHASES,
    metrics: Sequence[str] = METRICS,
) -> list[dict[str, Any]]:
    """Rows ``{phase, env, model, n, seeds, <metric>_mean, <metric>_std}`` over the seeds of
    every (phase, env, model) among the records of ``phases`` (others, e.g. training, are
    ignored). A metric missing or ``nan`` in any seed gives ``nan``: a failure must not vanish
    into an average."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        if rec.get("kind") in phases:
            groups.setdefault((rec["kind"], rec["env"], rec["model"]), []).append(_derived(rec))
    order = {p: i for i, p in enumerate(phases)}
    rows = []
    for (phase, env, model), recs in sorted(
        groups.items(), key=lambda item: (order[item[0][0]], item[0][1], item[0][2])
    ):
        row: dict[str, Any] = {
            "phase": phase,
            "env": env,
            "model": model,
            "n": len(recs),
            "seeds": sorted(int(r["seed"]) for r in recs),
        }
        for metric in metrics:
            vals = [float(r[metric]) for r in recs if metric in r]
            finite = [v for v in vals if not math.isnan(v)]
            if not finite or len(finite) != len(recs):
                row[f"{metric}_mean"], row[f"{metric}_std"] = math.nan, math.nan
            else:
                row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(finite)
        rows.append(row)
    return rows


def format_mean_std(mean: float, std: float, n: int, digits: int = 3, sci: bool = False) -> str:
    """``"mean ± std"`` (just ``mean`` for one seed, ``"n/a"`` for nan)."""
    if math.isnan(mean):
        return "n/a"
    fmt = f"{{:.{digits - 1}e}}" if sci else f"{{:.{digits}f}}"
    return fmt.format(mean) if n <= 1 else f"{fmt.format(mean)} ± {fmt.format(std)}"


_BASELINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("empty", "shd_local_empty"),
    ("best constant", "shd_best_constant"),
    ("tokens only", "shd_tokens_only"),
)


def edge_table(rows: Sequence[Mapping[str, Any]], models: Sequence[str]) -> str:
    """The AUROC of the :data:`KEY_EDGES` (each model's edge scores against the true local
    edges) as markdown: a row per (phase, environment, model); ``n/a`` where the edge never
    or always holds in the truth, or the model has no scores for it."""
    if not rows:
        return ""
    head = ["phase", "env", "model", *(f"{p} -> {c}" for p, c in KEY_EDGES)]
    lines = [
        "### Local edges: AUROC of the edge scores against the true edges",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    rank = {m: i for i, m in enumerate(models)}
    order = {p: i for i, p in enumerate(PHASES)}
    for r in sorted(
        rows,
        key=lambda r: (order.get(r["phase"], 99), r["env"], rank.get(r["model"], 99)),
    ):
        cells = [r["phase"], r["env"], r["model"]]
        for parent, child in KEY_EDGES:
            metric = edge_metric(parent, child)
            cells.append(format_mean_std(r[f"{metric}_mean"], r[f"{metric}_std"], r["n"], 2))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean ± sample std over seeds; 0.5 is chance, 1 a perfect ranking.", ""]
    return "\n".join(lines)


def markdown_tables(
    rows: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    envs_by_phase: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """One markdown table per phase: a row per environment, MSE, MSE / floor and SHD columns per
    model, then the SHD of the graphs that need no model (empty, best constant, tokens only;
    :mod:`s2ssm.evaluation.graph_baselines`), the same for every model."""
    out = []
    for phase in PHASES:
        phase_rows = [r for r in rows if r["phase"] == phase]
        if not phase_rows:
            continue
        envs = list(envs_by_phase.get(phase, ())) if envs_by_phase else []
        envs += sorted({r["env"] for r in phase_rows} - set(envs))
        by_key = {(r["env"], r["model"]): r for r in phase_rows}
        header = ["env"] + [
            f"{m} {metric}" for m in models for metric in ("MSE", "MSE / floor", "SHD")
        ]
        header += [f"SHD {name}" for name, _ in _BASELINE_COLUMNS]
        lines = [
            f"### {PHASE_TITLES[phase]}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for env in envs:
            cells = [env]
            for m in models:
                r = by_key.get((env, m))
                if r is None:
                    cells += ["—", "—", "—"]
                else:
                    mse = (r["mse_1step_mean"], r["mse_1step_std"], r["n"])
                    ratio = (r["mse_over_floor_mean"], r["mse_over_floor_std"], r["n"])
                    shd = (r["shd_local_mean"], r["shd_local_std"], r["n"])
                    cells.append(format_mean_std(*mse, sci=True))
                    cells.append(format_mean_std(*ratio, digits=2))
                    cells.append(format_mean_std(*shd, digits=2))
            found = [by_key[(env, m)] for m in models if (env, m) in by_key]
            for _, metric in _BASELINE_COLUMNS:
                if not found:
                    cells.append("—")
                    continue
                r = found[0]
                cells.append(format_mean_std(r[f"{metric}_mean"], r[f"{metric}_std"], r["n"], 2))
            lines.append("| " + " | ".join(cells) + " |")
        seeds = sorted({s for r in phase_rows for s in r["seeds"]})
        lines += ["", f"Seeds: {seeds}; mean ± sample std (ddof = 1) over seeds.", ""]
        out.append("\n".join(lines))
    return "\n".join(out)


def occlusion_table(
    rows: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    title: str = "Occlusion (the ball behind the occluder band; models trained without it)",
) -> str:
    """The occlusion rows as markdown under ``### title`` (empty string without rows)."""
    if not rows:
        return ""
    columns = (
        ("mse_visible", "MSE visible", True),
        ("mse_hidden", "MSE hidden", True),
        ("mse_hidden_clean", "MSE hidden, clean input", True),
        ("mse_hidden_copy", "MSE hidden, copy baseline", True),
        ("shd_visible", "SHD visible", False),
        ("shd_hidden", "SHD hidden", False),
        ("graph_change_hidden", "graph change when hidden", False),
    )
    head = ["env", "model", *(name for _, name, _ in columns)]
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    rank = {m: i for i, m in enumerate(models)}
    for r in sorted(rows, key=lambda r: (r["env"], rank.get(r["model"], len(rank)))):
        cells = [r["env"], r["model"]]
        for key, _, sci in columns:
            mean, std = r[f"{key}_mean"], r[f"{key}_std"]
            cells.append(format_mean_std(mean, std, r["n"], digits=3 if sci else 2, sci=sci))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Hidden: more than half of the object's pixels covered at the input step; targets are "
        "the slots of the unoccluded frames. Graph change: SHD between the graphs learned from "
        "occluded and from clean frames on the same transitions.",
        "",
    ]
    return "\n".join(lines)


def hardware() -> dict[str, Any]:
    """A description of the machine the reproduction runs on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def write_results(
    rundir: RunDirectory,
    protocol: Protocol,
    base: Config,
    *,
    ran: Sequence[str] = (),
    skipped: Sequence[str] = (),
    wall_s: float = 0.0,
) -> dict[str, Any]:
    """Aggregate the recorded units into ``results.json`` / ``results.md`` (and figures)."""
    records = rundir.records()
    rows = aggregate(records)
    occ_rows = aggregate(records, ("occlusion",), OCCLUSION_METRICS)
    occ_ft_rows = aggregate(records, ("occlusion_finetune",), OCCLUSION_METRICS)
    unit_wall = math.fsum(float(r.get("wall_s", 0.0)) for r in records)
    hw = hardware()
    summary: dict[str, Any] = {
        "out": str(rundir.root),
        "protocol": protocol_to_dict(protocol),
        "config": config_to_dict(base),
        "hardware": hw,
        "wall_s_units_total": round(unit_wall, 3),
        "wall_s_this_call": round(wall_s, 3),
        "ran": list(ran),
        "skipped": list(skipped),
        "complete": len(records) == len(plan_units(protocol)),
        "summary": rows,
        "occlusion": occ_rows,
        "occlusion_finetune": occ_ft_rows,
        "records": [
            {k: v for k, v in r.items() if k not in ("learned_global", "true_global")}
            for r in records
        ],
    }
    write_json(rundir.root / "results.json", summary)
    envs = {
        "simple": protocol.simple_envs,
        "zero_shot": protocol.composite_envs,
        "finetune": protocol.composite_envs,
    }
    text = "\n".join(
        [
            "# s2ssm reproduction of arXiv 2505.02074",
            "",
            f"Hardware: {hw.get('cuda_device') or hw['processor']} ({hw['cpu_count']} CPUs), "
            f"torch {hw['torch']}. Wall time of the recorded units: {unit_wall:.0f} s.",
            f"Complete: {summary['complete']}. MSE: next-slot, VAE slot space (each seed "
            "has its own VAE: compare models within a seed, or MSE / floor, the ratio to the "
            "seed's noise floor, across seeds). SHD: local graphs, mean per transition, env "
            "column included, self-loops ignored.",
            "",
            markdown_tables(rows, protocol.models, envs),
            edge_table(rows, protocol.models),
            occlusion_table(occ_rows, protocol.models),
            occlusion_table(
                occ_ft_rows,
                protocol.models,
                "Occlusion after fine-tuning on occluded frames (finetune_fraction of the "
                "training data, inputs occluded, targets clean)",
            ),
        ]
    )
    atomic_write_text(rundir.root / "results.md", text + "\n")
    if protocol.figures:
        try:
            write_figures(rundir.root, records, protocol)
        except ImportError:
            log.warning("matplotlib is not installed: no figures (pip install 's2ssm[plot]')")
    return summary


def write_figures(
    root: Path, records: Sequence[Mapping[str, Any]], protocol: Protocol
) -> list[Path]:
    """Overview heatmaps (first seed; drawing rules of :mod:`s2ssm.evaluation.figures`):

    - ``graphs__<phase>__<model>.png``: per model, the learned global graph (share of local
      graphs with each edge) of every environment above its true global graph;
    - ``graphs__<phase>__models.png``: per environment (a row), the truth beside every model's
      learned graph, the models side by side.

    Needs matplotlib. (Per-unit graph and rollout figures come from
    :mod:`s2ssm.evaluation.plots`.)"""
    plt = pyplot()
    fig_dir = root / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    seed0 = protocol.seeds[0]
    share = "share of local graphs with the edge"
    for phase in PHASES:
        by_model: dict[str, dict[str, Mapping[str, Any]]] = {}
        for model in protocol.models:
            recs = sorted(
                (
                    r
                    for r in records
                    if r.get("kind") == phase and r.get("model") == model and r.get("seed") == seed0
                ),
                key=lambda r: r["env"],
            )
            if not recs:
                continue
            by_model[model] = {r["env"]: r for r in recs}
            fig, axes = plt.subplots(
                2, len(recs), figsize=(max(6.0, 3.4 * len(recs) + 1.0), 7.0), squeeze=False
            )
            for col, rec in enumerate(recs):
                first = col == 0
                image = draw_graph(
                    axes[0][col], rec["learned_global"], f"{rec['env']}: learned", row_labels=first
                )
                draw_graph(axes[1][col], rec["true_global"], "true", row_labels=first)
            add_colorbar(fig, image, axes.ravel().tolist(), share)
            fig.suptitle(
                f"{model}: {PHASE_TITLES[phase]} (child x parent; seed {seed0}; grey: self)",
                fontsize=LABEL_SIZE + 2,
            )
            path = fig_dir / f"graphs__{phase}__{model}.png"
            save_figure(fig, path, dpi=110)
            plt.close(fig)
            written.append(path)
        if by_model:
            written.append(_models_figure(plt, fig_dir, phase, by_model, seed0, share))
    return written


def _models_figure(
    plt: Any,
    fig_dir: Path,
    phase: str,
    by_model: Mapping[str, Mapping[str, Mapping[str, Any]]],
    seed0: int,
    share: str,
) -> Path:
    """The truth beside every model's learned global graph, one row per environment."""
    models = list(by_model)
    envs = sorted({env for recs in by_model.values() for env in recs})
    fig, axes = plt.subplots(
        len(envs),
        1 + len(models),
        figsize=(3.4 * (1 + len(models)) + 1.0, 3.0 * len(envs)),
        squeeze=False,
    )
    image = None
    for row, env in enumerate(envs):
        truth = next(recs[env]["true_global"] for recs in by_model.values() if env in recs)
        image = draw_graph(axes[row][0], truth, f"{env}: true")
        for col, model in enumerate(models, start=1):
            rec = by_model[model].get(env)
            if rec is None:
                axes[row][col].set_axis_off()
                continue
            draw_graph(axes[row][col], rec["learned_global"], f"{model}", row_labels=False)
    add_colorbar(fig, image, axes.ravel().tolist(), share)
    fig.suptitle(
        f"{PHASE_TITLES[phase]}: the models' learned graphs beside the truth (seed {seed0})",
        fontsize=LABEL_SIZE + 2,
    )
    path = fig_dir / f"graphs__{phase}__models.png"
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path
