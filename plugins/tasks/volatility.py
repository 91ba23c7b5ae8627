"""The ``volatility`` task: realised per-bar volatility of the next h bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mtl_bt.metrics import prediction as pm
from mtl_bt.plugins.tasks.common import number
from mtl_bt.tasks.base import Task
from mtl_bt.tasks.targets import as_target, close_of, forward_realised_vol


class VolatilityTask(Task):
    """Target sqrt(mean_{i=1..h} r[t+i]^2), r the 1-bar log close return (per bar,
    not annualised). The model learns log(vol): loss MSE between the raw output
    and log(max(vol, floor)); transform exp -> vol > 0.

    ``floor`` (default 1e-4 per bar): a window with no price change has vol 0,
    whose log is -inf; it is floored so it stays a finite (low) target.
    Metrics: RMSE of log vol, QLIKE on variances, Pearson correlation of vols.
    """

    kind = "volatility"
    level = 0

    def __init__(self, horizon: int = 1, *, floor: float = 1e-4) -> None:
        floor = number(f"volatility@{horizon}", "floor", floor)
        super().__init__(horizon, floor=floor)
        self._floor = floor

    def build_target(self, frame: pd.DataFrame) -> pd.Series:
        vol = forward_realised_vol(close_of(frame, self.name), self.horizon)
        return vol.rename(self.name)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y = as_target(output, target, self.name)
        return F.mse_loss(output, torch.log(torch.clamp(y, min=self._floor)))

    def transform(self, output: torch.Tensor) -> torch.Tensor:
        return torch.exp(output)

    def transform_numpy(self, output: np.ndarray) -> np.ndarray:
        return np.exp(output)

    def initial_output(self, target: torch.Tensor) -> float:
        return float(torch.log(torch.clamp(target, min=self._floor)).mean())

    def metrics(self, prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
        p = np.maximum(np.asarray(prediction, dtype="float64"), self._floor)
        t = np.maximum(np.asarray(target, dtype="float64"), self._floor)
        return {
            "rmse_log": pm.rmse(np.log(p), np.log(t)),
            "qlike": pm.qlike(p**2, t**2),
            "corr": pm.ic(prediction, target),
        }
