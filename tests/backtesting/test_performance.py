"""Performance metrics vs independent plain-Python references (1e-9 relative)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.metrics import performance as pf

# rounded so squares never underflow to 0 (subnormals are not returns)
returns_st = st.lists(
    st.floats(min_value=-0.2, max_value=0.2, allow_nan=False).map(lambda x: round(x, 12)),
    min_size=3,
    max_size=300,
)
ppy_st = st.sampled_from([12.0, 52.0, 252.0, 365.0, 1638.0, 8760.0])
rf_st = st.sampled_from([0.0, 0.02, 0.05])


def close(a, b, rel=1e-9):
    if a is None or b is None:
        return a is b
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


# -- independent references: plain Python loops, textbook formulas --------
def ref_mean(xs):
    return math.fsum(xs) / len(xs)


def ref_std(xs):
    m = ref_mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def ref_sharpe(xs, ppy, rf):
    rp = (1 + rf) ** (1 / ppy) - 1
    ex = [x - rp for x in xs]
    if len(set(ex)) == 1:  # constant: std is 0 (fsum's mean can leave rounding dust)
        return None
    sd = ref_std(ex)
    return None if sd == 0 else ref_mean(ex) / sd * math.sqrt(ppy)


def ref_sortino(xs, ppy, rf):
    rp = (1 + rf) ** (1 / ppy) - 1
    ex = [x - rp for x in xs]
    dd = math.sqrt(math.fsum(min(x, 0.0) ** 2 for x in ex) / len(ex))
    m = ref_mean(ex)
    if dd == 0:
        return math.inf if m > 0 else None
    return m / dd * math.sqrt(ppy)


def ref_mdd(xs):
    eq, peak, worst = 1.0, 1.0, 0.0
    for x in xs:
        eq *= 1 + x
        peak = max(peak, eq)
        worst = max(worst, (peak - eq) / peak)
    return worst


def ref_cagr(xs, ppy):
    eq = 1.0
    for x in xs:
        eq *= 1 + x
    try:
        return eq ** (1 / (len(xs) / ppy)) - 1
    except OverflowError:
        return math.inf


@given(returns_st, ppy_st, rf_st)
def test_sharpe_sortino_match_reference(xs, ppy, rf):
    assert close(pf.sharpe_ratio(xs, ppy, rf), ref_sharpe(xs, ppy, rf))
    assert close(pf.sortino_ratio(xs, ppy, rf), ref_sortino(xs, ppy, rf))


@given(returns_st, ppy_st)
def test_drawdown_cagr_vol_calmar_match_reference(xs, ppy):
    assert close(pf.max_drawdown(xs), ref_mdd(xs))
    assert close(pf.cagr(xs, ppy), ref_cagr(xs, ppy))
    assert close(pf.annual_volatility(xs, ppy), ref_std(xs) * math.sqrt(ppy))
    mdd = ref_mdd(xs)
    expected = None if mdd == 0 else ref_cagr(xs, ppy) / mdd
    assert close(pf.calmar_ratio(xs, ppy), expected)


@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), max_size=50))
def test_profit_factor_and_win_rate_match_reference(pnl):
    gains = math.fsum(p for p in pnl if p > 0)
    losses = -math.fsum(p for p in pnl if p < 0)
    if not pnl or (losses == 0 and gains == 0):
        expected = None
    elif losses == 0:
        expected = math.inf
    else:
        expected = gains / losses
    assert close(pf.profit_factor(pnl), expected)
    assert close(pf.win_rate(pnl), None if not pnl else sum(p > 0 for p in pnl) / len(pnl))


@given(returns_st, ppy_st, st.floats(0.01, 100))
def test_sharpe_sortino_scale_invariant_and_odd(xs, ppy, c):
    s = pf.sharpe_ratio(xs, ppy)
    assert close(pf.sharpe_ratio([c * x for x in xs], ppy), s, rel=1e-7)
    neg = pf.sharpe_ratio([-x for x in xs], ppy)
    assert (s is None and neg is None) or close(neg, -s, rel=1e-9)
    so = pf.sortino_ratio(xs, ppy)
    assert close(pf.sortino_ratio([c * x for x in xs], ppy), so, rel=1e-7)


@given(returns_st, ppy_st)
def test_sortino_bounds(xs, ppy):
    """Downside deviation <= root mean square, so |Sortino| >= |mean| / rms * sqrt(ppy)."""
    r = np.asarray(xs)
    m = r.mean()
    rms = math.sqrt(float(np.mean(r * r)))
    so = pf.sortino_ratio(xs, ppy)
    if m > 0 and rms > 0:
        assert so is not None and so >= m / rms * math.sqrt(ppy) * (1 - 1e-12)
    if m < 0:
        assert so is not None and so < 0


@given(st.lists(st.floats(0.0, 0.1), min_size=2, max_size=50))
def test_no_drawdown_for_non_negative_returns(xs):
    assert pf.max_drawdown(xs) == 0.0
    assert pf.drawdown_duration(xs)[0] == 0
    assert pf.calmar_ratio(xs, 252) is None


def test_documented_edge_cases():
    assert pf.sharpe_ratio([0.01], 252) is None
    assert pf.sharpe_ratio([0.01, 0.01, 0.01], 252) is None  # zero variance
    assert pf.sortino_ratio([0.01, 0.02], 252) == math.inf  # no downside, positive mean
    assert pf.sortino_ratio([0.0, 0.0], 252) is None
    assert pf.profit_factor([]) is None and pf.win_rate([]) is None
    assert pf.profit_factor([5.0, 1.0]) == math.inf
    assert pf.cagr([-1.0, 0.1], 252) == -1.0
    with pytest.raises(ValueError, match="finite"):
        pf.sharpe_ratio([0.01, float("nan")], 252)


def test_drawdown_duration_bars_and_time():
    r = [0.1, -0.1, -0.05, 0.02, 0.2, -0.01, 0.0]
    idx = pd.date_range("2024-01-01", periods=len(r), freq="1D", tz="UTC")
    bars, span = pf.drawdown_duration(r, idx)
    # equity 1.1, .99, .9405, .959, 1.151 (recovered), 1.139, 1.139 -> longest spell: bars 1..3
    assert bars == 3
    assert span == idx[4] - idx[0]  # from the peak bar to the recovery bar
    assert math.isclose(pf.max_drawdown(r), 1 - 0.9405 / 1.1, rel_tol=1e-12)
