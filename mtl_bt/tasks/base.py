"""The task interface: a target with a declared horizon, a loss and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch


@dataclass(frozen=True)
class TaskSpec:
    """What an architecture needs to know about a task (plain data, checkpointable)."""

    name: str  # instance name, e.g. "return@5"
    kind: str  # registered task name, e.g. "return"
    horizon: int  # bars ahead the target looks
    out_dim: int = 1
    level: int = 0  # for hierarchical models: lower levels feed higher ones
    options: dict[str, Any] = field(default_factory=dict)


class Task:
    """A prediction target.

    ``build_target(frame)`` returns a Series aligned to ``frame.index`` whose
    value at bar t uses bars t+1..t+h only (NaN where the future is unknown).
    ``loss`` takes raw model output (e.g. logits) and targets; ``transform``
    maps raw output to the user-facing prediction (e.g. probability);
    ``metrics`` scores transformed predictions against targets.
    """

    kind: str = ""
    level: int = 0
    #: the metric (a key of ``metrics()``) that summarises the task in comparisons and Δm,
    #: and whether higher is better; None leaves the task out of Δm
    headline_metric: str | None = None
    higher_is_better: bool = True

    def __init__(self, horizon: int = 1, **options: Any) -> None:
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(
                f"task {self.kind!r}: horizon must be an integer >= 1, got {horizon!r}"
            )
        self.horizon = horizon
        self.options = options

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.horizon}"

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(self.name, self.kind, self.horizon, 1, self.level, dict(self.options))

    @property
    def lookback(self) -> int:
        """Bars before t the target also uses (e.g. a trailing normaliser); the
        first ``lookback`` target rows are NaN. 0: the target uses bars t..t+h."""
        return 0

    def build_target(self, frame: pd.DataFrame) -> pd.Series:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transform(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def initial_output(self, target: torch.Tensor) -> float | None:
        """The constant raw output that minimises the loss on ``target`` (finite
        training targets). The trainer starts the task's head bias there, so a
        head whose target sits far from 0 (log-vol near -5) does not spend its
        first epochs learning a constant. None: leave the head as initialised."""
        return None

    def metrics(self, prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
        raise NotImplementedError
