"""stats.seed_time_bootstrap_mean: the interval of a mean of paired per-bar differences that
resamples training seeds as well as blocks of time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.stats import seed_time_bootstrap_mean


def test_point_estimate_is_the_mean_of_finite_entries():
    rng = np.random.default_rng(1)
    x = rng.normal(0.1, 1.0, (3, 2, 200))
    x[0, 1, :50] = np.nan
    res = seed_time_bootstrap_mean(x, n_boot=200)
    assert res.diff == pytest.approx(np.nanmean(x), rel=1e-12)
    assert res.n == int(np.isfinite(x).sum())
    assert res.low <= res.diff <= res.high


@given(st.floats(-5, 5), st.integers(0, 10))
def test_a_constant_shift_moves_the_interval_by_the_constant(shift, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (4, 2, 120))
    a = seed_time_bootstrap_mean(x, n_boot=200, seed=seed)
    b = seed_time_bootstrap_mean(x + shift, n_boot=200, seed=seed)
    assert b.diff == pytest.approx(a.diff + shift, abs=1e-9)
    assert b.low == pytest.approx(a.low + shift, abs=1e-9)
    assert b.high == pytest.approx(a.high + shift, abs=1e-9)


def test_seed_disagreement_widens_the_interval():
    """Every bar of a seed has the same value, seeds differ: resampling time alone would
    give a zero-width interval; resampling seeds does not."""
    seeds = np.array([-1.0, 0.0, 1.0, 2.0, 3.0])
    x = np.broadcast_to(seeds[:, None, None], (5, 2, 300)).copy()
    res = seed_time_bootstrap_mean(x, n_boot=500)
    assert res.diff == pytest.approx(1.0)
    assert res.high - res.low > 1.0
    one = seed_time_bootstrap_mean(x[:1], n_boot=500)  # one seed: nothing to resample
    assert one.high - one.low == pytest.approx(0.0, abs=1e-12)


def test_a_clear_difference_has_a_small_p_value_and_noise_does_not():
    rng = np.random.default_rng(3)
    clear = seed_time_bootstrap_mean(rng.normal(1.0, 1.0, (5, 3, 400)), n_boot=500)
    noise = seed_time_bootstrap_mean(rng.normal(0.0, 1.0, (5, 3, 400)), n_boot=500)
    assert clear.p_value < 0.01 and clear.low > 0
    assert noise.low < 0 < noise.high


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="seeds, series, bars"):
        seed_time_bootstrap_mean(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="no finite"):
        seed_time_bootstrap_mean(np.full((1, 1, 5), np.nan))
