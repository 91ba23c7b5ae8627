"""Backtrader integration: fast feeds, portfolio analyzer, runner, outputs, calendars.

Public API: ``run_backtest``, ``run_buy_and_hold``, ``write_outputs``,
``BacktestResult``, ``frame_feed``, ``Models``, ``configure_broker``, ``periods_per_year``
(see docs/backtesting.md).
"""

from mtl_bt.backtesting.broker import configure_broker
from mtl_bt.backtesting.calendar import periods_per_year
from mtl_bt.backtesting.feeds import FrameFeed, frame_feed
from mtl_bt.backtesting.models import Models
from mtl_bt.backtesting.outputs import write_outputs
from mtl_bt.backtesting.runner import BacktestResult, run_backtest, run_buy_and_hold

__all__ = [
    "BacktestResult",
    "configure_broker",
    "FrameFeed",
    "frame_feed",
    "Models",
    "periods_per_year",
    "run_backtest",
    "run_buy_and_hold",
    "write_outputs",
]
