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
        ("1h", "exchange", 252 * 6.5),
        ("15m", "24/7", 365 * 96.0),
        ("4h", "24/7", 365 * 6.0),
        ("1w", "exchange", 52.0),
        ("1mo", "exchange", 12.0),
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
