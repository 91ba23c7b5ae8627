"""Dynamic Weight Average (Liu, Johns & Davison, "End-to-End Multi-Task Learning
with Attention", CVPR 2019)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from mtl_bt.weighting.base import Weighting
from mtl_bt.weighting.options import parse_options, real


class DWA(Weighting):
    """``lambda = K softmax(w / T)`` with ``w_k = L_k(t-1) / L_k(t-2)`` on epoch-mean losses.

    Uniform (all 1) until two epochs have been recorded, i.e. for epochs 0 and 1.
    The weights for epoch t are fixed at ``on_epoch_start(t)`` from the means the
    trainer passed to ``on_epoch_end`` of the two previous epochs. A ratio that
    cannot be formed (a zero or non-finite mean) counts as 1 (no change).
    """

    name = "dwa"
    SPEC = {"temperature": real(2.0, 0.0, lo_open=True)}

    def __init__(self, task_names: Sequence[str], **options: Any) -> None:
        opts = parse_options(self.name, options, self.SPEC)
        super().__init__(task_names)
        self.temperature = opts["temperature"]
        self.reset()

    def reset(self) -> None:
        self.history: list[list[float]] = []
        self._weights = [1.0] * self.k

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._weights, strict=True))

    def on_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        self.history.append([float(mean_losses[n]) for n in self.task_names])

    def on_epoch_start(self, epoch: int) -> None:
        if epoch < 2 or len(self.history) < 2:
            self._weights = [1.0] * self.k
            return
        prev, prev2 = self.history[-1], self.history[-2]
        ratios = []
        for a, b in zip(prev, prev2, strict=True):
            r = a / b if b != 0 and math.isfinite(a) and math.isfinite(b) else 1.0
            ratios.append(r if math.isfinite(r) else 1.0)
        w = torch.tensor(ratios, dtype=torch.float64) / self.temperature
        self._weights = (self.k * torch.softmax(w, dim=0)).tolist()
