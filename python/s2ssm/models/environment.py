"""2. The environment slot: one extra slot per sequence, a learned code of its environment plus
(optionally) the intervention indicators as exogenous tokens."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from s2ssm.config import ModelConfig
from s2ssm.errors import InvalidInputError

__all__ = ["EnvironmentSlot"]


class EnvironmentSlot(nn.Module):
    """The extra slot of a sequence: a codebook row (its environment) + intervention tokens.

    Intervention indicators enter as exogenous inputs: the token at position t carries the
    indicators of the transition t -> t + 1 (``interventions[:, t + 1]``), the one the position
    predicts; the last position, which predicts nothing, gets none.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.codebook = nn.Embedding(cfg.num_env_codes, cfg.d_model)
        nn.init.normal_(self.codebook.weight, std=0.5)
        self.interventions = (
            nn.Linear(cfg.num_interventions, cfg.d_model, bias=False)
            if cfg.use_interventions
            else None
        )
        self.num_interventions = cfg.num_interventions

    def forward(
        self,
        env_ids: Tensor | None,
        batch: int,
        length: int,
        interventions: Tensor | None = None,
        env_code: Tensor | None = None,
    ) -> Tensor:
        """(B, T, d_model) environment tokens. ``env_code`` (B or 1, d_model) overrides the
        codebook (used to fit a code for a new environment)."""
        if env_code is not None:
            code = env_code.expand(batch, -1)
        else:
            if env_ids is None:
                raise InvalidInputError("env_ids is required when env_code is not given")
            if env_ids.shape != (batch,):
                raise InvalidInputError(f"env_ids must be ({batch},), got {tuple(env_ids.shape)}")
            if int(env_ids.min()) < 0 or int(env_ids.max()) >= self.codebook.num_embeddings:
                raise InvalidInputError(
                    f"env_ids must be in [0, {self.codebook.num_embeddings}), got "
                    f"{env_ids.min().item()}..{env_ids.max().item()}"
                )
            code = self.codebook(env_ids)
        tokens = code.unsqueeze(1).expand(batch, length, -1)
        if self.interventions is not None:
            if interventions is None:
                raise InvalidInputError("model.use_interventions is set: pass interventions")
            if interventions.shape != (batch, length, self.num_interventions):
                raise InvalidInputError(
                    f"interventions must be ({batch}, {length}, {self.num_interventions}), got "
                    f"{tuple(interventions.shape)}"
                )
            nxt = torch.zeros_like(interventions, dtype=tokens.dtype)
            nxt[:, :-1] = interventions[:, 1:].to(tokens.dtype)
            tokens = tokens + self.interventions(nxt)
        return tokens

    @torch.no_grad()
    def extend_codebook(self, code: Tensor) -> int:
        """Append ``code`` (d_model,) as a new codebook row; returns its id."""
        old = self.codebook.weight
        if code.shape != (old.shape[1],):
            raise InvalidInputError(f"code must be ({old.shape[1]},), got {tuple(code.shape)}")
        new = nn.Embedding(old.shape[0] + 1, old.shape[1], device=old.device, dtype=old.dtype)
        new.weight.copy_(torch.cat([old, code.to(old).unsqueeze(0)]))
        self.codebook = new
        return old.shape[0]
