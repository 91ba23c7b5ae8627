"""Soft parameter sharing: one tower per task, an L2 penalty pulls the towers together."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import torch
from torch import nn

from mtl_bt.errors import ConfigError
from mtl_bt.models import MTLModel
from mtl_bt.models.layers import linears, mlp
from mtl_bt.tasks.base import TaskSpec


class SoftSharing(MTLModel):
    """``task_k = Linear_k(MLP_k(h))``; penalty ``lambda sum_{i<j,l} ||theta_i^l - theta_j^l||^2``.

    theta^l is the weight and bias of tower layer l (heads are not tied).
    Only the input stage (if it has parameters) is shared, so gradient-level
    weightings see ``shared_parameters() == []`` without one.
    """

    architecture = "soft_sharing"

    def __init__(
        self, in_features: int, tasks: Sequence[TaskSpec], *, penalty: float = 1e-3, **common: Any
    ) -> None:
        super().__init__(in_features, tasks, **common)
        self.penalty = self._float("penalty", penalty, 0.0)
        self.towers = nn.ModuleDict(
            {t.name: mlp(self.stage_features, self.hidden, self.dropout) for t in self.tasks}
        )
        self.heads = nn.ModuleDict(
            {t.name: nn.Linear(self.hidden[-1], t.out_dim) for t in self.tasks}
        )

    def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: self._out(self.heads[n](self.towers[n](h))) for n in self.task_names}

    def task_modules(self, name: str) -> list[nn.Module]:
        return [self.towers[name], self.heads[name]]

    def regularization(self) -> torch.Tensor | None:
        if self.penalty == 0.0 or len(self.task_names) < 2:
            return None
        towers = [linears(self.towers[n]) for n in self.task_names]
        total = torch.zeros(())
        for a, b in combinations(towers, 2):
            for la, lb in zip(a, b, strict=True):
                total = (
                    total + (la.weight - lb.weight).pow(2).sum() + (la.bias - lb.bias).pow(2).sum()
                )
        return self.penalty * total

    def last_shared_layer(self) -> nn.Parameter:
        weight = self.input_stage.last_layer()
        if weight is None:
            raise ConfigError(
                "architecture 'soft_sharing' has no shared layer (each task has its own tower), "
                "so gradient-norm weightings such as GradNorm cannot run on it; use a loss-level "
                "weighting, or enable a shared input stage (model.sequence.encoder / "
                "model.asset_embedding)"
            )
        return weight
