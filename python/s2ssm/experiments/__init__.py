"""The experiments of arXiv 2505.02074 as one resumable command (``s2ssm reproduce``).

- :mod:`~s2ssm.experiments.protocol` -- what runs: models, environments, seeds, the presets,
  each run's training config, the plan of units;
- :mod:`~s2ssm.experiments.rundir` -- a generic resumable run directory (a JSON record per
  finished unit; knows nothing about models);
- :mod:`~s2ssm.experiments.finetune` -- environment codes and fine-tuning a trained model on a
  new environment;
- :mod:`~s2ssm.experiments.phases` -- what each unit does, and :func:`run_protocol`;
- :mod:`~s2ssm.experiments.report` -- aggregation over seeds, tables, figures.

The metrics are those of :mod:`s2ssm.evaluation` (what exactly "SHD" means is spelled out
there); where the paper does not pin a detail down, the choice is ours and documented.

Run directory (``OUT``)::

    OUT/protocol.json            the protocol and base config; a rerun must match it
    OUT/units/<unit>.json        one record per finished unit of work, written atomically
    OUT/runs/vae/seed<s>/        the seed's shared VAE pre-training (protocol.shared_vae)
    OUT/runs/<model>/seed<s>/    training runs (s2ssm.training; an interrupted one resumes from
                                 its last checkpoint)
    OUT/results.json, OUT/results.md
    OUT/figures/graphs__<phase>__<model>.png    overview: learned vs true global graphs
    OUT/figures/{graphs,rollout}__<unit>.png    per evaluation of the first seed
                                                (s2ssm.evaluation.plots)

A unit whose record exists is skipped, so an interrupted reproduction continues where it
stopped.
"""

from __future__ import annotations

from s2ssm.experiments.phases import run_protocol
from s2ssm.experiments.protocol import PRESETS, Protocol, load_protocol, preset

__all__ = ["PRESETS", "Protocol", "load_protocol", "preset", "run_protocol"]
