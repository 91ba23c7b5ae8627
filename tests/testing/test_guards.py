"""Run-time guards: what a misbehaving plugin gets in a real run (clear error, exit 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mtl_bt import registry
from mtl_bt.cli import main
from mtl_bt.config import ModelConfig
from mtl_bt.errors import PluginError
from mtl_bt.models import build_model
from mtl_bt.signals.clip import clip_weights, violations
from mtl_bt.tasks.base import TaskSpec
from mtl_bt.testing import garch_bars
from mtl_bt.training import guards
from mtl_bt.training.trainer import TrainingError

SPECS = [TaskSpec("return@1", "return", 1), TaskSpec("volatility@5", "volatility", 5)]


def _write(tmp_path, **sections):
    from mtl_bt.config import dumps
    from mtl_bt.testing import tiny_config

    path = tmp_path / "cfg.toml"
    path.write_text(dumps(tiny_config(**sections)))
    return path


def test_model_missing_a_head_fails_at_build_naming_it(bad_plugins):
    with pytest.raises(
        PluginError, match=r"'forgets_head': no head for task\(s\) \['volatility@5'\]"
    ):
        build_model(ModelConfig(architecture="forgets_head", hidden=[4]), 3, SPECS)


def test_train_with_a_model_missing_a_head_exits_2_before_any_training(bad_plugins, tmp_path):
    cfg = _write(tmp_path, model={"architecture": "forgets_head", "hidden": [4]})
    result = CliRunner().invoke(main, ["train", str(cfg), "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "no head for task(s) ['volatility@4']" in result.output
    assert "Traceback" not in result.output


def test_nan_combined_loss_names_the_weighting_and_the_step(bad_plugins, tmp_path):
    cfg = _write(tmp_path, weighting={"name": "nan_weighting"})
    result = CliRunner().invoke(main, ["train", str(cfg), "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "epoch 0, step 0: weighting 'nan_weighting' returned a non-finite combined loss" in (
        result.output
    )
    assert "although every task loss was finite" in result.output


def test_trainer_step_guard_directly(bad_plugins):
    from mtl_bt.training.trainer import _check_step

    weighting = registry.create("weighting", "nan_weighting", ["a"])
    with pytest.raises(TrainingError, match="step 7: weighting 'NaNWeighting'"):
        _check_step(weighting, torch.tensor(float("nan")), torch.tensor([1.0]), ["a"], 0, 2, 7)
    with pytest.raises(TrainingError, match=r"training loss of \['a'\] is not finite"):
        _check_step(
            weighting, torch.tensor(float("nan")), torch.tensor([float("inf")]), ["a"], 0, 0, 0
        )


def test_lookahead_feature_stops_the_run_naming_plugin_column_and_bar(bad_plugins, tmp_path):
    cfg = _write(tmp_path, features={"names": ["log_return", "peek"]})
    result = CliRunner().invoke(main, ["train", str(cfg), "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "feature 'peek' from plugin 'bad_plugins' looks ahead on BTC/USDT" in result.output
    assert "column 'peek' first differs at bar" in result.output


def test_guard_checks_only_third_party_items_and_no_guards_skips(bad_plugins, monkeypatch):
    from mtl_bt.features import FeatureSpec
    from mtl_bt.tasks import build_tasks

    frames = {"SYN": garch_bars(600, freq="1h")}
    tasks = build_tasks([{"name": "return", "horizons": [1]}, {"name": "good_return"}])
    spec = FeatureSpec(names=["log_return", "good_sma"])
    assert guards.check_causal(spec, tasks, frames) == 2  # good_sma and good_return
    bad = FeatureSpec(names=["centred"])
    with pytest.raises(PluginError, match="'centred'"):
        guards.check_causal(bad, tasks, frames)
    monkeypatch.setenv("MTL_BT_NO_GUARDS", "1")
    assert guards.check_causal(bad, tasks, frames) == 0


def test_misaligned_task_stops_the_run(bad_plugins):
    from mtl_bt.features import FeatureSpec
    from mtl_bt.tasks import build_tasks

    tasks = build_tasks([{"name": "too_far", "horizons": [2]}])
    with pytest.raises(
        PluginError, match=r"task 'too_far@2' from plugin 'bad_plugins'.*beyond t\+h"
    ):
        guards.check_causal(FeatureSpec(names=["log_return"]), tasks, {"S": garch_bars(400)})


def test_one_clipping_function_for_every_rule():
    from mtl_bt.plugins.signals.common import cap_weights

    assert cap_weights is clip_weights
    w = clip_weights(np.array([5.0, -2.0, np.nan, 0.2]), 0.5, 1.0, allow_short=False)
    assert not violations(w, 0.5, 1.0, False)
    assert w[1] == 0.0 and w[2] == 0.0


def test_signal_rule_over_its_limits_is_clipped_warned_and_counted(bad_plugins, tmp_path):
    """A rule returning weights summing to 5: clipped to max_weight by the strategy, a
    warning naming the rule, and signal_clipped in the run's metrics."""
    import json

    cfg = _write(tmp_path, backtest={"signal": "sums_to_five", "max_weight": 0.3})
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="signal 'sums_to_five' returned weights"):
        result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    found = _find(metrics, "signal_clipped")
    assert found and found > 0, metrics.keys()
    orders = _orders(out)
    if orders is not None:
        assert orders  # something traded


def _find(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            got = _find(v, key)
            if got is not None:
                return got
    return None


def _orders(out):
    return None


def test_rule_caller_returns_clipped_weights_and_counts_each_limit(bad_plugins):
    from mtl_bt.signals.context import RuleCaller, SignalWarning

    caller = RuleCaller(registry.create("signal", "sums_to_five"))
    assert caller.name == "sums_to_five"
    context = dict(max_weight=0.3, max_gross_leverage=0.5, allow_short=True)
    with pytest.warns(SignalWarning, match="signal 'sums_to_five'.*max_weight=0.3"):
        w = caller({"return@1": np.zeros(2)}, symbols=["A", "B"], **context)
    np.testing.assert_allclose(w, [0.25, 0.25])
    caller({"return@1": np.zeros(3)}, symbols=["A", "B", "C"], **context)
    assert caller.clipped_decisions == 2
    assert caller.clipped == {"max_weight=0.3": 2, "max_gross_leverage=0.5": 2}


def test_rule_returning_the_wrong_number_of_weights_is_named(bad_plugins):
    from mtl_bt.signals.context import RuleCaller

    class Short(registry.get("signal", "sums_to_five")):
        def weights(self, predictions, **context):
            return np.zeros(1)

    with pytest.raises(PluginError, match="1 weights for a batch of 2 assets"):
        RuleCaller(Short(), "short")(
            {"r": np.zeros(2)},
            symbols=["A", "B"],
            max_weight=1,
            max_gross_leverage=1,
            allow_short=True,
        )
