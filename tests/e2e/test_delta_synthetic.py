"""Δm on synthetic markets with a known answer (real torch training, real walk-forward folds).

Both markets have a latent z_t = cos(3 r_t / sigma), a nonlinear function of the last bar's
return (a feature), and the next return r_{t+1} = 0.25 sigma (z_t - 0.3) + sigma e. In the
*shared* market the next bar's log volume is z_t + noise too: the volume task teaches the
shared layers z with clean labels, which the noisy return labels alone barely do, so the MTL
model beats the single-task ensemble on return rank IC beyond the bootstrap CI and Δm > 0.
In the *independent* market volume follows its own AR(1): the tasks share nothing, and Δm's
CI contains 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt import config as config_mod
from mtl_bt.compare.delta import bootstrap_delta, task_metric_specs
from mtl_bt.compare.ensemble import merge_predictions
from mtl_bt.tasks import build_tasks

SYMBOLS = ["S1", "S2"]
TASKS = [
    {"name": "return", "horizons": [1], "options": {"scale": 0.01}},
    {"name": "volume", "horizons": [1]},
]


def market(n: int, seed: int, shared: bool, symbol: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sigma = 0.01
    r = np.zeros(n)
    log_volume = np.zeros(n)
    for t in range(1, n):
        z = np.cos(3.0 * r[t - 1] / sigma)
        r[t] = 0.25 * sigma * (z - 0.3) + sigma * rng.standard_normal()
        if shared:
            log_volume[t] = z + 0.3 * rng.standard_normal()
        else:
            log_volume[t] = 0.7 * log_volume[t - 1] + 0.5 * rng.standard_normal()
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]])
    index = pd.date_range("2000-01-01", periods=n, freq="1D", tz="UTC", name="datetime")
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": 1e6 * np.exp(log_volume),
        },
        index=index,
    )
    frame.attrs.update(symbol=symbol, timeframe="1d", source="synthetic")
    return frame


def _config(tasks):
    return config_mod.from_dict(
        {
            "data": {"source": "csv", "symbols": SYMBOLS, "timeframe": "1d"},
            "features": {"names": ["log_return", "volume_ratio"]},
            "tasks": tasks,
            "model": {"hidden": [16, 8], "dropout": 0.0},
            "training": {"epochs": 10, "batch_size": 128, "lr": 0.005, "seed": 0, "patience": 3},
            "walk_forward": {"train_bars": 1500, "test_bars": 1000, "max_folds": 2},
        }
    )


def _delta(shared: bool):
    from mtl_bt.training.pipeline import train_walk_forward

    offset = 0 if shared else 50
    frames = {s: market(3600, i + offset, shared, s) for i, s in enumerate(SYMBOLS)}
    mtl = train_walk_forward(_config(TASKS), frames)
    names = ["return@1", "volume@1"]
    singles = [train_walk_forward(_config([t]), frames) for t in TASKS]
    ensemble = merge_predictions(
        [
            r.predictions[["datetime", "symbol", "fold", n, f"target_{n}"]]
            for r, n in zip(singles, names, strict=True)
        ]
    )
    specs = task_metric_specs(build_tasks(_config(TASKS).tasks))
    return bootstrap_delta(mtl.predictions, ensemble, specs, n_boot=200)


@pytest.mark.parametrize("shared", [True, False], ids=["shared_factor", "independent"])
def test_delta_m_finds_the_shared_factor_and_only_it(shared):
    res = _delta(shared)
    diff, low, high = res.per_task["return@1"]
    assert low <= diff <= high and res.low <= res.delta_m <= res.high
    if shared:
        assert low > 0  # MTL's return rank IC beats the single-task model beyond the CI
        assert res.delta_m > 0
    else:
        assert res.low < 0 < res.high  # no evidence either way


def test_relative_change_signs():
    from mtl_bt.compare.delta import TaskMetric, delta_m_of, relative

    assert relative(0.6, 0.5, True) == pytest.approx(0.2)
    assert relative(0.4, 0.5, False) == pytest.approx(0.2)  # lower QLIKE is better
    specs = [TaskMetric("return@1", "rank_ic"), TaskMetric("volatility@1", "qlike", False)]
    dm = delta_m_of(
        {"return@1": 0.06, "volatility@1": 0.3}, {"return@1": 0.05, "volatility@1": 0.4}, specs
    )
    assert dm == pytest.approx((0.2 + 0.25) / 2)


def _frames(n_t: int, seed: int):
    """Seed-averaged prediction tables of an MTL and a single-task model on 3 symbols: the
    single-task return prediction is noise (rank IC ~ 0), its volume prediction is good."""
    from mtl_bt.compare.delta import TaskMetric

    rng = np.random.default_rng(seed)
    times = pd.date_range("2020-01-01", periods=n_t, freq="1D", tz="UTC")
    rows = pd.MultiIndex.from_product([times, ["A", "B", "C"]], names=["datetime", "symbol"])
    n = len(rows)
    y_ret, y_vol = rng.normal(size=n), rng.normal(size=n)
    base = pd.DataFrame({"target_return@1": y_ret, "target_volume@1": y_vol}, index=rows)
    single = base.assign(**{"return@1": rng.normal(size=n), "volume@1": y_vol + rng.normal(size=n)})
    mtl = base.assign(
        **{"return@1": 0.2 * y_ret + rng.normal(size=n), "volume@1": y_vol + rng.normal(size=n)}
    )
    specs = [TaskMetric("return@1", "rank_ic"), TaskMetric("volume@1", "ic")]
    return mtl.reset_index(), single.reset_index(), specs


def test_a_single_task_metric_near_zero_is_flagged_not_divided_by():
    mtl, single, specs = _frames(400, 0)
    res = bootstrap_delta(mtl, single, specs, n_boot=200)
    assert res.flagged == ["return@1"]  # S = rank IC of noise: within 1.96 s.e. of 0
    # LibMTL's Δm over the tasks left: the volume relative change only
    assert res.delta_m == pytest.approx(res.relative["volume@1"])
    assert abs(res.relative["return@1"]) > 1.0  # what dividing by ~0 would have added
    # the stable form: every task, each difference over the single-task metric's s.e.
    sigma = res.scale
    expected = np.mean([res.per_task[t][0] / sigma[t] for t in ("return@1", "volume@1")])
    assert res.stable == pytest.approx(expected)
    assert res.stable_low <= res.stable <= res.stable_high
    assert all(0 < s < 0.1 for s in sigma.values())
    assert res.p_values["return@1"] < 0.05  # MTL's real return signal vs noise


def test_stable_delta_m_does_not_swing_with_the_bootstrap_seed():
    mtl, single, specs = _frames(400, 0)
    a = bootstrap_delta(mtl, single, specs, n_boot=200, seed=1)
    b = bootstrap_delta(mtl, single, specs, n_boot=200, seed=2)
    width = a.stable_high - a.stable_low
    assert abs(a.stable_low - b.stable_low) < 0.25 * width
    assert abs(a.stable_high - b.stable_high) < 0.25 * width


@given(
    st.floats(-5, 5, allow_nan=False),
    st.floats(0.01, 3, allow_nan=False),
    st.integers(0, 10**6),
)
def test_bootstrap_z_p_is_the_normal_two_sided_p(point, sd, seed):
    """The per-task p-value is the z-test on the bootstrap standard error: two-sided
    normal tail of |point| / sd, so it resolves p far below 1 / (number of resamples)."""
    from statistics import NormalDist

    from mtl_bt.compare.delta import bootstrap_z_p

    draws = np.random.default_rng(seed).normal(point, sd, 300)
    z = abs(point) / float(np.std(draws, ddof=1))
    want = 2 * (1 - NormalDist().cdf(z)) if z < 8 else 0.0
    assert bootstrap_z_p(point, draws) == pytest.approx(want, abs=1e-12)
    if z > 4.5:  # the share of resamples crossing 0 would say 0: beyond 300 draws' reach
        assert bootstrap_z_p(point, draws) < 1 / 300
        assert bootstrap_z_p(point, draws) > 0 or z >= 38
    assert np.isnan(bootstrap_z_p(point, np.full(5, point)))  # too few resamples
    assert bootstrap_z_p(0.0, np.zeros(20)) == 1.0
