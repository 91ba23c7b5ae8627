"""Cross-stitch networks (Misra et al. 2016): per-task MLP columns mixed after every layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtl_bt.models import MTLModel
from mtl_bt.models.layers import linears, mlp
from mtl_bt.tasks.base import TaskSpec


class CrossStitch(MTLModel):
    """Layer l: ``h_k = column_k^l(x_k)``; then ``x_i = sum_j alpha^l_ij h_j`` (K x K per layer).

    alpha starts near identity: ``alpha_self`` on the diagonal, the rest of
    each row spread evenly so rows sum to 1. Because every column feeds every
    task through the stitch units, the columns and the stitch units are shared
    parameters; only the linear heads are task-specific.
    """

    architecture = "cross_stitch"

    def __init__(
        self, in_features: int, tasks: Sequence[TaskSpec], *, alpha_self: float = 0.9, **common: Any
    ) -> None:
        super().__init__(in_features, tasks, **common)
        self.alpha_self = self._float("alpha_self", alpha_self, 0.0, 1.0, closed=True)
        k = len(self.tasks)
        widths = [self.stage_features, *self.hidden]
        self.columns = nn.ModuleDict(
            {
                t.name: nn.ModuleList(
                    mlp(widths[i], [widths[i + 1]], self.dropout) for i in range(len(self.hidden))
                )
                for t in self.tasks
            }
        )
        off = (1.0 - self.alpha_self) / (k - 1) if k > 1 else 0.0
        init = torch.full((k, k), off) + torch.eye(k) * ((self.alpha_self if k > 1 else 1.0) - off)
        self.stitches = nn.ParameterList(nn.Parameter(init.clone()) for _ in self.hidden)
        self.heads = nn.ModuleDict(
            {t.name: nn.Linear(self.hidden[-1], t.out_dim) for t in self.tasks}
        )

    def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        xs = torch.stack([h] * len(self.task_names))  # (K, batch, width)
        for layer, alpha in enumerate(self.stitches):
            hs = torch.stack([self.columns[n][layer](xs[i]) for i, n in enumerate(self.task_names)])
            xs = torch.einsum("ij,jbd->ibd", alpha, hs)
        return {n: self._out(self.heads[n](xs[i])) for i, n in enumerate(self.task_names)}

    def task_modules(self, name: str) -> list[nn.Module]:
        return [self.heads[name]]

    def last_shared_layer(self) -> list[nn.Parameter]:
        """The weight of every column's last Linear (one per task, in task order).

        Every task reads every column's last layer through the last stitch unit
        (``x_i = sum_j alpha_ij h_j``), so each task's gradient lands on all of
        these weights and their gradient norms are comparable across tasks. The
        last stitch unit itself would not do: task i's gradient only reaches its
        row i, so no two tasks would share an element of it. (With
        ``alpha_self = 1`` the units start at the identity and a task reaches
        only its own column until the off-diagonal entries move off zero.)
        """
        return [linears(self.columns[n][-1])[-1].weight for n in self.task_names]
