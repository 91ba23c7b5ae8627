"""Progressive layered extraction (Tang et al. 2020): task and shared experts, level by level."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtl_bt.models import MTLModel
from mtl_bt.models.layers import Experts, Gate
from mtl_bt.tasks.base import TaskSpec


class PLE(MTLModel):
    """Each level: task-k experts and shared experts; task-k gate mixes [task-k + shared]
    experts into task k's next input; below the last level a shared gate mixes all experts
    into the next shared input. Level l has width ``hidden[l]`` (last width repeated).

    Which parameters only task k's loss reaches: its experts at the last level, its gates at
    the last two levels, its head. Lower-level task experts feed the shared gate, so every
    task reaches them: they are shared parameters, like the shared experts and gates.
    """

    architecture = "ple"

    def __init__(
        self,
        in_features: int,
        tasks: Sequence[TaskSpec],
        *,
        levels: int = 2,
        n_shared_experts: int = 2,
        n_task_experts: int = 1,
        **common: Any,
    ) -> None:
        super().__init__(in_features, tasks, **common)
        n_levels = self._int("levels", levels, 1)
        n_shared = self._int("n_shared_experts", n_shared_experts, 1)
        n_task = self._int("n_task_experts", n_task_experts, 1)
        d_in = self.stage_features
        self.levels = nn.ModuleList()
        for lvl in range(n_levels):
            width = self.hidden[min(lvl, len(self.hidden) - 1)]
            level = nn.ModuleDict(
                {
                    "shared": Experts(n_shared, d_in, [width], self.dropout),
                    "task": nn.ModuleDict(
                        {t.name: Experts(n_task, d_in, [width], self.dropout) for t in self.tasks}
                    ),
                    "gate": nn.ModuleDict(
                        {t.name: Gate(d_in, n_task + n_shared) for t in self.tasks}
                    ),
                }
            )
            if lvl < n_levels - 1:
                level["shared_gate"] = Gate(d_in, n_task * len(self.tasks) + n_shared)
            self.levels.append(level)
            d_in = width
        self.heads = nn.ModuleDict({t.name: nn.Linear(d_in, t.out_dim) for t in self.tasks})

    def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        xs = dict.fromkeys(self.task_names, h)
        shared_x = h
        for level in self.levels:
            shared = level["shared"](shared_x)  # (batch, n_shared, width)
            own = {n: level["task"][n](xs[n]) for n in self.task_names}
            if "shared_gate" in level:
                shared_x = level["shared_gate"](shared_x, torch.cat([*own.values(), shared], dim=1))
            xs = {
                n: level["gate"][n](xs[n], torch.cat([own[n], shared], dim=1))
                for n in self.task_names
            }
        return {n: self._out(self.heads[n](xs[n])) for n in self.task_names}

    def task_modules(self, name: str) -> list[nn.Module]:
        last = len(self.levels) - 1
        modules: list[nn.Module] = [self.heads[name]]
        for lvl, level in enumerate(self.levels):
            if lvl == last:
                modules.append(level["task"][name])
            if lvl >= last - 1:
                modules.append(level["gate"][name])
        return modules

    def last_shared_layer(self) -> nn.Parameter:
        """The last level's shared experts (every task's gate reads them)."""
        return self.levels[-1]["shared"].layers[-1].weight
