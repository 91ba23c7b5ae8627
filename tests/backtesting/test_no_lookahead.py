"""Proof of no look-ahead with REAL trained checkpoints: parity, perturbed future, walk-forward."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt.backtesting.runner import run_backtest
from mtl_bt.config import BacktestConfig

KEYS = ["datetime", "symbol", "side", "status"]


def _same_orders(a: pd.DataFrame, b: pd.DataFrame, tol: float = 1e-6, cash: float = 1e5) -> None:
    """Same bars, symbols, sides, statuses and fill prices; order value equal to within
    ``tol`` of the portfolio (float32 inference on a batch of 2 rows vs 500 rows differs
    in the last bits, and a small rebalance is a difference of two large numbers)."""
    assert len(a) == len(b) and len(a) > 0
    pd.testing.assert_frame_equal(a[KEYS].reset_index(drop=True), b[KEYS].reset_index(drop=True))
    np.testing.assert_allclose(a["price"].to_numpy(), b["price"].to_numpy(), rtol=1e-12)
    value_a = (a["size"] * a["price"]).to_numpy()
    value_b = (b["size"] * b["price"]).to_numpy()
    np.testing.assert_allclose(value_a, value_b, rtol=0, atol=tol * cash)


def test_parity_bar_by_bar_equals_vectorised_and_modes_agree(
    frames, predictors, live_run, precomputed_run
):
    live, pre = live_run, precomputed_run
    strat = live.strategy
    assert strat.predictions_log, "the live run made no forward pass"
    # one vectorised pass over the same causal features, per fold model
    feats = {s: predictors[0].features(f) for s, f in frames.items()}
    vec = {
        k: p.predict_frame(feats).set_index(["datetime", "symbol"])
        for k, p in enumerate(predictors)
    }
    fold_at = dict(strat.used_folds)
    lookup = {}
    for f in frames.values():
        from mtl_bt.backtesting.feeds import bt_datenums

        lookup.update(zip(bt_datenums(f.index).tolist(), f.index, strict=True))
    checked = 0
    for dt, assets, preds in strat.predictions_log:
        k = fold_at.get(dt)
        if k is None:  # bar whose predictions were all dropped (never happens with a real model)
            continue
        ts = lookup[dt]
        for j, a in enumerate(assets):
            row = vec[k].loc[(ts, strat.symbols[a])]
            for task, values in preds.items():
                assert values[j] == pytest.approx(row[task], rel=1e-6, abs=1e-6)
                checked += 1
    assert checked > 100
    _same_orders(live.orders, pre.orders)
    np.testing.assert_allclose(
        live.returns.to_numpy(), pre.returns.to_numpy(), rtol=1e-6, atol=1e-9
    )


def test_streaming_features_recomputed_each_bar_give_the_same_orders(frames, predictors):
    small = {s: f.iloc[:330] for s, f in frames.items()}
    base = run_backtest(small, predictors, BacktestConfig(), record=True)
    live = run_backtest(small, predictors, BacktestConfig(), record=True, streaming=True)
    a, b = base.strategy.predictions_log, live.strategy.predictions_log
    assert len(a) == len(b) > 50
    for (dt1, as1, p1), (dt2, as2, p2) in zip(a, b, strict=True):
        assert dt1 == dt2 and as1 == as2
        for task in p1:
            np.testing.assert_allclose(p1[task], p2[task], rtol=1e-5, atol=1e-6)
    _same_orders(base.orders, live.orders, tol=1e-5)


def _perturb_after(frames: dict, cut: pd.Timestamp, seed: int = 7) -> dict:
    """Every bar after ``cut`` multiplied by random noise (prices and volume)."""
    rng = np.random.default_rng(seed)
    noisy = {}
    for s, f in frames.items():
        g = f.copy()
        after = g.index > cut
        factor = np.exp(rng.normal(0, 0.05, after.sum()))
        for col in ("open", "high", "low", "close"):
            g.loc[after, col] = g.loc[after, col] * factor
        g.loc[after, "volume"] = g.loc[after, "volume"] * np.exp(rng.normal(0, 0.5, after.sum()))
        g.attrs = dict(f.attrs)
        noisy[s] = g
    return noisy


def _created(strat, upto: float) -> list[tuple]:
    """(creation time, symbol, side, signed size) of every order created at or before ``upto``,
    whatever became of it (filled after ``upto``, rejected, ...)."""
    return [
        (o.created.dt, o.data._name, "buy" if o.isbuy() else "sell", o.created.size)
        for o in strat.broker.orders
        if o.created.dt <= upto
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"hysteresis": False, "margin": 0.0},  # memoryless: trades on most bars
        {"margin": 0.0, "resize_band": 0.0},  # the default's hysteresis (reads current weights)
    ],
    ids=["memoryless", "hysteresis"],
)
@pytest.mark.parametrize("mode", ["live", "precomputed"])
def test_perturbed_future_leaves_every_decision_up_to_t_unchanged(
    frames, predictors, mode, options
):
    """Noise on every bar after T: each bar's predictions up to and including T, and every
    order created up to and including T (sizes too), are exactly unchanged. Every-bar
    rebalancing without a no-trade band, so a changed prediction cannot hide in the band;
    the predictions themselves are compared bit for bit anyway."""
    from mtl_bt.backtesting.feeds import bt_datenums

    cfg = BacktestConfig(mode=mode, rebalance="bar", min_trade_weight=0.0, signal_options=options)
    cut = frames["AAA"].index[380]
    t_num = float(bt_datenums(pd.DatetimeIndex([cut]))[0])
    base = run_backtest(frames, predictors, cfg, record=True)
    pert = run_backtest(_perturb_after(frames, cut), predictors, cfg, record=True)

    log_a = [e for e in base.strategy.predictions_log if e[0] <= t_num]
    log_b = [e for e in pert.strategy.predictions_log if e[0] <= t_num]
    assert len(log_a) > 50 and log_a[-1][0] == t_num  # the decision ON bar T is compared too
    assert len(log_a) == len(log_b)
    for (dt1, as1, p1), (dt2, as2, p2) in zip(log_a, log_b, strict=True):
        assert dt1 == dt2 and as1 == as2 and set(p1) == set(p2)
        for task in p1:
            np.testing.assert_array_equal(p1[task], p2[task])

    made_a, made_b = _created(base.strategy, t_num), _created(pert.strategy, t_num)
    assert len(made_a) > 10 and any(o[0] == t_num for o in made_a)
    assert made_a == made_b  # exactly: times, symbols, sides and sizes

    filled_a = base.orders[base.orders["datetime"] <= cut].reset_index(drop=True)
    filled_b = pert.orders[pert.orders["datetime"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(filled_a, filled_b)
    pd.testing.assert_series_equal(base.returns[:cut], pert.returns[:cut])

    # the perturbation does reach the model after T (the test can fail)
    later_a = [e for e in base.strategy.predictions_log if e[0] > t_num]
    later_b = [e for e in pert.strategy.predictions_log if e[0] > t_num]
    assert later_a and later_b
    assert any(
        not np.array_equal(a[2][t], b[2][t])
        for a, b in zip(later_a, later_b, strict=False)
        for t in a[2]
        if len(a[2][t]) == len(b[2][t])
    )
    assert _created(base.strategy, np.inf) != _created(pert.strategy, np.inf)


def test_walk_forward_never_uses_a_model_on_its_training_window(predictors, live_run):
    res = live_run
    strat = res.strategy
    from mtl_bt.backtesting.feeds import bt_datenums

    def num(iso):
        return bt_datenums(pd.DatetimeIndex([pd.Timestamp(iso)]))[0]

    used = {k for _, k in strat.used_folds}
    assert used == set(range(len(predictors)))  # every fold model was swapped in
    for dt, k in strat.used_folds:
        fold = predictors[k].fold
        assert dt > num(fold["train_end"])
        assert num(fold["test_start"]) <= dt <= num(fold["test_end"])
    # fold swaps happen in time order
    ks = [k for _, k in strat.used_folds]
    assert ks == sorted(ks)
    # nothing traded before the first test window (warm-up + training period)
    first_test = pd.Timestamp(predictors[0].fold["test_start"])
    assert res.orders["datetime"].min() > first_test
    assert res.returns.index[0] >= first_test


def test_single_model_is_not_used_before_its_train_end(frames, predictors):
    last = predictors[-1]
    res = run_backtest(frames, [last], BacktestConfig())
    train_end = pd.Timestamp(last.fold["train_end"])
    assert res.returns.index[0] > train_end
    assert res.orders["datetime"].min() > train_end


def test_sequence_model_windows_parity(tmp_path, frames, config_factory):
    """A GRU model (lookback 4): per-bar windows equal predict_frame's, modes trade alike."""
    from mtl_bt.backtesting.feeds import bt_datenums
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.training.pipeline import train_walk_forward

    cfg = config_factory(
        model={
            "hidden": [8],
            "dropout": 0.0,
            "asset_embedding": 2,
            "sequence": {"encoder": "gru", "lookback": 4, "hidden": 8},
        },
        walk_forward={"train_bars": 200, "test_bars": 250, "max_folds": 1},
    )
    train_walk_forward(cfg, frames, tmp_path)
    (pred,) = load_predictors(tmp_path)
    assert pred.lookback == 4
    bt_cfg = BacktestConfig(signal_options={"threshold": 0.0})
    live = run_backtest(frames, [pred], bt_cfg, record=True)
    vec = pred.predict_frame({s: pred.features(f) for s, f in frames.items()})
    vec = vec.set_index(["datetime", "symbol"])
    lookup = {}
    for f in frames.values():
        lookup.update(zip(bt_datenums(f.index).tolist(), f.index, strict=True))
    log = live.strategy.predictions_log
    assert len(log) > 100
    for dt, assets, preds in log:
        for j, a in enumerate(assets):
            row = vec.loc[(lookup[dt], live.strategy.symbols[a])]
            for task, values in preds.items():
                assert values[j] == pytest.approx(row[task], rel=1e-6, abs=1e-6)
    pre = run_backtest(frames, [pred], bt_cfg.model_copy(update={"mode": "precomputed"}))
    _same_orders(live.orders, pre.orders)
