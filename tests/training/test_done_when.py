"""Issue 4 "Done when": every architecture trains with every task on the bundled data
and beats a shuffled-target control on the volatility task out of sample."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_bt import registry
from mtl_bt.config import Config
from mtl_bt.data import load_frames
from mtl_bt.training import build_components, build_dataset
from mtl_bt.training.pipeline import splits_for, train_fold
from mtl_bt.training.trainer import make_batches, predict_raw

VOL = "volatility@24"


def _config(architecture: str) -> Config:
    return Config.model_validate(
        {
            "data": {
                "source": "sample",
                "symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT", "AVAX/USDT", "DOT/USDT"],
                "timeframe": "1h",
                "since": "2024-03-01",
                "until": "2024-04-28",
            },
            "features": {"names": ["log_return", "volatility", "parkinson", "volume_ratio"]},
            "tasks": [
                {"name": "return", "horizons": [1]},
                {"name": "direction", "horizons": [1]},
                {"name": "volatility", "horizons": [24]},
                {"name": "volume", "horizons": [4]},
            ],
            "model": {"architecture": architecture, "hidden": [16], "dropout": 0.0},
            "training": {"epochs": 8, "batch_size": 256, "patience": 8, "lr": 5e-2, "seed": 0},
            "walk_forward": {"train_bars": 700, "test_bars": 600, "max_folds": 1},
        }
    )


@pytest.fixture(scope="module")
def bundled():
    cfg = _config("shared_bottom")
    frames = load_frames(cfg.data)
    comp = build_components(cfg)
    ds = build_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)
    rows = np.flatnonzero(ds.trainable)
    shuffled = ds.targets.copy()  # same rows, targets permuted jointly: no feature->target link
    shuffled[rows] = ds.targets[np.random.default_rng(0).permutation(rows)]
    return ds, shuffled


def _oos_vol(cfg, ds, targets=None):
    comp = build_components(cfg)
    split = splits_for(cfg, ds)[0]
    model, fit, fd = train_fold(cfg, comp, ds, split, targets=targets)
    assert fit.epochs_run >= 1 and np.isfinite(fit.best_val_score)
    pred = predict_raw(model, comp.tasks, make_batches(fd.scaled, fd.test_rows, ds.asset, None, 1))
    for task in comp.tasks:  # every task produced finite out-of-sample predictions
        assert np.isfinite(pred[task.name]).all(), task.name
    y = ds.targets[fd.test_rows, ds.task_names.index(VOL)]
    ok = np.isfinite(y)
    assert ok.sum() > 2000
    lp, ly = np.log(pred[VOL][ok]), np.log(y[ok])
    return float(np.corrcoef(lp, ly)[0, 1]), float(np.sqrt(np.mean((lp - ly) ** 2)))


@pytest.mark.slow
@pytest.mark.parametrize("architecture", registry.names("architecture"))
def test_architecture_beats_shuffled_targets_on_volatility(bundled, architecture):
    ds, shuffled = bundled
    cfg = _config(architecture)
    corr, rmse = _oos_vol(cfg, ds)
    corr_ctrl, rmse_ctrl = _oos_vol(cfg, ds, targets=shuffled)
    # log-vol correlation: hourly crypto vol clusters, the real model must see it
    assert corr > 0.3, (architecture, corr, corr_ctrl, rmse, rmse_ctrl)
    assert corr > corr_ctrl + 0.2, (architecture, corr, corr_ctrl, rmse, rmse_ctrl)
    # and lower RMSE of log vol than the control (which can only learn the mean)
    assert rmse < rmse_ctrl, (architecture, corr, corr_ctrl, rmse, rmse_ctrl)
