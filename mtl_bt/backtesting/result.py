"""What a backtest produced: one dataclass, shared by the runner and the output writers
(its own module, so ``outputs`` and ``runner`` do not import each other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class BacktestResult:
    """Everything a backtest produced (see docs/backtesting.md for each field)."""

    returns: pd.Series  # portfolio_return per bar after warm-up, UTC DatetimeIndex
    equity: pd.Series  # broker value per bar after warm-up
    metrics: dict[str, Any]
    per_asset: dict[str, dict[str, Any]]
    orders: pd.DataFrame
    trades: pd.DataFrame
    periods_per_year: float
    symbols: list[str]
    contributions: pd.DataFrame  # per-asset contribution to each bar's portfolio return
    strategy: Any = field(default=None, repr=False)  # the Backtrader strategy instance
    seconds: float = 0.0
