"""The loss-weighting interface, shared by loss-level and gradient-level methods."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtl_bt.models.base import MTLModel


class Weighting:
    """Turns per-task losses into one update.

    The trainer calls, per step, ``backward(losses, model)``: it must leave
    ``.grad`` set on every trainable parameter (and on its own learnable
    parameters) and return the combined loss (detached) for logging.
    Loss-level methods only override ``combine``.
    """

    def __init__(self, task_names: Sequence[str], **options: Any) -> None:
        if not task_names:
            raise ValueError("weighting needs at least one task")
        self.task_names = list(task_names)
        self.options = options

    @property
    def k(self) -> int:
        return len(self.task_names)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Learnable parameters of the method (optimised with the model's)."""
        return []

    def reset(self) -> None:
        """Back to the initial state; called at the start of every walk-forward fold."""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook before epoch ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        """Hook after epoch ``epoch`` with the epoch-mean training loss per task."""

    def weights(self) -> dict[str, float]:
        """Current (or effective) task weights, for train_log.csv."""
        return {name: 1.0 for name in self.task_names}

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        w = self.weights()
        return sum(w[name] * losses[name] for name in self.task_names)

    def backward(self, losses: dict[str, torch.Tensor], model: MTLModel) -> torch.Tensor:
        total = self.combine(losses)
        total.backward()
        return total.detach()
