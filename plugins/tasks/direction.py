"""The ``direction`` task: is the forward h-bar log return > 0?"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mtl_bt.metrics import prediction as pm
from mtl_bt.tasks.base import Task
from mtl_bt.tasks.targets import as_target, close_of, forward_log_return


class DirectionTask(Task):
    """Target 1.0 if log(close[t+h]/close[t]) > 0 else 0.0 (an unchanged price is 0);
    NaN when unknown. The model outputs a logit; loss ``BCEWithLogitsLoss``
    (numerically stable, unlike sigmoid then BCE); transform sigmoid -> P(up).
    Metrics: accuracy (P > 0.5), AUC, base rate, log loss.
    """

    kind = "direction"
    level = 1
    headline_metric = "auc"

    def __init__(self, horizon: int = 1) -> None:
        super().__init__(horizon)

    def build_target(self, frame: pd.DataFrame) -> pd.Series:
        fwd = forward_log_return(close_of(frame, self.name), self.horizon)
        up = (fwd > 0).astype("float64").where(fwd.notna())
        return up.rename(self.name)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, as_target(output, target, self.name))

    def transform(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)

    def initial_output(self, target: torch.Tensor) -> float:
        p = float(target.double().mean().clamp(1e-3, 1 - 1e-3))
        return math.log(p / (1 - p))

    def metrics(self, prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
        return {
            "accuracy": pm.accuracy(prediction, target),
            "auc": pm.auc(prediction, target),
            "base_rate": pm.base_rate(np.asarray(target)[np.isfinite(np.asarray(prediction))]),
            "log_loss": pm.log_loss(prediction, target),
        }
