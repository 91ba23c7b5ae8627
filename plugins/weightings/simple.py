"""Static weightings: every task gets a constant weight."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mtl_bt.errors import ConfigError
from mtl_bt.weighting.base import Weighting
from mtl_bt.weighting.options import parse_options


class Equal(Weighting):
    """Every task weighted 1: the plain sum of task losses. Takes no options."""

    name = "equal"

    def __init__(self, task_names: Sequence[str], **options: Any) -> None:
        parse_options(self.name, options, {})
        super().__init__(task_names)


class Fixed(Weighting):
    """User-chosen constant weights, ``weights = {task: w}`` (tasks left out get 0)."""

    name = "fixed"

    def __init__(
        self, task_names: Sequence[str], weights: Mapping[str, float] | None = None, **options: Any
    ) -> None:
        parse_options(self.name, options, {})
        super().__init__(task_names)
        if not weights or not isinstance(weights, Mapping):
            raise ConfigError(
                "weighting 'fixed' needs weights = {task = weight, ...} "
                f"(a finite number >= 0 per task; tasks are {self.task_names})"
            )
        unknown = sorted(set(weights) - set(self.task_names))
        if unknown:
            raise ConfigError(
                f"weighting 'fixed': weights name unknown task(s) {unknown}; "
                f"tasks are {self.task_names}"
            )
        for name, value in weights.items():
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigError(
                    f"weighting 'fixed': weights.{name} = {value!r} is out of range; "
                    "allowed: a finite number >= 0"
                )
        if not any(weights.values()):
            raise ConfigError("weighting 'fixed': at least one weight must be > 0")
        self._weights = {name: float(weights.get(name, 0.0)) for name in self.task_names}

    def weights(self) -> dict[str, float]:
        return dict(self._weights)
