"""The broker settings ``mtl-bt backtest`` uses, for plain Backtrader code.

``configure_broker(cerebro, config)`` sets cash, a percent commission, percent
slippage on every fill and no cheat-on-close/open, exactly as the CLI does, so

    cerebro = bt.Cerebro()
    configure_broker(cerebro, "run.toml")
    cerebro.addstrategy(*MTLStrategy.from_config("run.toml", "runs/x"))

reproduces the CLI's numbers on the same feeds. Backtrader's own defaults
(10,000 cash, no commission, no slippage) and ``MTLStrategy``'s parameter
defaults are *not* a config's: without these helpers a run will differ.
"""

from __future__ import annotations

import os
from typing import Any

import backtrader as bt

from mtl_bt.config import BacktestConfig


def backtest_config(config: Any) -> BacktestConfig:
    """The ``[backtest]`` section of a config path, a ``Config``, or a ``BacktestConfig``."""
    if isinstance(config, BacktestConfig):
        return config
    if isinstance(config, str | os.PathLike):
        from mtl_bt import config as config_mod

        config = config_mod.load(config)
    return config.backtest


def configure_broker(cerebro: bt.Cerebro, config: Any) -> bt.Cerebro:
    """Cash, percent commission, percent slippage and fill rules of ``config``'s backtest."""
    cfg = backtest_config(config)
    broker = cerebro.broker
    broker.setcash(cfg.cash)
    broker.set_coc(False)
    broker.set_coo(False)
    broker.addcommissioninfo(
        bt.CommInfoBase(
            commission=cfg.commission,
            commtype=bt.CommInfoBase.COMM_PERC,
            percabs=True,
            stocklike=True,
        )
    )
    if cfg.slippage:
        broker.set_slippage_perc(
            cfg.slippage, slip_open=True, slip_limit=True, slip_match=True, slip_out=False
        )
    return cerebro
