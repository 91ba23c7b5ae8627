"""Default signal rule: trade when the return and direction heads agree, size by target vol.

Per asset, with h the trading horizon (option ``horizon``, default the smallest
return horizon), r = return@h (expected log return over h bars), p =
direction@h (probability of an up move), s = volatility@h (per-bar vol):

    trade  iff  sign(r) == sign(2p - 1) != 0   and   |r| > threshold
    weight  =  sign(r) * min(max_weight, target_vol / (s * sqrt(periods_per_year)))

then all weights are scaled down together when their gross sum exceeds
``max_gross_leverage``. Combining the heads by sign agreement (not by the
product r * (2p - 1)) means two bearish heads never produce a long.
``threshold`` defaults to the round-trip cost ``2 * (commission + slippage)``.

Option ``volatility_input`` chooses s: ``"head"`` (default) the model's volatility@h
head; ``"trailing"`` the trailing realised per-bar vol the strategy passes as
``realised_vol`` (window ``realised_vol_window``, 20 bars); ``"ewma"`` the RiskMetrics
EWMA (lambda 0.94) per-bar vol forecast from the asset's bars up to and including the
decision bar (the strategy's ``ewma_vol``; flat over the h bars, so the same per-bar
quantity as the head's forecast; the forecast scored as ``qlike_ewma``).
``use_volatility = false`` turns the head off (= ``"trailing"`` when the input is the
head; the other inputs read no head).

Fallbacks, so the same rule drives a single-task baseline:
- no direction@h head: trade on sign(r) and the threshold alone;
- no volatility@h head (or a non-finite prediction; or an EWMA still in its 20-bar
  warm-up): size with the trailing realised per-bar vol; if that is missing too, equal
  weight ``min(max_weight, max_gross_leverage / n_assets)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_bt.errors import PluginError
from mtl_bt.plugins.signals.common import check_volatility_input, sizing_vol, vol_target_size
from mtl_bt.signals.base import SignalRule, pick_horizon


class AgreeVolTarget(SignalRule):
    """Sign-agreement entry, volatility-targeted size, flat otherwise."""

    name = "agree_voltarget"
    separable = True  # SignalRule.weights clips raw_weights; precomputed mode vectorises it

    def __init__(
        self,
        *,
        target_vol: float = 0.2,
        threshold: float | None = None,
        horizon: int | None = None,
        use_direction: bool = True,
        use_volatility: bool = True,
        volatility_input: str = "head",
    ) -> None:
        if not target_vol > 0:
            raise PluginError(f"signal agree_voltarget: target_vol must be > 0, got {target_vol}")
        if threshold is not None and threshold < 0:
            raise PluginError(f"signal agree_voltarget: threshold must be >= 0, got {threshold}")
        source = check_volatility_input("agree_voltarget", volatility_input)
        super().__init__(
            target_vol=target_vol,
            threshold=threshold,
            horizon=horizon,
            use_direction=use_direction,
            use_volatility=use_volatility,
            volatility_input=source,
        )
        self.volatility_input = source
        self.context_inputs = ("ewma_vol",) if source == "ewma" else ()
        self.target_vol = float(target_vol)
        self.threshold = threshold
        self.horizon = horizon
        self.use_direction = use_direction
        self.use_volatility = use_volatility
        self._heads: dict[tuple[str, ...], dict[str, str | None]] = {}

    def heads(self, task_names: list[str]) -> dict[str, str | None]:
        """Which tasks feed the rule (cached: called every bar)."""
        key = tuple(task_names)
        cached = self._heads.get(key)
        if cached is not None:
            return cached
        fake = {name: np.empty(0) for name in task_names}
        h = pick_horizon(fake, self.horizon, self.name)
        direction, volatility = f"direction@{h}", f"volatility@{h}"
        cached = {
            "return": f"return@{h}",
            "direction": direction if self.use_direction and direction in fake else None,
            "volatility": volatility
            if self.use_volatility and self.volatility_input == "head" and volatility in fake
            else None,
        }
        self._heads[key] = cached
        return cached

    def raw_weights(
        self,
        predictions: dict[str, np.ndarray],
        *,
        periods_per_year: float | np.ndarray,
        commission: float = 0.0,
        slippage: float = 0.0,
        max_weight: float = 1.0,
        max_gross_leverage: float = 1.0,
        allow_short: bool = True,
        realised_vol: np.ndarray | None = None,
        ewma_vol: np.ndarray | None = None,
        n_assets: int | None = None,
        **context: Any,
    ) -> np.ndarray:
        heads = self.heads(list(predictions))
        r = np.asarray(predictions[heads["return"]], dtype=np.float64)
        n = r.shape[0]
        threshold = 2.0 * (commission + slippage) if self.threshold is None else self.threshold
        side = np.sign(r)
        if heads["direction"] is not None:
            up = np.asarray(predictions[heads["direction"]], dtype=np.float64) * 2.0 - 1.0
            side *= np.sign(up) == side
        side *= np.abs(r) > threshold  # a NaN r leaves NaN here; cap_weights zeroes it

        head = None if heads["volatility"] is None else predictions[heads["volatility"]]
        vol = sizing_vol(self.volatility_input, head, realised_vol, ewma_vol, n)
        size = vol_target_size(
            vol, self.target_vol, periods_per_year, max_weight, max_gross_leverage, n_assets
        )
        return side * size
