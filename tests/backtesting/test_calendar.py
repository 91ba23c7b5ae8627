"""periods_per_year from bar size and calendar."""

from __future__ import annotations

import pandas as pd
import pytest

from mtl_bt.backtesting.calendar import bt_timeframe, periods_per_year, timeframe_seconds
from mtl_bt.data.synthetic import garch_bars


@pytest.mark.parametrize(
    ("tf", "cal", "expected"),
    [
        ("1d", "exchange", 252.0),
        ("1d", "24/7", 365.0),
        ("1h", "24/7", 8760.0),
        ("1h", "exchange", 252 * 7.0),  # 09:30, 10:30, ..., 15:30: 7 bars a session
        ("30m", "exchange", 252 * 13.0),
        ("4h", "exchange", 252 * 2.0),
        ("15m", "24/7", 365 * 96.0),
        ("4h", "24/7", 365 * 6.0),
        ("1w", "exchange", 52.0),
        ("1mo", "exchange", 12.0),
        ("1h", "forex", 24 * 5 * 52.0),
        ("4h", "forex", 6 * 5 * 52.0),
        ("1d", "forex", 5 * 52.0),
        ("1w", "forex", 52.0),
    ],
)
def test_periods_per_year_table(tf, cal, expected):
    assert periods_per_year(tf, cal) == pytest.approx(expected, rel=1e-12)


def test_auto_detects_weekends():
    crypto = garch_bars(50, freq="1D").index
    stocks = garch_bars(50, freq="B").index
    hourly = garch_bars(200, freq="1h").index
    assert periods_per_year(crypto) == 365.0
    assert periods_per_year(stocks) == 252.0
    assert periods_per_year(hourly) == 8760.0
    # an exchange calendar with holidays still has a 1-day mode spacing
    holes = stocks.delete([3, 10, 11])
    assert periods_per_year(holes) == 252.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="auto"):
        periods_per_year("1d")
    with pytest.raises(ValueError, match="calendar"):
        periods_per_year("1d", "lunar")
    with pytest.raises(ValueError, match="timeframe"):
        timeframe_seconds("hourly!")
    with pytest.raises(ValueError, match="2 bars"):
        periods_per_year(pd.DatetimeIndex(["2024-01-01"], tz="UTC"))


def test_bt_timeframe():
    import backtrader as bt

    assert bt_timeframe(3600) == (bt.TimeFrame.Minutes, 60)
    assert bt_timeframe(86400) == (bt.TimeFrame.Days, 1)
    assert bt_timeframe(7 * 86400) == (bt.TimeFrame.Weeks, 1)
    assert bt_timeframe(30) == (bt.TimeFrame.Seconds, 30)


def test_intraday_exchange_counts_the_bars_of_a_session():
    """Seven hourly bars a day (09:30-15:30 New York) annualise with 252 x 7 = 1764, not 1638."""
    days = pd.bdate_range("2024-01-01", periods=30, tz="UTC")
    hours = [pd.Timedelta(hours=14, minutes=30) + pd.Timedelta(hours=k) for k in range(7)]
    index = pd.DatetimeIndex([d + h for d in days for h in hours])
    assert periods_per_year(index, "exchange") == 1764.0
    assert periods_per_year(index) == 1764.0  # auto: no weekend bars -> exchange
    # a half day (holiday eve) does not move the median
    short = index.delete(range(7 * 5 + 3, 7 * 6))
    assert periods_per_year(short, "exchange") == 1764.0


def fx_hours(weeks: int = 6, sunday_open: bool = True) -> pd.DatetimeIndex:
    """Hourly FX bars: Sunday 22:00 UTC to Friday 21:00 UTC every week (no Saturday)."""
    hours = pd.date_range("2024-01-07 22:00", periods=weeks * 7 * 24, freq="1h", tz="UTC")
    day, hour = hours.day_of_week, hours.hour
    keep = (day < 4) | ((day == 4) & (hour < 22)) | ((day == 6) & (hour >= 22))
    if not sunday_open:
        keep &= day != 6
    return hours[keep]


def test_auto_picks_forex_for_weekday_only_continuous_bars():
    """24 x 5 x 52: FX (Sunday-evening open, or whole weekdays without it) is not 24/7
    (crypto has Saturday bars) and not an exchange session (stocks fill 7 hours a day)."""
    from mtl_bt.backtesting.calendar import index_calendar

    fx = fx_hours()
    assert (fx.day_of_week != 5).all() and (fx.day_of_week == 6).any()
    assert periods_per_year(fx) == 6240.0
    assert periods_per_year(fx_hours(sunday_open=False)) == 6240.0
    # under a week of bars: a Sunday-evening stub may be a 24/7 market that started then
    assert periods_per_year(fx[:60]) == 8760.0
    assert periods_per_year(garch_bars(400, freq="1h").index) == 8760.0  # crypto: Saturdays
    stocks = pd.DatetimeIndex(
        [
            t
            for t in pd.date_range("2024-01-01 09:30", periods=24 * 40, freq="1h", tz="UTC")
            if t.day_of_week < 5 and 9 <= t.hour <= 15
        ]
    )
    assert index_calendar(stocks, 3600.0) == "exchange"
    assert periods_per_year(stocks) == 1764.0
    # daily FX without Sunday bars cannot be told from stocks: exchange (252)
    assert periods_per_year(garch_bars(60, freq="B").index) == 252.0


def test_the_streaming_path_picks_forex_too(real_model):
    """MTLStrategy's per-feed calendar on a FX-like hourly feed, preloaded and streaming. The
    streaming path fixes it at the asset's first decision from the bars seen so far, so the
    model's test window starts 8 days in (with under a week seen, a Sunday stub cannot be
    told from a 24/7 market that started on Sunday evening: 24/7)."""
    import copy

    import backtrader as bt
    import numpy as np

    from mtl_bt.backtesting.runner import make_cerebro
    from mtl_bt.config import BacktestConfig
    from mtl_bt.strategies import MTLStrategy

    index = fx_hours(weeks=3)
    bars = garch_bars(len(index), freq="1h", seed=3)
    bars.index = index
    model = copy.copy(real_model[0])
    model.fold = {**model.fold, "test_start": str(index[0] + pd.Timedelta(days=8))}
    for preload in (True, False):
        cerebro = make_cerebro({}, BacktestConfig())
        cerebro.p.preload = preload
        cerebro.adddata(bt.feeds.PandasData(dataname=bars), name="EURUSD")
        cerebro.addstrategy(MTLStrategy, predictor=[model], any_bar_size=True)
        strat = cerebro.run()[0]
        assert strat.decisions > 0
        assert np.asarray(strat.ppy).tolist() == [6240.0]
