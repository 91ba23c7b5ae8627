"""Shared fixtures: a REAL tiny walk-forward training run (3 folds) on synthetic bars."""

from __future__ import annotations

import pytest

from mtl_bt import config as config_mod
from mtl_bt.data.synthetic import garch_bars

SYMBOLS = ["AAA", "BBB"]


def tiny_config(**sections):
    data = {
        "data": {"source": "csv", "symbols": SYMBOLS, "timeframe": "1d"},
        "features": {"names": ["log_return", "volatility", "rsi"]},
        "tasks": [
            {"name": "return", "horizons": [1, 3]},
            {"name": "direction", "horizons": [1]},
            {"name": "volatility", "horizons": [1]},
        ],
        "model": {"hidden": [8], "dropout": 0.0, "asset_embedding": 2},
        "training": {"epochs": 1, "batch_size": 64, "seed": 0},
        "walk_forward": {"train_bars": 200, "test_bars": 100, "max_folds": 3},
    }
    data.update(sections)
    return config_mod.from_dict(data)


def make_frames(n: int = 520) -> dict:
    return {s: garch_bars(n, seed=i + 1, symbol=s) for i, s in enumerate(SYMBOLS)}


@pytest.fixture(scope="session")
def frames():
    return make_frames()


@pytest.fixture(scope="session")
def trained(tmp_path_factory, frames):
    """(train dir, config, TrainResult) of a real 3-fold walk-forward run."""
    from mtl_bt.training.pipeline import train_walk_forward

    cfg = tiny_config()
    out = tmp_path_factory.mktemp("train")
    result = train_walk_forward(cfg, frames, out)
    assert len(result.checkpoints) == 3
    return out, cfg, result


@pytest.fixture(scope="session")
def predictors(trained):
    from mtl_bt.backtesting.runner import load_predictors

    return load_predictors(trained[0])


@pytest.fixture(scope="session")
def return_only(tmp_path_factory, frames):
    """Predictors of a real single-task (return@1 only) run: the baseline model."""
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.training.pipeline import train_walk_forward

    cfg = tiny_config(
        tasks=[{"name": "return", "horizons": [1]}],
        walk_forward={"train_bars": 200, "test_bars": 250, "max_folds": 1},
    )
    out = tmp_path_factory.mktemp("train_ret")
    train_walk_forward(cfg, frames, out)
    return load_predictors(out)


@pytest.fixture(scope="session")
def live_run(frames, predictors):
    from mtl_bt.backtesting.runner import run_backtest
    from mtl_bt.config import BacktestConfig

    return run_backtest(frames, predictors, BacktestConfig(mode="live"), record=True)


@pytest.fixture(scope="session")
def precomputed_run(frames, predictors):
    from mtl_bt.backtesting.runner import run_backtest
    from mtl_bt.config import BacktestConfig

    return run_backtest(frames, predictors, BacktestConfig(mode="precomputed"))


@pytest.fixture(scope="session")
def config_factory():
    """``tiny_config(**sections)`` for tests that train their own variant."""
    return tiny_config


# -- bundled real bars: one 24/7 crypto asset (hourly) and one stock (daily) -------------
REAL_SYMBOLS = ["AAPL", "BTC/USDT"]


@pytest.fixture(scope="session")
def real_frames(read_stock, crypto_frames):
    """AAPL daily 2009-2013 (weekdays) and BTC/USDT hourly Jan-Feb 2024 (24/7), real bars."""
    aapl = read_stock("AAPL")
    btc = crypto_frames["BTC/USDT"].iloc[:900]
    aapl = aapl[aapl.index >= "2009-06-01"]
    return {"AAPL": aapl, "BTC/USDT": btc}


@pytest.fixture(scope="session")
def real_model(tmp_path_factory, read_stock):
    """A single real model (every built-in feature, no asset embedding) trained on AAPL
    2003-2009; it is used on AAPL after its train_end and on BTC/USDT (a single model
    ignores its test_end), so both calendars trade."""
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.training.pipeline import train_walk_forward

    cfg = config_mod.from_dict(
        {
            "data": {"source": "csv", "symbols": ["AAPL"], "timeframe": "1d"},
            "tasks": [
                {"name": "return", "horizons": [1]},
                {"name": "direction", "horizons": [1]},
                {"name": "volatility", "horizons": [1]},
            ],
            "model": {"hidden": [8], "dropout": 0.0},
            "training": {"epochs": 2, "batch_size": 64, "seed": 0},
            "walk_forward": {"train_bars": 1200, "test_bars": 200, "max_folds": 1},
        }
    )
    aapl = read_stock("AAPL")
    frame = aapl[(aapl.index >= "2003-01-01") & (aapl.index < "2009-06-01")]
    out = tmp_path_factory.mktemp("train_real")
    train_walk_forward(cfg, {"AAPL": frame}, out)
    return load_predictors(out)
