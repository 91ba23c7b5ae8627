"""The ``volume`` task: next-h mean volume relative to its trailing mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mtl_bt.errors import DataError
from mtl_bt.metrics import prediction as pm
from mtl_bt.plugins.tasks.common import integer
from mtl_bt.tasks.base import Task
from mtl_bt.tasks.targets import as_target, forward_mean, symbol_of, trailing_mean

#: the volume ratio is clipped to [1/RATIO_CAP, RATIO_CAP] (zero-volume windows)
RATIO_CAP = 1e3


class VolumeTask(Task):
    """Target log(mean(volume[t+1..t+h]) / mean(volume[t-w+1..t])), w = ``window``
    (default 20); loss MSE; metrics IC, rank IC, RMSE.

    Real volume only: missing (NaN), all-zero or constant volume is refused --
    a constant target has zero loss, so uncertainty weighting drives that
    task's weight to infinity. The first w-1 rows are NaN too (no full trailing
    window). A zero-volume window is clipped to a ratio of 1e-3 (or 1e3).
    """

    kind = "volume"
    level = 0
    headline_metric = "ic"

    def __init__(self, horizon: int = 1, *, window: int = 20) -> None:
        window = integer(f"volume@{horizon}", "window", window)
        super().__init__(horizon, window=window)
        self._window = window

    @property
    def lookback(self) -> int:
        return self._window - 1

    def _volume(self, frame: pd.DataFrame) -> pd.Series:
        symbol = symbol_of(frame)
        fix = (
            "a constant or missing volume target makes uncertainty weighting blow that task's "
            f"weight up. Remove the volume task ({self.name}) from [[tasks]] (and the volume "
            "features from features.names), or use a source with real volume"
        )
        if "volume" not in frame.columns:
            raise DataError(f"{symbol}: no volume column for task {self.name}: {fix}")
        volume = frame["volume"].astype("float64")
        bad = ~np.isfinite(volume.to_numpy())
        if bad.any():
            first = frame.index[int(np.argmax(bad))]
            raise DataError(
                f"{symbol}: volume is missing (NaN/inf) in {int(bad.sum())} of {len(volume)} "
                f"bars (first at {first}); task {self.name} needs real volume: {fix}"
            )
        if (volume < 0).any():
            first = frame.index[int(np.argmax((volume < 0).to_numpy()))]
            raise DataError(f"{symbol}: negative volume at {first}; fix the data")
        if len(volume) > 1 and volume.nunique() <= 1:
            what = "zero" if volume.iloc[0] == 0 else f"constant ({float(volume.iloc[0]):g})"
            raise DataError(f"{symbol}: volume is {what} in every bar; task {self.name}: {fix}")
        return volume

    def build_target(self, frame: pd.DataFrame) -> pd.Series:
        volume = self._volume(frame)
        fwd = forward_mean(volume, self.horizon)
        trail = trailing_mean(volume, self._window)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = fwd / trail
        # 0/0 (no volume before or after): no change; x/0 and 0/x: clipped
        ratio = ratio.where(~((fwd == 0) & (trail == 0)), 1.0)
        ratio = ratio.clip(lower=1.0 / RATIO_CAP, upper=RATIO_CAP)
        target = np.log(ratio)
        finite = target[np.isfinite(target)]
        if len(finite) > 1 and float(finite.std()) < 1e-12:
            raise DataError(
                f"{symbol_of(frame)}: the {self.name} target is constant "
                f"({float(finite.iloc[0]):.3g}) over {len(finite)} bars, which makes uncertainty "
                f"weighting blow its weight up; remove the volume task ({self.name}) from [[tasks]]"
            )
        return target.rename(self.name)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, as_target(output, target, self.name))

    def initial_output(self, target: torch.Tensor) -> float:
        return float(target.double().mean())

    def metrics(self, prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
        return {
            "ic": pm.ic(prediction, target),
            "rank_ic": pm.rank_ic(prediction, target),
            "rmse": pm.rmse(prediction, target),
        }
