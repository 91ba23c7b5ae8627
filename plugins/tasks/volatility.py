"""The ``volatility`` task: realised per-bar volatility of the next h bars, calibrated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mtl_bt.metrics import prediction as pm
from mtl_bt.plugins.tasks.common import choice, number
from mtl_bt.tasks.base import Task
from mtl_bt.tasks.targets import as_target, close_of, forward_realised_vol

#: raw outputs are clamped to this range inside exp() (a runaway head cannot overflow)
_LOG_RANGE = (-40.0, 20.0)


class VolatilityTask(Task):
    """Target sqrt(mean_{i=1..h} r[t+i]^2), r the 1-bar log close return (per bar,
    not annualised).

    ``loss = "qlike"`` (default): the raw output is log variance, the loss is
    QLIKE(y^2, exp(o)) = y^2/exp(o) - log(y^2/exp(o)) - 1 (Patton 2011), minimised by the
    conditional *mean* of the realised variance; the transform returns exp(o/2), so the RMS
    of the predictions matches the RMS of realised volatility (a calibrated level: a
    vol-targeted position is sized right on average). ``loss = "log_mse"``: the raw output
    is log vol fitted by MSE, which estimates the conditional *median* of log vol and
    under-predicts the RMS (at h = 1 by a factor ~0.53 for Gaussian returns); kept for
    comparison only.

    ``floor`` (default 1e-4 per bar): a window with no price change has vol 0; it is
    floored so it stays a finite (low) target.
    Metrics: RMSE of log vol, QLIKE on variances, Pearson correlation of vols, and the
    calibration ratio RMS(realised) / RMS(predicted) (1 is calibrated; > 1 under-predicts).
    """

    kind = "volatility"
    level = 0
    headline_metric = "qlike"
    higher_is_better = False

    def __init__(self, horizon: int = 1, *, floor: float = 1e-4, loss: str = "qlike") -> None:
        name = f"volatility@{horizon}"
        floor = number(name, "floor", floor)
        loss = choice(name, "loss", loss, ("qlike", "log_mse"))
        super().__init__(horizon, floor=floor, loss=loss)
        self._floor = floor
        self._loss = loss

    def build_target(self, frame: pd.DataFrame) -> pd.Series:
        vol = forward_realised_vol(close_of(frame, self.name), self.horizon)
        return vol.rename(self.name)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y = torch.clamp(as_target(output, target, self.name), min=self._floor)
        if self._loss == "log_mse":
            return F.mse_loss(output, torch.log(y))
        log_ratio = 2.0 * torch.log(y) - output.clamp(*_LOG_RANGE)  # log(y^2 / h)
        return (torch.exp(log_ratio) - log_ratio - 1.0).mean()

    def transform(self, output: torch.Tensor) -> torch.Tensor:
        if self._loss == "log_mse":
            return torch.exp(output)
        return torch.exp(0.5 * output.clamp(*_LOG_RANGE))

    def initial_output(self, target: torch.Tensor) -> float:
        y = torch.clamp(target.double(), min=self._floor)
        if self._loss == "log_mse":
            return float(torch.log(y).mean())
        return float(torch.log((y**2).mean()))

    def metrics(self, prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
        p = np.maximum(np.asarray(prediction, dtype="float64"), self._floor)
        t = np.maximum(np.asarray(target, dtype="float64"), self._floor)
        return {
            "rmse_log": pm.rmse(np.log(p), np.log(t)),
            "qlike": pm.qlike(p**2, t**2),
            "corr": pm.ic(prediction, target),
            "calibration": pm.rms_ratio(t, p),
        }
