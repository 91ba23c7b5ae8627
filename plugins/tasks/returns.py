"""The ``return`` task: forward log return over h bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mtl_bt.metrics import prediction as pm
from mtl_bt.plugins.tasks.common import choice, number
from mtl_bt.tasks.base import Task
from mtl_bt.tasks.targets import as_target, close_of, forward_log_return


class ReturnTask(Task):
    """Target log(close[t+h] / close[t]); loss MSE or Huber; metrics IC, rank IC, RMSE.

    ``scale`` (default 1): the model's raw output is in units of target/scale
    (loss on target/scale, transform multiplies back), so a small-valued target
    such as hourly returns (~0.005) can be learned at O(1) magnitude. ``delta``
    (Huber) is in those scaled units.
    """

    kind = "return"
    level = 1
    headline_metric = "rank_ic"

    def __init__(
        self, horizon: int = 1, *, loss: str = "mse", delta: float = 1.0, scale: float = 1.0
    ) -> None:
        name = f"return@{horizon}"
        loss = choice(name, "loss", loss, ("mse", "huber"))
        delta = number(name, "delta", delta)
        scale = number(name, "scale", scale)
        super().__init__(horizon, loss=loss, delta=delta, scale=scale)
        self._loss, self._delta, self._scale = loss, delta, scale

    def build_target(self, frame: pd.DataFrame) -> pd.Series:
        target = forward_log_return(close_of(frame, self.name), self.horizon)
        return target.rename(self.name)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y = as_target(output, target, self.name) / self._scale
        if self._loss == "huber":
            return F.huber_loss(output, y, delta=self._delta)
        return F.mse_loss(output, y)

    def transform(self, output: torch.Tensor) -> torch.Tensor:
        return output * self._scale

    def initial_output(self, target: torch.Tensor) -> float | None:
        if self._loss != "mse":
            return None  # the Huber minimiser is not the mean; keep the default start
        return float(target.double().mean()) / self._scale

    def metrics(self, prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
        return {
            "ic": pm.ic(prediction, target),
            "rank_ic": pm.rank_ic(prediction, target),
            "rmse": pm.rmse(prediction, target),
        }
