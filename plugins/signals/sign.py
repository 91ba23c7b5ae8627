"""Simplest rule: long/short by the sign of the return head, equal weight.

weight = sign(r) * min(max_weight, max_gross_leverage / n_assets) when
|r| > threshold (default the round-trip cost 2 * (commission + slippage)), else 0.
Uses return@h only (h = option ``horizon``, default the smallest return horizon).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_bt.signals.base import SignalRule, pick_horizon


class SignRule(SignalRule):
    name = "sign"
    separable = True  # SignalRule.weights clips raw_weights; precomputed mode vectorises it

    def __init__(self, *, threshold: float | None = None, horizon: int | None = None) -> None:
        super().__init__(threshold=threshold, horizon=horizon)
        self.threshold = threshold
        self.horizon = horizon

    def heads(self, task_names: list[str]) -> dict[str, str | None]:
        h = pick_horizon({n: np.empty(0) for n in task_names}, self.horizon, self.name)
        return {"return": f"return@{h}", "direction": None, "volatility": None}

    def raw_weights(
        self,
        predictions: dict[str, np.ndarray],
        *,
        commission: float = 0.0,
        slippage: float = 0.0,
        max_weight: float = 1.0,
        max_gross_leverage: float = 1.0,
        allow_short: bool = True,
        n_assets: int | None = None,
        **context: Any,
    ) -> np.ndarray:
        r = np.asarray(predictions[self.heads(list(predictions))["return"]], dtype=np.float64)
        threshold = 2.0 * (commission + slippage) if self.threshold is None else self.threshold
        side = np.where(np.abs(r) > threshold, np.sign(r), 0.0)
        equal = min(max_weight, max_gross_leverage / max(1, n_assets or r.shape[0]))
        return np.nan_to_num(side) * equal
