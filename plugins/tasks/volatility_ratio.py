"""The ``volatility_ratio`` task: next-h realised vol relative to a causal trailing EWMA."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mtl_bt.plugins.tasks.common import number
from mtl_bt.plugins.tasks.volatility import VolatilityTask
from mtl_bt.tasks.targets import close_of, forward_realised_vol, trailing_ewma_vol

#: RiskMetrics' lambda 0.94 on daily bars as a half-life in bars (ln 0.5 / ln 0.94)
DAILY_HALF_LIFE = math.log(0.5) / math.log(0.94)
#: the anchor's window in half-lives (the weight left out beyond it is 2**-3 of the total)
WINDOW_HALF_LIVES = 3


class VolatilityRatioTask(VolatilityTask):
    """Target max(vol, floor) / anchor, vol = sqrt(mean_{i=1..h} r[t+i]^2) (the
    ``volatility`` task's target) and anchor = the trailing EWMA vol at t from r[..t]
    (``trailing_ewma_vol``: half-life ``half_life`` bars, window 3 half-lives). The
    prediction is that *ratio*, not a volatility level: multiply it by the same anchor
    (``anchor``) to get one. A level forecast can sit too high or too low for a whole
    walk-forward fold after a regime change; the ratio re-anchors every bar.

    ``half_life`` (bars, default 11.2: RiskMetrics' 0.94 on daily bars): keep it at
    11.2 days in calendar time, e.g. 269 on hourly bars. Loss and metrics as
    ``volatility`` (QLIKE on squared ratios: the anchor cancels in QLIKE, so the loss is
    the level's QLIKE with the forecast anchor x exp(o/2)).
    """

    kind = "volatility_ratio"
    headline_metric = "qlike"

    def __init__(
        self,
        horizon: int = 1,
        *,
        floor: float = 1e-4,
        loss: str = "qlike",
        half_life: float = DAILY_HALF_LIFE,
    ) -> None:
        half_life = number(f"volatility_ratio@{horizon}", "half_life", half_life)
        super().__init__(horizon, floor=floor, loss=loss)
        self.options["half_life"] = half_life
        self._half_life = half_life
        self._window = max(2, math.ceil(WINDOW_HALF_LIVES * half_life))

    @property
    def lookback(self) -> int:
        return self._window

    def anchor(self, frame: pd.DataFrame) -> pd.Series:
        """The trailing vol at every bar (bars <= t only), floored like the target."""
        vol = trailing_ewma_vol(close_of(frame, self.name), self._half_life, self._window)
        return np.maximum(vol, self._floor)

    def build_target(self, frame: pd.DataFrame) -> pd.Series:
        vol = forward_realised_vol(close_of(frame, self.name), self.horizon)
        return (np.maximum(vol, self._floor) / self.anchor(frame)).rename(self.name)
