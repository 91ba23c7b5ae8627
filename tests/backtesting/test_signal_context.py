"""The signal-rule context in a real backtest: documented keys, batch symbols, current
weights of every asset, and the all_assets capability for cross-sectional rules."""

from __future__ import annotations

import types

import numpy as np
import pytest

from mtl_bt import hookimpl, registry
from mtl_bt.config import BacktestConfig
from mtl_bt.signals import SignalRule

CALLS: list[dict] = []
KEYS = {
    "symbols",
    "current_weights",
    "all_symbols",
    "all_current_weights",
    "periods_per_year",
    "realised_vol",
    "commission",
    "slippage",
    "max_weight",
    "max_gross_leverage",
    "allow_short",
    "n_assets",
}


class Recorder(SignalRule):
    """Long 0.4 in every asset of the batch, held 3 bars; records what it was given."""

    def heads(self, task_names):
        return {"return": "return@3"}

    def weights(self, predictions, **context):
        CALLS.append({"n": len(next(iter(predictions.values()))), **context})
        return np.full(len(context["symbols"]), 0.4)


class CrossSectional(Recorder):
    all_assets = True


@pytest.fixture
def recorders():
    module = types.ModuleType("recorders")

    @hookimpl
    def register_signals(register):
        register("recorder", Recorder, "records its context")
        register("cross_recorder", CrossSectional, "records, sees all assets")

    module.register_signals = register_signals
    registry.register_plugin(module, "recorders")
    CALLS.clear()
    yield
    registry.unregister_plugin("recorders")


def _run(frames, predictors, signal):
    from mtl_bt.backtesting.runner import run_backtest

    CALLS.clear()
    run_backtest(frames, predictors, BacktestConfig(signal=signal, rebalance="horizon"))
    return list(CALLS)


def test_every_documented_key_reaches_the_rule(recorders, frames, predictors):
    calls = _run(frames, predictors, "recorder")
    assert calls
    for call in calls:
        assert KEYS <= set(call), KEYS - set(call)
        assert len(call["symbols"]) == call["n"] == len(call["current_weights"])
        assert call["all_symbols"] == ["AAA", "BBB"]
        assert len(call["all_current_weights"]) == 2
        assert set(call["symbols"]) <= set(call["all_symbols"])
    # positions taken earlier show up as current weights later
    assert any(np.abs(c["all_current_weights"]).sum() > 0.1 for c in calls[1:])
    assert all(np.all(np.abs(c["all_current_weights"]) < 0.45) for c in calls)


def test_all_assets_rules_see_the_whole_cross_section_every_decision(recorders, frames, predictors):
    plain = _run(frames, predictors, "recorder")
    cross = _run(frames, predictors, "cross_recorder")
    # rebalance="horizon" with a 3-bar hold: the plain rule decides about every 3rd bar,
    # the cross-sectional one on every bar, always with both assets
    assert cross and all(c["n"] == 2 for c in cross)
    assert len(cross) > 2 * len(plain)
