"""The architecture interface: shared parameters + one head per task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtl_bt.tasks.base import TaskSpec


class MTLModel(nn.Module):
    """Base class of every architecture plugin.

    Built as ``cls(in_features, tasks, **options)``; ``forward(x, asset=None)``
    returns ``{task_name: raw_output}`` with shape ``(batch,)`` per task. ``x``
    is ``(batch, features)`` or ``(batch, lookback, features)`` with a sequence
    encoder; ``asset`` holds integer asset ids when an asset embedding is used. Gradient-level
    weightings need the shared parameters apart from the task-specific ones.
    """

    def __init__(self, in_features: int, tasks: Sequence[TaskSpec], **options: Any) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, got {in_features}")
        if not tasks:
            raise ValueError("a model needs at least one task")
        self.in_features = in_features
        self.tasks = list(tasks)
        self.task_names = [t.name for t in self.tasks]

    def forward(
        self, x: torch.Tensor, asset: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss reaches."""
        raise NotImplementedError

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        """Parameters only task ``name``'s loss reaches."""
        raise NotImplementedError

    def last_shared_layer(self) -> nn.Parameter:
        """Weight of the last shared layer (GradNorm measures gradient norms here)."""
        raise NotImplementedError

    def regularization(self) -> torch.Tensor | None:
        """Extra loss term the architecture adds (e.g. soft-sharing penalty), or None."""
        return None
