"""Scoring a trained world model, always beside the trivial answers.

- :mod:`~s2ssm.evaluation.metrics` -- per environment: next-slot and rollout MSE beside the
  copy baseline and the noise floor, local and global SHD beside the empty and complete graph;
- :mod:`~s2ssm.evaluation.noise_floor` -- the irreducible next-slot error of a slot space;
- :mod:`~s2ssm.evaluation.occlusion` -- prediction and graphs while an occluder hides the ball;
- :mod:`~s2ssm.evaluation.plots` -- learned vs true graph heatmaps, rollout strips (matplotlib).
"""
