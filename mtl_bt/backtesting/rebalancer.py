"""Target weights -> order sizes (the rebalancer), separate from Backtrader so it is testable alone.

Why each rule exists:
- the gross-leverage cap counts positions of assets not rebalanced on this bar,
  so a partial rebalance (mixed calendars, horizon holding) cannot exceed it;
- same-side weight changes below ``min_trade_weight`` are skipped (a no-trade
  band: tiny rebalances only pay costs); flips and exits always trade;
- sells come before buys, and buys are scaled down together to fit 99% of the
  cash left after the sells with costs: a fully invested long book cannot also
  pay its commission, and the broker would refuse the last buy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mtl_bt.errors import DataError
from mtl_bt.signals.clip import scale_floats_to_gross, scale_to_gross


class Holding(NamedTuple):
    """One asset as the rebalancer sees it on this bar (a named tuple: built for every
    decided asset on every decision bar, about 5x cheaper than a frozen dataclass)."""

    symbol: str
    position: float  # units held (negative: short)
    price: float  # this bar's close, the sizing price


@dataclass(frozen=True)
class Rebalancer:
    max_gross_leverage: float = 1.0
    min_trade_weight: float = 0.01
    commission: float = 0.001
    slippage: float = 0.0005

    def cap(self, weights: np.ndarray, other_gross: float) -> np.ndarray:
        """Scale ``weights`` so their gross plus ``other_gross`` (untouched assets) fits the cap."""
        return scale_to_gross(weights, max(0.0, self.max_gross_leverage - other_gross))

    def cap_floats(self, weights: list[float], other_gross: float) -> list[float]:
        """``cap`` on a list of floats (the strategy's per-bar path), equal bit for bit."""
        return scale_floats_to_gross(weights, max(0.0, self.max_gross_leverage - other_gross))

    def orders(
        self, holdings: Sequence[Holding], weights: Sequence[float], value: float, cash: float
    ) -> list[tuple[int, float]]:
        """Signed unit changes ``(i, delta)`` (index into ``holdings``), sells first."""
        if not value > 0:
            return []
        sells: list[tuple[int, float]] = []
        buys: list[tuple[int, float]] = []
        for i, (h, w) in enumerate(zip(holdings, weights, strict=True)):
            if not h.price > 0:
                raise DataError(f"{h.symbol}: close price {h.price} on the bar being rebalanced")
            if w == 0.0 and h.position == 0.0:
                continue
            current = h.position * h.price / value
            if w * current > 0.0 and abs(w - current) < self.min_trade_weight:
                continue  # no-trade band: same side, small change in weight
            delta = -h.position if w == 0.0 else w * value / h.price - h.position
            if delta == 0.0:
                continue
            (sells if delta < 0 else buys).append((i, delta))
        if buys:
            buys = self._fit_cash(holdings, sells, buys, cash)
        return sells + buys

    def _fit_cash(
        self,
        holdings: Sequence[Holding],
        sells: list[tuple[int, float]],
        buys: list[tuple[int, float]],
        cash: float,
    ) -> list[tuple[int, float]]:
        cost = self.commission + self.slippage
        cash += sum(-d * holdings[i].price for i, d in sells) * (1.0 - cost)
        need = sum(d * holdings[i].price for i, d in buys) * (1.0 + cost)
        room = 0.99 * cash
        if need <= room:
            return buys
        scale = max(0.0, room / need)
        return [(i, d * scale) for i, d in buys if d * scale > 0.0]
