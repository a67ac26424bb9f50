"""Training a world model: the data it learns from, the training loop, its checkpoints.

- :mod:`~s2ssm.training.data` -- sequences drawn from the simulator (deterministic per
  environment, seed and index; DDP shards; batches as a function of seed, step and rank);
- :mod:`~s2ssm.training.trainer` -- :func:`~s2ssm.training.trainer.train`: VAE pre-training,
  then the dynamics with the path penalty and the λ schedule; exact resume, DDP;
- :mod:`~s2ssm.training.checkpoint` -- safetensors weights + config, trainer state, atomic.

The settings are :class:`s2ssm.config.Config`; the model is :mod:`s2ssm.models`.
"""
