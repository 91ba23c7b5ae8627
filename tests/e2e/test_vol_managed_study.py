"""The vol_managed study's table: per volatility input, seed means and the paired Sharpe
difference against the trailing realised vol on the same bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt import stats
from mtl_bt.compare.vol_managed import table


def test_table_pairs_every_forecast_with_the_trailing_vol():
    rng = np.random.default_rng(0)
    index = pd.date_range("2020-01-01", periods=400, freq="1D", tz="UTC")
    base = rng.normal(0.0005, 0.01, size=(2, 400))
    series = {
        "mtl": [pd.Series(b + 0.001, index=index) for b in base],
        "single_task": [pd.Series(b, index=index) for b in base],
        "trailing": [pd.Series(b, index=index) for b in base],
    }
    metrics = {k: [{"sharpe": 1.0 + i, "turnover": 2.0} for i in range(2)] for k in series}
    out = table(series, metrics, 252.0).set_index("volatility input")
    assert out.loc["single_task", "ΔSharpe vs trailing"] == pytest.approx(0.0, abs=1e-12)
    expected = (
        stats.sharpe(base.mean(axis=0) + 0.001) - stats.sharpe(base.mean(axis=0))
    ) * np.sqrt(252)
    assert out.loc["mtl", "ΔSharpe vs trailing"] == pytest.approx(expected)
    assert out.loc["mtl", "sharpe mean"] == pytest.approx(1.5)
    assert pd.isna(out.loc["trailing", "ΔSharpe vs trailing"])
