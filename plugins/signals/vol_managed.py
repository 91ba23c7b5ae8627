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

Option ``volatility_input`` chooses s (the helper shared with ``agree_voltarget``,
``mtl_bt.plugins.signals.common``): ``"head"`` (default) the ``volatility@h`` head;
``"trailing"`` the trailing realised per-bar vol the strategy passes as ``realised_vol``
(window ``realised_vol_window``, default 20 bars); ``"ewma"`` the RiskMetrics EWMA
(lambda from the bar size, 11.2-day half-life) per-bar vol forecast from the asset's bars up to and including the decision
bar (the strategy's ``ewma_vol``; flat over the h bars, so the same per-bar quantity as the
head's forecast). ``use_volatility = false`` is ``"trailing"`` when the input is the head.
A missing head, a non-finite prediction or an EWMA in its warm-up falls back to the
trailing vol; without that either, equal weight.

Separable (``SignalRule.separable``): the strategy's precomputed mode sizes every bar
before the run and clips per bar, with the same orders as calling it bar by bar.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_bt.errors import PluginError
from mtl_bt.plugins.signals.common import check_volatility_input, sizing_vol, vol_target_size
from mtl_bt.signals.base import SignalRule, pick_horizon


class VolManaged(SignalRule):
    """Long every asset, sized target_vol / predicted vol, capped."""

    name = "vol_managed"
    separable = True  # SignalRule.weights clips raw_weights; precomputed mode vectorises it

    def __init__(
        self,
        *,
        target_vol: float = 0.2,
        horizon: int | None = None,
        use_volatility: bool = True,
        use_direction: bool = False,
        volatility_input: str = "head",
    ) -> None:
        if not target_vol > 0:
            raise PluginError(f"signal vol_managed: target_vol must be > 0, got {target_vol}")
        if use_direction:
            raise PluginError("signal vol_managed: it reads no direction head (use_direction)")
        source = check_volatility_input("vol_managed", volatility_input)
        super().__init__(
            target_vol=target_vol,
            horizon=horizon,
            use_volatility=use_volatility,
            volatility_input=source,
        )
        self.volatility_input = source
        self.context_inputs = ("ewma_vol",) if source == "ewma" else ()
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
                "volatility": vol
                if self.use_volatility and self.volatility_input == "head" and vol in fake
                else None,
            }
            self._heads[key] = cached
        return cached

    def raw_weights(
        self,
        predictions: dict[str, np.ndarray],
        *,
        periods_per_year: float | np.ndarray,
        max_weight: float = 1.0,
        max_gross_leverage: float = 1.0,
        allow_short: bool = True,
        realised_vol: np.ndarray | None = None,
        ewma_vol: np.ndarray | None = None,
        n_assets: int | None = None,
        **context: Any,
    ) -> np.ndarray:
        heads = self.heads(list(predictions))
        n = np.asarray(predictions[heads["return"]]).shape[0]
        head = None if heads["volatility"] is None else predictions[heads["volatility"]]
        vol = sizing_vol(self.volatility_input, head, realised_vol, ewma_vol, n)
        return vol_target_size(
            vol, self.target_vol, periods_per_year, max_weight, max_gross_leverage, n_assets
        )
