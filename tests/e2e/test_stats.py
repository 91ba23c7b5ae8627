"""Statistics checked against hand computations, a published example and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from mtl_bt import stats


def test_dsr_matches_bailey_lopez_de_prado_2014_example() -> None:
    # Paper's numerical example: annualised SR 2.5 selected from N = 100 trials whose annualised
    # Sharpe ratios have variance 0.5, T = 1250 daily returns, skew -3, kurtosis 10 -> DSR 0.9004.
    gamma = 0.5772156649015329
    sr0_annual = math.sqrt(0.5) * (
        (1 - gamma) * norm.ppf(1 - 1 / 100) + gamma * norm.ppf(1 - 1 / (100 * math.e))
    )
    assert stats.expected_max_sharpe(100, 0.5) == pytest.approx(sr0_annual, rel=1e-12)
    assert sr0_annual == pytest.approx(1.7894, abs=1e-4)
    sr, sr0 = 2.5 / math.sqrt(250), sr0_annual / math.sqrt(250)
    dsr = stats.probabilistic_sharpe_ratio_from_stats(
        sr, 1250, skew=-3, kurtosis=10, sr_benchmark=sr0
    )
    assert dsr == pytest.approx(0.9004, abs=1e-4)


def test_psr_hand_computed() -> None:
    # SR 0.1 per period over 101 normal returns: z = 0.1 * 10 / sqrt(1 + 0.5 * 0.01).
    z = 1.0 / math.sqrt(1.005)
    assert stats.probabilistic_sharpe_ratio_from_stats(0.1, 101) == pytest.approx(
        norm.cdf(z), abs=1e-12
    )
    # Negative skew and fat tails widen the Sharpe standard error, so PSR drops.
    assert stats.probabilistic_sharpe_ratio_from_stats(0.1, 101, skew=-2, kurtosis=9) < norm.cdf(z)


def test_psr_from_returns_uses_sample_moments() -> None:
    rng = np.random.default_rng(1)
    r = 0.001 + 0.01 * rng.standard_t(5, size=800)
    sr = r.mean() / r.std(ddof=1)
    m = r - r.mean()
    skew = (m**3).mean() / (m**2).mean() ** 1.5
    kurt = (m**4).mean() / (m**2).mean() ** 2
    z = sr * math.sqrt(799) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert stats.probabilistic_sharpe_ratio(r) == pytest.approx(norm.cdf(z), rel=1e-10)


def test_expected_max_sharpe_close_to_simulated_maximum() -> None:
    rng = np.random.default_rng(0)
    simulated = rng.standard_normal((20000, 50)).max(axis=1).mean()
    assert stats.expected_max_sharpe(50, 1.0) == pytest.approx(simulated, rel=0.03)
    assert stats.expected_max_sharpe(1, 0.7, sr_mean=0.2) == 0.2


@given(st.integers(2, 10_000), st.floats(1e-6, 4.0))
def test_expected_max_sharpe_grows_with_trials(n: int, var: float) -> None:
    assert stats.expected_max_sharpe(n + 1, var) > stats.expected_max_sharpe(n, var) > 0


def test_dsr_lower_with_more_trials() -> None:
    rng = np.random.default_rng(3)
    r = 0.0008 + 0.01 * rng.standard_normal(1000)
    one = stats.deflated_sharpe_ratio(r, n_trials=1, sr_variance=0.001)
    many = stats.deflated_sharpe_ratio(r, n_trials=50, sr_variance=0.001)
    assert one == pytest.approx(stats.probabilistic_sharpe_ratio(r))
    assert many < one


def test_paired_bootstrap_coverage_iid() -> None:
    """95% CIs of the Sharpe difference cover the true difference ~95% of the time."""
    rng = np.random.default_rng(42)
    n, reps, hits = 400, 150, 0
    true_diff = 0.10 - 0.02  # unit-variance series: per-period Sharpe = mean
    for rep in range(reps):
        common = rng.standard_normal(n)
        a = 0.10 + 0.6 * common + 0.8 * rng.standard_normal(n)
        b = 0.02 + 0.6 * common + 0.8 * rng.standard_normal(n)
        res = stats.paired_bootstrap_sharpe_diff(a, b, n_boot=400, block=1, seed=rep)
        hits += res.low <= true_diff <= res.high
    assert 0.88 <= hits / reps <= 0.99


def test_paired_bootstrap_is_paired_and_annualised() -> None:
    rng = np.random.default_rng(5)
    common = rng.standard_normal(500)
    a = 0.05 + common + 0.1 * rng.standard_normal(500)
    b = common + 0.1 * rng.standard_normal(500)
    paired = stats.paired_bootstrap_sharpe_diff(a, b, n_boot=500, seed=1)
    # Unpaired: break the bar alignment of b; the interval must get much wider.
    unpaired = stats.paired_bootstrap_sharpe_diff(a, rng.permutation(b), n_boot=500, seed=1)
    assert paired.high - paired.low < 0.5 * (unpaired.high - unpaired.low)
    assert paired.low > 0 and paired.p_value < 0.05
    yearly = stats.paired_bootstrap_sharpe_diff(a, b, n_boot=500, seed=1, periods_per_year=252)
    assert yearly.diff == pytest.approx(paired.diff * math.sqrt(252))
    assert yearly.low == pytest.approx(paired.low * math.sqrt(252))


@given(st.integers(0, 2**31 - 1))
def test_paired_bootstrap_antisymmetric(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(60) + 0.1, rng.standard_normal(60)
    ab = stats.paired_bootstrap_sharpe_diff(a, b, n_boot=200, seed=seed)
    ba = stats.paired_bootstrap_sharpe_diff(b, a, n_boot=200, seed=seed)
    assert ab.diff == pytest.approx(-ba.diff)
    assert ab.low == pytest.approx(-ba.high) and ab.high == pytest.approx(-ba.low)
    same = stats.paired_bootstrap_sharpe_diff(a, a, n_boot=100, seed=seed)
    assert same.diff == 0 and same.low == 0 and same.high == 0


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        stats.paired_bootstrap_sharpe_diff([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        stats.paired_bootstrap_sharpe_diff([1, np.nan, 3], [1, 2, 3])
    assert math.isnan(stats.sharpe(np.zeros(10)))
    flat = stats.paired_bootstrap_sharpe_diff(np.zeros(50), np.ones(50) * 0.01, n_boot=50)
    assert math.isnan(flat.diff) and math.isnan(flat.low)


def test_holm_matches_hand_computation_and_keeps_order_and_nans() -> None:
    # m = 4 finite p-values sorted 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (monotone), 0.5
    adj = stats.holm([0.03, np.nan, 0.01, 0.5, 0.02])
    np.testing.assert_allclose(adj, [0.06, np.nan, 0.04, 0.5, 0.06])
    assert np.isnan(stats.holm([np.nan])).all()
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        stats.holm([1.5])


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_holm_is_between_raw_and_bonferroni_and_monotone(p) -> None:
    p = np.asarray(p)
    adj = stats.holm(p)
    assert np.all(adj >= p - 1e-15)
    assert np.all(adj <= np.minimum(1.0, p * p.size) + 1e-15)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-15)  # same ranking as the raw p-values


def test_seed_time_bootstrap_is_the_time_bootstrap_for_one_seed_and_wider_with_seed_noise():
    rng = np.random.default_rng(1)
    n = 500
    common = rng.normal(0, 0.01, n)
    a, b = common + rng.normal(0.001, 0.004, n), common + rng.normal(0, 0.004, n)
    one = stats.seed_time_bootstrap_sharpe_diff(a[None], b[None], n_boot=400, seed=3)
    time_only = stats.paired_bootstrap_sharpe_diff(a, b, n_boot=400, seed=3)
    assert (one.diff, one.low, one.high, one.p_value) == pytest.approx(
        (time_only.diff, time_only.low, time_only.high, time_only.p_value)
    )
    # five seeds whose own drifts differ a lot: resampling seeds widens the interval
    drifts = np.array([-0.004, -0.002, 0.0, 0.003, 0.006])
    a_runs = common + drifts[:, None] + rng.normal(0, 0.004, (5, n))
    b_runs = common + rng.normal(0, 0.004, (5, n))
    both = stats.seed_time_bootstrap_sharpe_diff(a_runs, b_runs, n_boot=400)
    time_ens = stats.paired_bootstrap_sharpe_diff(a_runs.mean(0), b_runs.mean(0), n_boot=400)
    assert both.diff == pytest.approx(time_ens.diff)
    assert both.high - both.low > 1.3 * (time_ens.high - time_ens.low)
