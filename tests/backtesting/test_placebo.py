"""Placebo backtests: predictions block-shuffled within each fold or lagged, real backtests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.compare.placebo import Placebo, block_order, p_value, sequential_p_value, study
from mtl_bt.config import BacktestConfig


@given(st.integers(1, 300), st.integers(1, 40), st.integers(0, 10**6))
def test_block_order_is_a_permutation_of_whole_blocks(n, block, seed):
    order = block_order(n, block, np.random.default_rng(seed))
    assert sorted(order.tolist()) == list(range(n))
    starts = [i for i in range(n) if order[i] % block == 0]  # each block starts at a multiple
    for s in starts:
        run = order[s : s + min(block, n - order[s])]
        assert np.array_equal(run, np.arange(order[s], order[s] + len(run)))


class Fixed:
    """A stand-in predictor that answers the row index (enough to see the reordering)."""

    task_names = ["return@2"]

    def predict(self, x, asset_ids=None):
        return {"return@2": np.arange(len(x), dtype=float)}


def test_placebo_reorders_or_lags_each_call_and_keeps_the_values():
    x = np.zeros((50, 3))
    shuffled = Placebo(Fixed(), block=5, rng=np.random.default_rng(1)).predict(x)["return@2"]
    assert sorted(shuffled) == list(range(50)) and not np.array_equal(shuffled, np.arange(50))
    lagged = Placebo(Fixed(), lag=3).predict(x)["return@2"]
    assert np.isnan(lagged[:3]).all() and np.array_equal(lagged[3:], np.arange(47))
    assert Placebo(Fixed(), lag=3).task_names == ["return@2"]  # the rest is the inner model's
    with pytest.raises(ValueError, match="one of them"):
        Placebo(Fixed())


def test_p_value_places_the_real_sharpe_among_the_draws():
    assert p_value(2.0, [0.0, 1.0, 3.0]) == pytest.approx(2 / 4)
    assert p_value(5.0, [0.0, np.nan, 1.0]) == pytest.approx(1 / 3)  # NaN draws left out
    assert np.isnan(p_value(np.nan, [1.0]))


@pytest.mark.parametrize("stop_after", [1, 2, 3, 5])
@pytest.mark.parametrize("draws", [1, 3, 7, 10])
def test_sequential_p_value_is_valid_exactly(draws, stop_after):
    """Besag & Clifford's law, computed exactly: when the timing adds nothing the real
    Sharpe is exchangeable with the draws, so the number g of draws above it is uniform on
    0..draws and which draws they are is a uniform subset of size g; over that distribution
    P(p <= a) <= a at every value a the p-value takes."""
    from itertools import combinations
    from math import comb

    cdf: dict[float, float] = {}
    for g in range(draws + 1):
        for above in combinations(range(draws), g):
            values = [1.0 if i in above else 0.0 for i in range(draws)]
            p = sequential_p_value(0.5, values, stop_after)
            cdf[p] = cdf.get(p, 0.0) + 1 / ((draws + 1) * comb(draws, g))
    total = 0.0
    for a in sorted(cdf):
        total += cdf[a]
        assert total <= a + 1e-12, (a, total)
    assert total == pytest.approx(1.0)


@given(st.lists(st.floats(-3, 3), min_size=1, max_size=30), st.floats(-3, 3))
def test_sequential_p_value_stops_at_the_hth_draw_reaching_the_real_one(values, real):
    hits = [i for i, v in enumerate(values, start=1) if v >= real]
    for h in (1, 2, 3):
        want = h / hits[h - 1] if len(hits) >= h else p_value(real, values)
        assert sequential_p_value(real, values, h) == pytest.approx(want)
    assert sequential_p_value(real, values, 0) == p_value(real, values)


def test_an_early_stop_keeps_a_prefix_of_the_full_studys_draws(frames, predictors):
    cfg = BacktestConfig(signal="sign", rebalance="bar", max_weight=0.5)
    full = study(frames, predictors, cfg, draws=3, stop_after=0, block=5, lags=[])
    early = study(frames, predictors, cfg, draws=3, stop_after=1, block=5, lags=[])
    assert full["draws"] == full["max_draws"] == early["max_draws"] == 3
    assert early["shuffled"] == full["shuffled"][: early["draws"]]
    real = full["real"]["sharpe"]
    reached = [i for i, s in enumerate(full["shuffled"], start=1) if s["sharpe"] >= real]
    if reached:  # stopped at the first draw reaching the real net (and gross) Sharpe
        assert early["p_sharpe"] == 1 / reached[0]
        assert early["draws"] >= reached[0]
    else:
        assert early["draws"] == 3 and early["p_sharpe"] == full["p_sharpe"] == 1 / 4


def test_study_runs_real_and_placebo_backtests_on_the_same_bars(frames, predictors):
    cfg = BacktestConfig(signal="sign", rebalance="bar", max_weight=0.5)
    res = study(frames, predictors, cfg, draws=3, stop_after=0, block=5, lags=[1])
    assert res["block"] == 5 and len(res["shuffled"]) == 3 and set(res["lagged"]) == {"1"}
    sharpes = [s["sharpe"] for s in res["shuffled"]]
    assert len(set(np.round(sharpes, 12))) > 1  # different draws trade differently
    assert res["real"]["sharpe"] not in sharpes
    assert 1 / 4 <= res["p_sharpe"] <= 1.0
