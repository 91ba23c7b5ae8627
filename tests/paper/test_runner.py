"""run_paper end to end against the loopback Bybit server on a lock-step exchange clock:
the journal, the CSV exports, and equality with a backtest of the same bars."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
from data_testkit import ExchangeClock
from paper_testkit import HOUR, PAIRS, START, Lockstep, journal_has, paper_config_dict

from mtl_bt import config as config_mod
from mtl_bt.backtesting.runner import make_cerebro
from mtl_bt.errors import UserError
from mtl_bt.paper import run_paper
from strategies import Momentum

N = 8


def _paper(url, out, model, clock, n=N, **kwargs):
    cfg = config_mod.from_dict(paper_config_dict(url))
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=n - 1):
        return run_paper(cfg, model, out, max_bars=n, echo=None, strategy=(Momentum, {}), **kwargs)


def test_three_symbol_run_equals_backtest_of_same_bars(
    exchange, paper_model, tmp_path, crypto_frames
):
    clock = ExchangeClock(START, speed=0.0)
    url, state = exchange(clock)
    out = tmp_path / "paper"
    result = _paper(url, out, paper_model, clock)
    assert result.bars == result.total_bars == N and result.stopped_by == "max_bars"
    db = sqlite3.connect(out / "paper.sqlite")
    bars = [pd.Timestamp(t) for (t,) in db.execute("SELECT datetime FROM bars ORDER BY seq")]
    first_live = START.floor("1h") - HOUR
    assert bars == list(pd.date_range(first_live, periods=N, freq="1h"))
    decided = db.execute("SELECT symbol, datetime, COUNT(*) FROM decided GROUP BY 1, 2").fetchall()
    assert len(decided) == 3 * N and all(c == 1 for *_, c in decided)  # each bar once

    # the same strategy backtested on the same bars (warm-up history included)
    cfg = config_mod.from_dict(paper_config_dict(url))
    first = START.floor("1h") - 60 * HOUR
    frames = {s: crypto_frames[s].loc[first : bars[-1]] for s in PAIRS}
    cerebro = make_cerebro(frames, cfg.backtest)
    cerebro.addstrategy(Momentum, start=first_live)
    strat = cerebro.run()[0]
    want = pd.DataFrame(
        strat.fills, columns=["datetime", "symbol", "side", "size", "price", "commission"]
    )
    got = pd.read_csv(out / "orders.csv")
    filled = got[got["status"] == "completed"].reset_index(drop=True)
    assert len(filled) == len(want) > 0
    assert list(filled["symbol"]) == list(want["symbol"])
    assert list(filled["side"]) == list(want["side"])
    assert list(pd.to_datetime(filled["datetime"], utc=True)) == list(want["datetime"])
    for col in ("size", "price", "commission"):
        np.testing.assert_allclose(filled[col], want[col], rtol=0, atol=1e-6)
    equity = pd.read_csv(out / "equity.csv")
    assert abs(equity["equity"].iloc[-1] - strat.broker.getvalue()) < 1e-6
    # orders.csv starts with a backtest's orders.csv columns
    from mtl_bt.backtesting.runner import ORDER_COLUMNS

    assert list(got.columns[: len(ORDER_COLUMNS)]) == ORDER_COLUMNS


def test_other_config_or_model_on_same_out_is_refused(exchange, paper_model, tmp_path):
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    out = tmp_path / "paper"
    _paper(url, out, paper_model, clock, n=1)
    other = config_mod.from_dict(paper_config_dict(url, backtest={"cash": 5000.0}))
    with pytest.raises(
        UserError, match=r"other decision settings: backtest.cash \(100000.0 -> 5000.0\).*--reset"
    ):
        run_paper(other, paper_model, out, max_bars=1, echo=None, strategy=(Momentum, {}))
    result = run_paper(
        other, paper_model, out, max_bars=1, echo=None, strategy=(Momentum, {}), reset=True
    )
    assert result.total_bars == 1
