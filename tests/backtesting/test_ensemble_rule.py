"""The single-task ensemble is traded by the same rule with the same inputs as the MTL model:
an ensemble whose members are copies of the MTL model's heads gets identical rule inputs
and places identical orders (real checkpoints, real Backtrader). And ``vol_managed``."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_bt.backtesting.runner import run_backtest
from mtl_bt.compare.ensemble import EnsemblePredictor, HeadSubset
from mtl_bt.config import BacktestConfig
from mtl_bt.errors import CheckpointError
from mtl_bt.plugins.signals.agree_voltarget import AgreeVolTarget
from mtl_bt.plugins.signals.vol_managed import VolManaged


class Spy(AgreeVolTarget):
    """agree_voltarget that records every call's inputs."""

    def __init__(self, **options):
        super().__init__(**options)
        self.calls = []

    def weights(self, predictions, **context):
        self.calls.append(
            (
                {k: np.array(v) for k, v in predictions.items()},
                {k: np.array(v) for k, v in context.items()},
            )
        )
        return super().weights(predictions, **context)


def _ensemble_of_heads(predictors):
    """Per fold: one member per task, each a copy of that MTL head (same weights)."""
    return [
        EnsemblePredictor([HeadSubset(p, [t]) for t in p.task_names], p.task_names)
        for p in predictors
    ]


@pytest.mark.parametrize("mode", ["live", "precomputed"])
def test_rule_gets_identical_inputs_from_mtl_and_an_ensemble_of_its_heads(frames, predictors, mode):
    cfg = BacktestConfig(mode=mode)
    spy_mtl, spy_ens = Spy(), Spy()
    mtl = run_backtest(frames, predictors, cfg, signal=spy_mtl)
    ens = run_backtest(frames, _ensemble_of_heads(predictors), cfg, signal=spy_ens)
    assert len(spy_mtl.calls) == len(spy_ens.calls) > 10
    for (p1, c1), (p2, c2) in zip(spy_mtl.calls, spy_ens.calls, strict=True):
        assert list(p1) == list(p2)  # the same heads, in the same order
        for k in p1:
            np.testing.assert_array_equal(p1[k], p2[k])
        assert c1.keys() == c2.keys()
        for k in c1:
            np.testing.assert_array_equal(c1[k], c2[k])
    assert mtl.orders.equals(ens.orders)
    assert mtl.returns.equals(ens.returns)
    # the rule reads the direction and volatility heads, not its fallbacks
    assert set(mtl.strategy.used_tasks) == {"return@1", "direction@1", "volatility@1"}


def test_ensemble_refuses_members_of_other_folds(predictors):
    with pytest.raises(CheckpointError, match="same fold"):
        EnsemblePredictor(
            [HeadSubset(predictors[0], ["return@1"]), HeadSubset(predictors[1], ["direction@1"])]
        )
    with pytest.raises(CheckpointError, match="predicted by members"):
        EnsemblePredictor([HeadSubset(predictors[0], ["return@1"])] * 2)


def test_vol_managed_sizes_by_predicted_vol():
    rule = VolManaged(target_vol=0.2)
    preds = {
        "return@1": np.array([-0.01, 0.02, 0.0]),
        "volatility@1": np.array([0.01, 0.02, np.nan]),
    }
    w = rule.weights(
        preds,
        periods_per_year=100.0,
        max_weight=1.5,
        max_gross_leverage=3.0,
        realised_vol=np.array([0.05, 0.05, 0.04]),
        n_assets=3,
    )
    # 0.2 / (0.01 * 10) = 2 -> capped 1.5; 0.2 / 0.2 = 1; NaN head -> realised 0.04 -> 0.5
    np.testing.assert_allclose(w, [1.5, 1.0, 0.5])
    assert (w >= 0).all()  # long only: the return's sign is not used
    off = VolManaged(target_vol=0.2, use_volatility=False)
    w = off.weights(
        preds, periods_per_year=100.0, realised_vol=np.array([0.1, 0.2, 0.4]), n_assets=3
    )
    np.testing.assert_allclose(w, np.array([0.2, 0.1, 0.05]) / 1.0)
    with pytest.raises(Exception, match="target_vol"):
        VolManaged(target_vol=0)


def test_vol_managed_backtest_is_long_only(frames, predictors):
    res = run_backtest(frames, predictors, BacktestConfig(signal="vol_managed"))
    assert res.metrics["exposure"] > 0.5
    assert (res.strategy.analyzers.portfolio.get_analysis()["positions"] >= -1e-9).all()
    assert set(res.strategy.used_tasks) == {"return@1", "volatility@1"}
