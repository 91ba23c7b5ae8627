"""Two-way turnover, gross vs net returns and cost drag, buy-and-hold over OOS bars only,
and the unreachable gross leverage of a long-only book (real Backtrader runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mtl_bt.backtesting.runner import _build_result, _run, run_backtest
from mtl_bt.config import BacktestConfig
from mtl_bt.errors import ConfigError
from mtl_bt.metrics import performance as perf

DOCS = Path(__file__).resolve().parents[2] / "docs" / "backtesting.md"


def _flat(n: int, price: float = 100.0) -> pd.DataFrame:
    """Open = close every bar (no P&L from holding), a +-1% range so slippage fits."""
    index = pd.date_range("2024-01-01", periods=n, freq="1D", tz="UTC", name="datetime")
    frame = pd.DataFrame(
        {"open": price, "high": price * 1.01, "low": price * 0.99, "close": price, "volume": 1e3},
        index=index,
    )
    return frame


class _SwitchAtoB(bt.Strategy):
    """All in A on bar 0, everything moved to B on bar 5 (sell first, then buy)."""

    def next(self) -> None:
        a, b = self.datas
        if len(a) == 1:
            self.buy(data=a, size=900.0)
        elif len(a) == 6:
            self.sell(data=a, size=900.0)
            self.buy(data=b, size=900.0)


def test_full_switch_from_a_to_b_counts_two():
    """Selling all of A and buying B with it trades 2x the book: turnover is two-way."""
    frames = {"A": _flat(12), "B": _flat(12)}
    cfg = BacktestConfig(cash=90_000.0, commission=0.0, slippage=0.0, calendar="24/7")
    strat, rec, seconds = _run(frames, cfg, _SwitchAtoB, {}, False)
    traded = rec["traded"] / np.concatenate([[rec["start_value"]], rec["value"][:-1]])
    assert traded[6] == pytest.approx(2.0)  # the switch bar: 1.0 out of A + 1.0 into B
    res = _build_result(frames, cfg, strat, rec, None, seconds, "24/7")
    # entry (1.0) + switch (2.0) over 12 bars, annualised with 365
    assert res.metrics["turnover"] == pytest.approx(3.0 / 12 * 365)
    assert perf.turnover([0.0, 2.0], [1.0, 1.0], 1.0) == pytest.approx(1.0)
    text = DOCS.read_text()
    row = text.split("| `turnover` |")[1].split("\n")[0]
    assert "two-way" in row and "counts 2.0" in row


def test_gross_minus_net_is_the_costs_paid():
    frames = {"A": _flat(12), "B": _flat(12)}
    cfg = BacktestConfig(cash=100_000.0, commission=0.001, slippage=0.002, calendar="24/7")
    strat, rec, seconds = _run(frames, cfg, _SwitchAtoB, {}, False)
    res = _build_result(frames, cfg, strat, rec, None, seconds, "24/7")
    # flat prices: the only P&L is costs, so the gross book earns exactly 0
    assert res.metrics["gross_total_return"] == pytest.approx(0.0, abs=1e-12)
    assert res.metrics["total_return"] < 0
    # 3 fills of 900 x 100: slippage 0.2% of each, commission 0.1% of the slipped value
    fills = np.array([100.2, 99.8, 100.2]) * 900.0
    expected = float(np.sum(fills * 0.001 + 900.0 * 0.2))
    assert res.metrics["costs"] == pytest.approx(expected, rel=1e-9)
    assert res.metrics["final_value"] == pytest.approx(100_000.0 - expected, rel=1e-9)
    assert res.metrics["cost_drag"] > 0


def test_buy_and_hold_baseline_covers_the_oos_bars_only(frames, predictors):
    res = run_backtest(frames, predictors, BacktestConfig(), baseline="buy_and_hold")
    start = min(pd.Timestamp(p.fold["test_start"]) for p in predictors)
    assert res.returns.index[0] == start
    assert len(res.returns) < len(next(iter(frames.values())))


def test_cli_backtest_baseline_is_clipped(tmp_path, trained, frames, predictors):
    from mtl_bt.cli import main
    from mtl_bt.data import write_frame

    train_dir = trained[0]
    config = train_dir / "config.toml"
    files = []
    for symbol, frame in frames.items():
        path = tmp_path / "data" / f"{symbol}.csv"
        path.parent.mkdir(exist_ok=True)
        write_frame(frame, path)
        files.append(str(path))
    out = tmp_path / "bh"
    args = ["backtest", str(config), "--model", str(train_dir), "--out", str(out), "--quiet"]
    for f in files:
        args += ["--data", f]
    res = CliRunner().invoke(main, [*args, "--baseline", "buy_and_hold"])
    assert res.exit_code == 0, res.output
    returns = pd.read_csv(out / "returns.csv", parse_dates=["datetime"])
    start = min(pd.Timestamp(p.fold["test_start"]) for p in predictors)
    assert returns["datetime"].iloc[0] == start
    assert json.loads((out / "metrics.json").read_text())["portfolio"]["num_bars"] == len(returns)


def test_long_only_leverage_above_one_is_refused():
    from mtl_bt.config import from_dict

    with pytest.raises(ConfigError, match="max_gross_leverage.*unreachable"):
        from_dict({"backtest": {"allow_short": False, "max_gross_leverage": 1.5}}, "x.toml")
    assert BacktestConfig(allow_short=True, max_gross_leverage=1.5).max_gross_leverage == 1.5
    assert math.isclose(BacktestConfig(allow_short=False).max_gross_leverage, 1.0)
