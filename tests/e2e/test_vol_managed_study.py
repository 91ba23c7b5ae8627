"""The vol_managed study: per volatility input (MTL head, single-task model, EWMA, trailing
realised vol), seed means and the paired Sharpe difference against the trailing realised vol
on the same bars; real backtests of real (tiny) fold models in a compare-shaped folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt import config as config_mod
from mtl_bt import stats
from mtl_bt.compare.vol_managed import backtests, table
from mtl_bt.data.synthetic import garch_bars


def test_table_pairs_every_forecast_with_the_trailing_vol():
    rng = np.random.default_rng(0)
    index = pd.date_range("2020-01-01", periods=400, freq="1D", tz="UTC")
    base = rng.normal(0.0005, 0.01, size=(2, 400))
    series = {
        "mtl": [pd.Series(b + 0.001, index=index) for b in base],
        "single_task": [pd.Series(b, index=index) for b in base],
        "ewma": [pd.Series(b - 0.001, index=index) for b in base],
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
    assert out.loc["ewma", "ΔSharpe vs trailing"] < 0 < out.loc["mtl", "ΔSharpe vs trailing"]
    assert pd.isna(out.loc["trailing", "ΔSharpe vs trailing"])
    # the learned forecasts against EWMA, and joint training against the single-task model
    single = stats.sharpe(base.mean(axis=0)) * np.sqrt(252)
    ewma = stats.sharpe(base.mean(axis=0) - 0.001) * np.sqrt(252)
    assert out.loc["mtl", "ΔSharpe vs ewma"] == pytest.approx(expected + single - ewma)
    assert out.loc["single_task", "ΔSharpe vs ewma"] == pytest.approx(single - ewma)
    assert out.loc["mtl", "ΔSharpe vs single_task"] == pytest.approx(expected)
    assert out.loc["mtl", "95% CI (single_task)"].startswith("[")
    assert pd.isna(out.loc["ewma", "ΔSharpe vs ewma"])
    assert pd.isna(out.loc["single_task", "ΔSharpe vs single_task"])
    assert pd.isna(out.loc["trailing", "ΔSharpe vs ewma"])


def _config(tasks):
    return config_mod.from_dict(
        {
            "data": {"source": "csv", "symbols": ["AAA", "BBB"], "timeframe": "1d"},
            "features": {"names": ["log_return", "volatility"]},
            "tasks": tasks,
            "model": {"hidden": [8], "dropout": 0.0},
            "training": {"epochs": 1, "batch_size": 64, "seed": 0},
            "walk_forward": {"train_bars": 200, "test_bars": 150, "max_folds": 2},
            "backtest": {"max_weight": 0.5},
        }
    )


def test_study_backtests_every_input_on_the_same_bars(tmp_path):
    """A compare-shaped folder (MTL run, single-task members) from real training: the
    table has the four rows, EWMA sizes differently from the trailing vol, and the single
    task ensemble and the MTL model trade the same bars."""
    from mtl_bt.training.pipeline import train_walk_forward

    frames = {s: garch_bars(560, seed=i + 7, symbol=s) for i, s in enumerate(["AAA", "BBB"])}
    vol = {"name": "volatility", "horizons": [1]}
    ret = {"name": "return", "horizons": [1]}
    cfg = _config([ret, vol])
    runs = tmp_path / "runs"
    train_walk_forward(cfg, frames, runs / "mtl" / "seed_0")
    members = runs / "st_ensemble[shared_bottom]" / "seed_0" / "members"
    for task, spec in (("return@1", ret), ("volatility@1", vol)):
        train_walk_forward(_config([spec]), frames, members / task)
    series, metrics = backtests(tmp_path, "mtl", "shared_bottom", [0], frames, cfg, 0.05)
    out = table(series, metrics, 252.0).set_index("volatility input")
    assert list(out.index) == ["mtl", "single_task", "ewma", "trailing"]
    assert np.isfinite(out.loc["ewma", "ΔSharpe vs trailing"])
    assert out.loc["ewma", "95% CI"].startswith("[")
    ewma, trailing = series["ewma"][0], series["trailing"][0]
    assert ewma.index.equals(trailing.index) and ewma.index.equals(series["mtl"][0].index)
    assert not np.allclose(ewma.to_numpy(), trailing.to_numpy())  # another sizing input
    assert metrics["ewma"][0]["turnover"] != metrics["trailing"][0]["turnover"]


def test_holm_runs_over_every_comparison_of_every_target():
    from mtl_bt.compare.vol_managed import with_holm

    frame = pd.DataFrame(
        {
            "target_vol": [0.05, 0.05, 0.1, 0.1],
            "p vs trailing": [0.01, np.nan, 0.04, 0.5],
            "p vs ewma": [0.02, np.nan, np.nan, np.nan],
        }
    )
    out = with_holm(frame)
    # one family of 4 finite p-values: 0.01, 0.02, 0.04, 0.5 -> 0.04, 0.06, 0.08, 0.5
    np.testing.assert_allclose(out["p Holm vs trailing"], [0.04, np.nan, 0.08, 0.5])
    np.testing.assert_allclose(out["p Holm vs ewma"], [0.06, np.nan, np.nan, np.nan])
