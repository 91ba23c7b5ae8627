"""Volatility-managed long book (Moreira & Muir 2017, "Volatility-Managed Portfolios").

Per asset, with s the predicted per-bar volatility (the ``volatility@h`` head, h the
trading horizon: option ``horizon``, default the smallest return horizon) and P the
periods per year:

    weight = min(max_weight, target_vol / (s * sqrt(P)))        (always long)

then all weights are scaled down together when their gross sum exceeds
``max_gross_leverage``. It uses no return or direction head's *sign*: only the volatility
forecast moves the position, so its Sharpe against the same rule fed another forecast
(the single-task volatility model, a trailing realised vol) answers whether a volatility
forecast pays in trading. The rebalancing band is the strategy's no-trade band
``backtest.min_trade_weight``: a weight that moves less than it is not traded.

``use_volatility = false`` (or no ``volatility@h`` head / a non-finite prediction) sizes
with the trailing realised per-bar vol the strategy passes as ``realised_vol`` (window
``realised_vol_window``, default 20 bars) instead; without that either, equal weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_bt.errors import PluginError
from mtl_bt.plugins.signals.common import cap_weights
from mtl_bt.signals.base import SignalRule, pick_horizon


class VolManaged(SignalRule):
    """Long every asset, sized target_vol / predicted vol, capped."""

    name = "vol_managed"

    def __init__(
        self,
        *,
        target_vol: float = 0.2,
        horizon: int | None = None,
        use_volatility: bool = True,
        use_direction: bool = False,
    ) -> None:
        if not target_vol > 0:
            raise PluginError(f"signal vol_managed: target_vol must be > 0, got {target_vol}")
        if use_direction:
            raise PluginError("signal vol_managed: it reads no direction head (use_direction)")
        super().__init__(target_vol=target_vol, horizon=horizon, use_volatility=use_volatility)
        self.target_vol = float(target_vol)
        self.horizon = horizon
        self.use_volatility = use_volatility
        self._heads: dict[tuple[str, ...], dict[str, str | None]] = {}

    def heads(self, task_names: list[str]) -> dict[str, str | None]:
        """The return head fixes the horizon (and must exist); the volatility head sizes."""
        key = tuple(task_names)
        cached = self._heads.get(key)
        if cached is None:
            fake = dict.fromkeys(task_names)
            h = pick_horizon(fake, self.horizon, self.name)
            vol = f"volatility@{h}"
            cached = {
                "return": f"return@{h}",
                "direction": None,
                "volatility": vol if self.use_volatility and vol in fake else None,
            }
            self._heads[key] = cached
        return cached

    def weights(
        self,
        predictions: dict[str, np.ndarray],
        *,
        periods_per_year: float | np.ndarray,
        max_weight: float = 1.0,
        max_gross_leverage: float = 1.0,
        allow_short: bool = True,
        realised_vol: np.ndarray | None = None,
        n_assets: int | None = None,
        **context: Any,
    ) -> np.ndarray:
        heads = self.heads(list(predictions))
        n = np.asarray(predictions[heads["return"]]).shape[0]
        if heads["volatility"] is not None:
            vol = np.asarray(predictions[heads["volatility"]], dtype=np.float64)
            if realised_vol is not None:
                vol = np.where(vol > 0, vol, realised_vol)  # NaN > 0 is False
        elif realised_vol is not None:
            vol = np.asarray(realised_vol, dtype=np.float64)
        else:
            vol = np.full(n, np.nan)
        equal = min(max_weight, max_gross_leverage / max(1, n_assets or n))
        with np.errstate(invalid="ignore", divide="ignore"):
            size = np.minimum(self.target_vol / (vol * np.sqrt(periods_per_year)), max_weight)
        size = np.where(vol > 0, size, equal)
        return cap_weights(size, max_weight, max_gross_leverage, allow_short)
