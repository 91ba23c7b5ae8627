"""Multi-gate mixture of experts (Ma et al. 2018): shared experts, one softmax gate per task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtl_bt.models import MTLModel
from mtl_bt.models.layers import Experts, Gate
from mtl_bt.tasks.base import TaskSpec


class MMoE(MTLModel):
    """``e = [expert_1(h) .. expert_n(h)]``; ``task_k = Linear_k(softmax(G_k h) . e)``.

    Experts are shared; each task's gate and head are its own.
    """

    architecture = "mmoe"

    def __init__(
        self,
        in_features: int,
        tasks: Sequence[TaskSpec],
        *,
        n_experts: int = 4,
        expert_hidden: list[int] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(in_features, tasks, **common)
        n = self._int("n_experts", n_experts, 1)
        widths = (
            self.hidden if expert_hidden is None else self._list("expert_hidden", expert_hidden)
        )
        widths = [self._int("expert_hidden", w, 1) for w in widths]
        self.experts = Experts(n, self.stage_features, widths, self.dropout)
        self.gates = nn.ModuleDict({t.name: Gate(self.stage_features, n) for t in self.tasks})
        self.heads = nn.ModuleDict(
            {t.name: nn.Linear(self.experts.out_features, t.out_dim) for t in self.tasks}
        )

    def gate_weights(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each task's expert weights ``(batch, n_experts)`` for input-stage output ``h``."""
        return {n: gate.weights(h) for n, gate in self.gates.items()}

    def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.experts(h)
        return {n: self._out(self.heads[n](self.gates[n](h, e))) for n in self.task_names}

    def task_modules(self, name: str) -> list[nn.Module]:
        return [self.gates[name], self.heads[name]]

    def last_shared_layer(self) -> nn.Parameter:
        """All experts' last layer, one ``(n_experts, in, out)`` tensor."""
        return self.experts.layers[-1].weight
