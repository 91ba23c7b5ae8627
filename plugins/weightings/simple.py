"""Static weightings: every task gets a constant weight."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from mtl_bt.errors import ConfigError
from mtl_bt.weighting.base import Weighting


class Equal(Weighting):
    """Every task weighted 1: the plain sum of task losses."""


class Fixed(Weighting):
    """User-chosen constant weights, ``weights = {task: w}`` (tasks left out get 0)."""

    def __init__(self, task_names: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(task_names)
        if not weights:
            raise ConfigError("weighting 'fixed' needs weights = {task = weight, ...}")
        unknown = sorted(set(weights) - set(self.task_names))
        if unknown:
            raise ConfigError(
                f"weighting 'fixed': weights name unknown task(s) {unknown}; "
                f"tasks are {self.task_names}"
            )
        for name, value in weights.items():
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(
                    f"weighting 'fixed': weights.{name} = {value!r} must be a finite number >= 0"
                )
        if not any(weights.values()):
            raise ConfigError("weighting 'fixed': at least one weight must be > 0")
        self._weights = {name: float(weights.get(name, 0.0)) for name in self.task_names}

    def weights(self) -> dict[str, float]:
        return dict(self._weights)
