"""Separable signal rules applied to whole arrays before the run (precomputed mode) give
exactly the orders of calling the rule bar by bar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt import registry
from mtl_bt.backtesting.runner import run_backtest
from mtl_bt.config import BacktestConfig


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.orders, b.orders)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_series_equal(a.returns, b.returns)


@pytest.mark.parametrize(
    ("signal", "options"),
    [
        ("agree_voltarget", {}),  # hysteresis: not separable, bar by bar on every path
        ("agree_voltarget", {"hysteresis": False}),
        ("sign", {}),
        ("vol_managed", {}),
    ],
)
@pytest.mark.parametrize("rebalance", ["bar", "horizon"])
def test_vectorised_rule_equals_per_bar_rule(
    frames, predictors, signal, options, rebalance, monkeypatch
):
    from mtl_bt.strategies import MTLStrategy

    cfg = BacktestConfig(
        mode="precomputed",
        signal=signal,
        signal_options=options,
        rebalance=rebalance,
        max_weight=0.4,
    )
    fast = run_backtest(frames, predictors, cfg)
    live = run_backtest(frames, predictors, cfg.model_copy(update={"mode": "live"}))
    monkeypatch.setattr(MTLStrategy, "vector_signals", False)  # the rule called bar by bar
    slow = run_backtest(frames, predictors, cfg)
    assert slow.strategy._raw is None
    # hysteresis: separable on a flat batch only, still precomputed for those decisions
    st = fast.strategy
    assert (st._raw is not None) == (st._separable or st._flat_separable)
    assert st._flat_separable == (signal == "agree_voltarget" and not options)
    # live mode calls a separable rule's raw_weights + the clip (no current weights)
    live_slow = run_backtest(frames, predictors, cfg.model_copy(update={"mode": "live"}))
    assert len(fast.orders) > 0
    _same(fast, slow)
    _same(fast, live)
    _same(live, live_slow)


def test_built_in_rules_are_separable_and_elementwise():
    rng = np.random.default_rng(0)
    preds = {
        "return@1": rng.normal(0, 0.01, 40),
        "direction@1": rng.uniform(0, 1, 40),
        "volatility@1": rng.uniform(0.001, 0.03, 40),
    }
    preds["volatility@1"][3] = np.nan
    ctx = dict(
        periods_per_year=np.full(40, 252.0),
        realised_vol=rng.uniform(0.005, 0.02, 40),
        ewma_vol=rng.uniform(0.005, 0.02, 40),
    )
    ctx["ewma_vol"][7] = np.nan
    limits = dict(max_weight=0.3, max_gross_leverage=1.0, allow_short=True, n_assets=40)
    from mtl_bt.signals.clip import clip_weights

    for name, options in (
        ("agree_voltarget", {"hysteresis": False}),
        ("agree_voltarget", {"hysteresis": False, "volatility_input": "ewma"}),
        ("sign", {}),
        ("vol_managed", {}),
        ("vol_managed", {"volatility_input": "ewma"}),
    ):
        rule = registry.create("signal", name, **options)
        assert rule.separable
        raw = rule.raw_weights(preds, **ctx, **limits)
        # one asset at a time = all at once (elementwise)
        one = [
            rule.raw_weights(
                {k: v[i : i + 1] for k, v in preds.items()},
                **{k: v[i : i + 1] for k, v in ctx.items()},
                **limits,
            )[0]
            for i in range(40)
        ]
        np.testing.assert_array_equal(raw, one)
        batch = np.arange(5, 17)
        np.testing.assert_array_equal(
            rule.weights(
                {k: v[batch] for k, v in preds.items()},
                **{k: v[batch] for k, v in ctx.items()},
                **limits,
            ),
            clip_weights(raw[batch], 0.3, 1.0, True),
        )


def test_a_subclass_overriding_weights_is_called_bar_by_bar():
    from mtl_bt.plugins.signals.agree_voltarget import AgreeVolTarget
    from mtl_bt.signals.context import is_separable

    class Spy(AgreeVolTarget):
        def weights(self, predictions, **context):
            return super().weights(predictions, **context)

    class Declared(Spy):
        separable = True

    class OnlyRaw(AgreeVolTarget):
        def raw_weights(self, predictions, **context):
            return super().raw_weights(predictions, **context)

    memoryless = {"hysteresis": False}
    assert is_separable(AgreeVolTarget(**memoryless)) and is_separable(OnlyRaw(**memoryless))
    assert not is_separable(Spy(**memoryless))
    assert is_separable(Declared(**memoryless))
    # an instance can withdraw the class's promise (hysteresis reads current weights)
    assert not is_separable(AgreeVolTarget()) and not is_separable(Declared())


@pytest.mark.parametrize("mode", ["precomputed", "live"])
def test_a_rule_separable_when_flat_takes_the_fast_path_on_flat_batches_only(
    frames, predictors, mode, monkeypatch
):
    """The default rule with hysteresis (separable only while the batch holds nothing, and
    trading often with margin 0): flat decisions read the precomputed weights (or call
    raw_weights live) and all-zero flat ones send nothing to the order hook; held ones call
    the rule with the current weights. Same orders, trades and returns as the rule called on
    every decision."""
    from mtl_bt.strategies import MTLStrategy, mtl

    flat_seen, sent = [], [0]
    original_flat, original_send = MTLStrategy._flat, mtl.send_targets

    def spy_flat(self, assets):
        flat_seen.append(original_flat(self, assets))
        return flat_seen[-1]

    def spy_send(strategy, targets, at_open=False):
        sent[0] += 1
        return original_send(strategy, targets, at_open)

    monkeypatch.setattr(MTLStrategy, "_flat", spy_flat)
    monkeypatch.setattr(mtl, "send_targets", spy_send)
    cfg = BacktestConfig(mode=mode, signal_options={"margin": 0.0}, max_weight=0.4)
    fast = run_backtest(frames, predictors, cfg)
    fast_sent = sent[0]
    assert True in flat_seen and False in flat_seen  # both paths ran
    monkeypatch.setattr(MTLStrategy, "vector_signals", False)
    sent[0] = 0
    slow = run_backtest(frames, predictors, cfg)
    assert not slow.strategy._flat_separable and slow.strategy.rule_caller.calls > 0
    assert len(fast.orders) > 5
    _same(fast, slow)
    assert fast.strategy.decisions == slow.strategy.decisions
    assert 0 < fast_sent < sent[0]  # all-zero flat decisions skipped the order hook
    np.testing.assert_array_equal(fast.strategy._held, slow.strategy._held)
    np.testing.assert_array_equal(fast.strategy._due, slow.strategy._due)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"margin": 0.0},
        {"exit_threshold": 0.0, "resize_band": 0.0},
        {"volatility_input": "ewma"},
        {"use_direction": False, "threshold": 0.001},
    ],
)
@pytest.mark.parametrize("allow_short", [True, False])
def test_agree_voltarget_on_a_flat_batch_is_its_memoryless_rule(options, allow_short):
    """The law ``separable_when_flat`` promises: with every current weight 0 (whatever the
    other assets hold), weights == clip_weights(raw_weights without current weights)."""
    from mtl_bt.signals.clip import clip_weights
    from mtl_bt.signals.context import is_separable_when_flat

    rng = np.random.default_rng(1)
    n = 60
    preds = {
        "return@1": rng.normal(0, 0.06, n),
        "direction@1": rng.uniform(0, 1, n),
        "volatility@1": rng.uniform(0.001, 0.03, n),
    }
    preds["return@1"][2] = np.nan
    preds["volatility@1"][3] = np.nan
    ctx = dict(
        periods_per_year=np.full(n, 365.25),  # one decision a day: margin 15
        realised_vol=rng.uniform(0.005, 0.02, n),
        ewma_vol=rng.uniform(0.005, 0.02, n),
        commission=0.001,
        slippage=0.0005,
        n_assets=n,
    )
    limits = dict(max_weight=0.3, max_gross_leverage=1.0, allow_short=allow_short)
    rule = registry.create("signal", "agree_voltarget", **options)
    assert is_separable_when_flat(rule)
    memoryless = clip_weights(rule.raw_weights(preds, **ctx, **limits), **limits)
    assert np.count_nonzero(memoryless) > 0
    got = rule.weights(
        preds,
        **ctx,
        **limits,
        symbols=[f"S{i}" for i in range(n)],
        current_weights=np.zeros(n),
        all_symbols=[f"S{i}" for i in range(n + 3)],
        all_current_weights=np.concatenate([np.zeros(n), [0.2, -0.1, 0.3]]),
    )
    np.testing.assert_array_equal(got, memoryless)
