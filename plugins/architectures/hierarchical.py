"""Hierarchical heads: lower-level task outputs feed the heads of higher-level tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mtl_bt.errors import ConfigError
from mtl_bt.models import MTLModel
from mtl_bt.models.layers import linears, mlp
from mtl_bt.tasks.base import TaskSpec

#: used when every task spec has the same level: risk tasks first, then the return forecast
DEFAULT_LEVELS = {"volatility": 0, "volume": 0, "return": 1, "direction": 1}


class Hierarchical(MTLModel):
    """``z = MLP(h)``; level-0 heads: ``Linear(z)``; a level-l head reads
    ``[z, outputs of every task below level l]`` through a one-hidden-layer MLP.

    With ``detach=True`` (default) the lower outputs enter as fixed inputs:
    each head is trained only by its own task's loss (a volatility head keeps
    predicting volatility instead of bending to help the return task). With
    ``detach=False`` gradients flow down, so lower-level heads become shared.
    Levels: ``levels`` option ({task name or kind: level}, name wins), else
    ``TaskSpec.level``; if all specs share one level, ``DEFAULT_LEVELS`` by kind.
    """

    architecture = "hierarchical"

    def __init__(
        self,
        in_features: int,
        tasks: Sequence[TaskSpec],
        *,
        levels: dict[str, int] | None = None,
        detach: bool = True,
        **common: Any,
    ) -> None:
        super().__init__(in_features, tasks, **common)
        if not isinstance(detach, bool):
            raise ConfigError(
                f"architecture 'hierarchical': option detach = {detach!r} must be true/false"
            )
        self.detach = detach
        self.level_of = self._levels(levels)
        self.order = sorted(self.task_names, key=self.level_of.__getitem__)
        self.encoder = mlp(self.stage_features, self.hidden, self.dropout)
        d = self.hidden[-1]
        spec = {t.name: t for t in self.tasks}
        self.inputs = {
            n: [m for m in self.order if self.level_of[m] < self.level_of[n]] for n in self.order
        }
        self.heads = nn.ModuleDict()
        for t in self.tasks:
            lower = sum(spec[m].out_dim for m in self.inputs[t.name])
            self.heads[t.name] = (
                nn.Linear(d, t.out_dim)
                if not lower
                else nn.Sequential(nn.Linear(d + lower, d), nn.ReLU(), nn.Linear(d, t.out_dim))
            )

    def _levels(self, levels: Mapping[str, int] | None) -> dict[str, int]:
        if levels is None:
            if len({t.level for t in self.tasks}) > 1:
                return {t.name: t.level for t in self.tasks}
            return {t.name: DEFAULT_LEVELS.get(t.kind, 0) for t in self.tasks}
        if not isinstance(levels, Mapping):
            raise ConfigError(
                f"architecture 'hierarchical': option levels = {levels!r} must be a table"
            )
        known = set(self.task_names) | {t.kind for t in self.tasks}
        unknown = sorted(set(levels) - known)
        if unknown:
            raise ConfigError(
                f"architecture 'hierarchical': levels names unknown task(s) {unknown}; "
                f"use task names {self.task_names} or kinds {sorted({t.kind for t in self.tasks})}"
            )
        out = {}
        for t in self.tasks:
            value = levels.get(t.name, levels.get(t.kind, t.level))
            out[t.name] = self._int(f"levels.{t.name}", value, 0)
        return out

    def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(h)
        raw: dict[str, torch.Tensor] = {}
        for n in self.order:
            lower = [raw[m].detach() if self.detach else raw[m] for m in self.inputs[n]]
            raw[n] = self.heads[n](torch.cat([z, *lower], dim=-1) if lower else z)
        return {n: self._out(raw[n]) for n in self.task_names}

    def task_modules(self, name: str) -> list[nn.Module]:
        feeds_higher = any(name in self.inputs[m] for m in self.task_names)
        return [] if feeds_higher and not self.detach else [self.heads[name]]

    def last_shared_layer(self) -> nn.Parameter:
        return linears(self.encoder)[-1].weight
