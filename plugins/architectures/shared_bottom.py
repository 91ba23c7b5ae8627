"""Shared-bottom (hard parameter sharing): one MLP encoder, one linear head per task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtl_bt.models import MTLModel
from mtl_bt.models.layers import linears, mlp
from mtl_bt.tasks.base import TaskSpec


class SharedBottom(MTLModel):
    """``h -> MLP(hidden, norm) -> z``; ``task_k = Linear_k(z)``.

    ``norm="batch"`` uses ``SafeBatchNorm1d``: running statistics in eval,
    and a training batch of one row is normalised with them too.
    """

    architecture = "shared_bottom"

    def __init__(
        self, in_features: int, tasks: Sequence[TaskSpec], *, norm: str = "layer", **common: Any
    ) -> None:
        super().__init__(in_features, tasks, **common)
        self.norm = self._choice("norm", norm, ("layer", "batch", "none"))
        self.encoder = mlp(self.stage_features, self.hidden, self.dropout, self.norm)
        self.heads = nn.ModuleDict(
            {t.name: nn.Linear(self.hidden[-1], t.out_dim) for t in self.tasks}
        )

    def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(h)
        return {name: self._out(head(z)) for name, head in self.heads.items()}

    def task_modules(self, name: str) -> list[nn.Module]:
        return [self.heads[name]]

    def last_shared_layer(self) -> nn.Parameter:
        return linears(self.encoder)[-1].weight
