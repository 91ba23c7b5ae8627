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
    assert list(out.index) == ["mtl", "single_task", "ewma", "har", "trailing"]
    for name in ("ewma", "har"):
        assert np.isfinite(out.loc[name, "ΔSharpe vs trailing"])
        assert out.loc[name, "95% CI"].startswith("[")
        got, trailing = series[name][0], series["trailing"][0]
        assert got.index.equals(trailing.index) and got.index.equals(series["mtl"][0].index)
        assert not np.allclose(got.to_numpy(), trailing.to_numpy())  # another sizing input
        assert metrics[name][0]["turnover"] != metrics["trailing"][0]["turnover"]
    assert not np.allclose(series["ewma"][0].to_numpy(), series["har"][0].to_numpy())
    assert np.isfinite(out.loc["mtl", "ΔSharpe vs har"])


def _study_folder(tmp_path):
    from mtl_bt.training.pipeline import train_walk_forward

    frames = {s: garch_bars(560, seed=i + 7, symbol=s) for i, s in enumerate(["AAA", "BBB"])}
    cfg = _config([{"name": "return", "horizons": [1]}, {"name": "volatility", "horizons": [1]}])
    run = tmp_path / "runs" / "mtl" / "seed_0"
    train_walk_forward(cfg, frames, run)
    return cfg, frames, run


def test_a_forecast_table_sizes_exactly_like_the_head_it_holds(tmp_path):
    """ForecastPredictor fed the head's own forecasts for every bar trades exactly what the
    head trades (each feature row found its bar); a table missing a bar is an error."""
    from mtl_bt.backtesting.runner import run_backtest
    from mtl_bt.compare.vol_managed import ForecastPredictor, forecast_keys
    from mtl_bt.predictor import Predictor

    cfg, frames, run = _study_folder(tmp_path)
    models = [Predictor.from_checkpoint(p) for p in sorted((run / "checkpoints").glob("*.pt"))]
    task = "volatility@1"
    rows = []
    for m in models:  # the head's forecast of every bar of its own test window
        for symbol, frame in frames.items():
            feats = m.features(frame)
            lo, hi = m.fold["test_start"], m.fold["test_end"]
            window = feats[(feats.index >= lo) & (feats.index <= hi)]
            x = window.to_numpy(dtype=np.float32)
            vol = m.predict(x, np.full(len(x), m.asset_ids([symbol])[0]))[task]
            rows.append(pd.DataFrame({"datetime": window.index, "symbol": symbol, "own": vol}))
    own = pd.concat(rows, ignore_index=True)
    bt = cfg.backtest.model_copy(
        update={"signal": "vol_managed", "signal_options": {"target_vol": 0.05}}
    )
    bt = bt.model_copy(update={"mode": "precomputed"})
    keys = forecast_keys(models[0], frames, own, "own", task)
    head = run_backtest(frames, models, bt)
    table = run_backtest(frames, [ForecastPredictor(m, task, keys) for m in models], bt)
    pd.testing.assert_frame_equal(head.orders, table.orders)
    assert head.metrics["sharpe"] == table.metrics["sharpe"]
    # a bar without a forecast is an error, not a silent fallback to the trailing vol
    keys = forecast_keys(models[0], frames, own.iloc[5:], "own", task)
    with pytest.raises(RuntimeError, match="matches no bar"):
        run_backtest(frames, [ForecastPredictor(m, task, keys) for m in models], bt)


def test_grid_publishes_every_target_in_one_table_with_dsr(tmp_path):
    """One command, a grid of targets: one row per input and target, Holm over all of them,
    the DSR deflated for every input x seed x target tried."""
    from mtl_bt.compare import vol_managed as vm
    from mtl_bt.config import dumps
    from mtl_bt.training.pipeline import train_walk_forward

    cfg, frames, run = _study_folder(tmp_path)
    members = tmp_path / "runs" / "st_ensemble[shared_bottom]" / "seed_0" / "members"
    for spec in ({"name": "return", "horizons": [1]}, {"name": "volatility", "horizons": [1]}):
        train_walk_forward(_config([spec]), frames, members / f"{spec['name']}@1")
    (tmp_path / "config.toml").write_text(dumps(cfg))
    (run / "metrics.json").write_text('{"periods_per_year": 252}')
    out = vm.grid(str(tmp_path), "mtl", "shared_bottom", 1, [0.05, 0.1], frames=frames)
    assert list(out["target_vol"]) == [0.05] * 5 + [0.1] * 5
    assert list(out["volatility input"]) == list(vm.INPUTS) * 2
    assert (out["DSR trials"] == 10).all()  # 5 inputs x 1 seed x 2 targets
    ok = out["DSR"].notna()
    assert ok.any() and ((out.loc[ok, "DSR"] >= 0) & (out.loc[ok, "DSR"] <= 1)).all()
    raw = out["p vs trailing"].notna()
    assert (out.loc[raw, "p Holm vs trailing"] >= out.loc[raw, "p vs trailing"]).all()


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
