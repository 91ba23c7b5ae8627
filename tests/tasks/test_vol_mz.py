"""Per-fold volatility calibration: Mincer-Zarnowitz with HAC standard errors, and the EWMA
baseline's decay from the bar size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.metrics.volatility import (
    LAMBDA,
    bar_of,
    ewma_lambda,
    mincer_zarnowitz,
    newey_west_ols,
)
from mtl_bt.report.oos import oos_metrics


def _ar_series(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    e = np.zeros(n)
    for t in range(1, n):  # autocorrelated errors, like overlapping h-bar targets
        e[t] = 0.8 * e[t - 1] + rng.normal()
    x = np.exp(rng.normal(-4, 0.4, n))
    return x, 0.002 + 0.7 * x + 0.001 * e


@pytest.mark.parametrize("lag", [0, 1, 24])
def test_newey_west_matches_statsmodels(lag):
    sm = pytest.importorskip("statsmodels.api")  # the dev extra installs it
    x, y = _ar_series(600, lag)
    coef, se = newey_west_ols(x, y, lag)
    ref = sm.OLS(y, sm.add_constant(x)).fit(
        cov_type="HAC", cov_kwds={"maxlags": lag, "use_correction": False}
    )
    np.testing.assert_allclose(coef, ref.params, rtol=1e-10)
    np.testing.assert_allclose(se, ref.bse, rtol=1e-8)


def test_mz_finds_the_slope_and_hac_widens_the_error():
    x, y = _ar_series(2000, 0)
    mz = mincer_zarnowitz(x, y, lag=24)
    assert mz["mz_slope"] == pytest.approx(0.7, abs=3 * mz["mz_slope_se"])
    assert mincer_zarnowitz(x, y, lag=0)["mz_slope_se"] < mz["mz_slope_se"]
    assert np.isnan(mincer_zarnowitz(np.ones(10), y[:10], 1)["mz_slope"])  # constant forecast


def test_per_fold_rows_carry_the_mz_regression():
    rng = np.random.default_rng(0)
    times = pd.date_range("2024-01-01", periods=400, freq="1h", tz="UTC")
    rows = []
    for fold, scale in ((0, 1.0), (1, 2.0)):  # fold 1 predicts twice too high
        part = times[fold * 200 : (fold + 1) * 200]
        vol = np.exp(rng.normal(-4, 0.3, len(part)))
        rows.append(
            pd.DataFrame(
                {
                    "datetime": part,
                    "symbol": "AAA",
                    "fold": fold,
                    "volatility@4": scale * vol,
                    "target_volatility@4": vol * np.exp(rng.normal(0, 0.05, len(part))),
                }
            )
        )
    table = oos_metrics(pd.concat(rows, ignore_index=True))
    slope = table[(table["metric"] == "mz_slope")].set_index("fold")["value"]
    ratio = table[(table["metric"] == "calibration")].set_index("fold")["value"]
    assert slope[0] == pytest.approx(1.0, abs=0.1) and slope[1] == pytest.approx(0.5, abs=0.05)
    assert ratio[0] == pytest.approx(1.0, abs=0.05) and ratio[1] == pytest.approx(0.5, abs=0.03)
    assert {"mz_intercept", "mz_slope_se", "mz_intercept_se"} <= set(table["metric"])


def test_ewma_lambda_keeps_the_daily_half_life_in_calendar_time():
    assert ewma_lambda(pd.Timedelta(days=1)) == pytest.approx(LAMBDA)
    assert ewma_lambda(pd.Timedelta(hours=1)) == pytest.approx(LAMBDA ** (1 / 24))
    assert ewma_lambda(None) == LAMBDA
    stocks = pd.bdate_range("2020-01-01", periods=300)  # weekends are gaps, not the bar
    assert bar_of(stocks) == pd.Timedelta(days=1)
    assert bar_of(pd.date_range("2024-01-01", periods=5, freq="1h")) == pd.Timedelta(hours=1)


@given(st.floats(1, 24 * 60), st.floats(1, 24 * 60))
def test_ewma_lambda_compounds_over_bar_sizes(m1, m2):
    # k bars of size b decay like one bar of size k b: same memory in calendar time
    a, b = pd.Timedelta(minutes=m1), pd.Timedelta(minutes=m2)
    assert ewma_lambda(a) * ewma_lambda(b) == pytest.approx(ewma_lambda(a + b), rel=1e-9)
