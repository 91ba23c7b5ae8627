"""The per-bar shortcuts equal the general code they stand in for: the fold lookup's cached
span, and the strategy's bar counters and the analyzer's closes read off the feeds' line
buffers instead of ``len(feed)`` and ``feed.close[0]``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt.backtesting.folds import FoldSchedule
from mtl_bt.backtesting.runner import run_backtest
from mtl_bt.config import BacktestConfig

MEMORYLESS = {"hysteresis": False, "margin": 0.0}  # the pre-cost-aware rule: trades often


class _Fold:
    def __init__(self, train_end, test_start, test_end):
        self.fold = {"train_end": train_end, "test_start": test_start, "test_end": test_end}


def test_cached_fold_lookup_equals_the_scan_on_and_between_edges():
    folds = [
        _Fold("2024-01-10", "2024-01-11", "2024-01-20"),
        _Fold("2024-01-18", "2024-01-19", "2024-01-31"),  # overlaps: the later one wins
        _Fold("2024-02-05", "2024-02-05", "2024-02-10"),  # a gap before it
    ]
    schedule = FoldSchedule(folds)
    edges = np.array(schedule._edges)
    grid = np.concatenate(
        [edges, edges - 1e-7, edges + 1e-7, np.linspace(edges[0] - 5, edges[-1] + 5, 400)]
    )
    rng = np.random.default_rng(0)
    for order in (np.sort(grid), rng.permutation(grid), np.sort(grid)[::-1]):
        got = [schedule.at(t) for t in order]
        want = [schedule._at(t) for t in order]
        assert got == want
    assert {schedule.at(t) for t in grid} == {-1, 0, 1, 2}


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.orders, b.orders)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_series_equal(a.returns, b.returns)


@pytest.mark.parametrize("mode", ["live", "precomputed"])
@pytest.mark.parametrize(
    "rebalance, rule",
    [("bar", MEMORYLESS), ("horizon", MEMORYLESS), ("horizon", {"margin": 0.0})],
)
def test_bar_counters_equal_len_of_each_feed(
    frames, predictors, monkeypatch, mode, rebalance, rule
):
    """Feeds of different lengths (an asset starts late), so some bars move only some
    feeds: the counters path (per-bar state in lists, the bar counts = the feeds' lengths)
    and the len(feed) path give the same orders, returns, bar counts and due bars, with
    the memoryless rule and with hysteresis (held positions, due bars that move)."""
    from mtl_bt.backtesting import analyzers
    from mtl_bt.strategies import mtl

    uneven = dict(frames)
    first = next(iter(uneven))
    uneven[first] = uneven[first].iloc[60:]
    cfg = BacktestConfig(mode=mode, rebalance=rebalance, max_weight=0.4, signal_options=rule)
    fast = run_backtest(uneven, predictors, cfg)
    assert fast.strategy._counters is not None
    monkeypatch.setattr(mtl, "line_buffers", lambda d: None)
    monkeypatch.setattr(analyzers, "line_buffers", lambda d: None)
    slow = run_backtest(uneven, predictors, cfg)
    assert slow.strategy._counters is None
    assert len(fast.orders) > 0
    _same(fast, slow)
    np.testing.assert_array_equal(fast.strategy._bars, slow.strategy._bars)
    np.testing.assert_array_equal(fast.strategy._due, slow.strategy._due)
    assert fast.strategy._due_at == fast.strategy._due.tolist()
    a = fast.strategy.analyzers.portfolio.get_analysis()
    b = slow.strategy.analyzers.portfolio.get_analysis()
    for key in ("dt", "value", "equity", "positions", "traded", "costs", "gross"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_the_run_pins_blas_threads_and_restores_them(frames, predictors, monkeypatch):
    from mtl_bt import threads as nf

    seen = []
    original = nf.blas_threads

    def spy(n):
        seen.append(n)
        return original(n)

    monkeypatch.setattr(nf, "blas_threads", spy)
    before = [get() for get, _ in nf._openblas_thread_calls()]
    run_backtest(frames, predictors, BacktestConfig(mode="precomputed"))
    assert seen == [1]
    assert [get() for get, _ in nf._openblas_thread_calls()] == before


@pytest.mark.parametrize("freeze", [True, False])
def test_the_run_freezes_the_heap_and_unfreezes_it(frames, predictors, monkeypatch, freeze):
    """freeze_heap: objects alive at start are out of the collector's view during the run
    and back in it afterwards; the orders do not depend on it."""
    import gc

    from mtl_bt.strategies import mtl

    seen = []
    calls = [0]
    original = mtl.MTLStrategy.next

    def spy(self):
        # every 50th bar: gc.get_freeze_count() walks the whole frozen heap (36 ms a call
        # late in the suite), so one call a bar made this the suite's slowest test (70 s)
        if calls[0] % 50 == 0:
            seen.append(gc.get_freeze_count())
        calls[0] += 1
        return original(self)

    monkeypatch.setattr(mtl.MTLStrategy, "next", spy)
    gc.unfreeze()
    cfg = BacktestConfig(mode="precomputed", max_weight=0.4)
    monkeypatch.setattr(mtl.MTLStrategy, "freeze_heap", freeze)
    result = run_backtest(frames, predictors, cfg)
    assert len(seen) > 3 and (min(seen) > 0 if freeze else max(seen) == 0)
    assert gc.get_freeze_count() == 0
    monkeypatch.setattr(mtl.MTLStrategy, "next", original)
    monkeypatch.setattr(mtl.MTLStrategy, "freeze_heap", not freeze)
    _same(result, run_backtest(frames, predictors, cfg))


def test_a_heap_frozen_by_the_caller_is_left_to_the_caller(frames, predictors):
    import gc

    gc.freeze()
    try:
        before = gc.get_freeze_count()
        run_backtest(frames, predictors, BacktestConfig(mode="precomputed"))
        # not unfrozen behind the caller's back (a frozen object freed meanwhile leaves)
        assert before > 0 and gc.get_freeze_count() > before // 2
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("n_assets", [1, 2])
def test_a_non_finite_prediction_is_not_traded(frames, predictors, monkeypatch, n_assets):
    """One asset takes the scalar finiteness test, several the array one: either way a bar
    whose prediction of a used head is NaN or inf decides nothing for that asset."""
    from mtl_bt.strategies import mtl

    original = mtl.MTLStrategy._predict
    calls = {"n": 0, "bad": 0}
    seen = []  # each call's {task: finite per row}

    def spoiled(self, fold, assets, rows):
        out = original(self, fold, assets, rows)
        calls["n"] += 1
        if calls["n"] % 3 == 0:  # every third call: the first row's return head broken
            calls["bad"] += 1
            out["return@1"] = out["return@1"].copy()
            out["return@1"][0] = np.inf if calls["n"] % 2 else np.nan
        seen.append({t: np.isfinite(v) for t, v in out.items()})
        return out

    monkeypatch.setattr(mtl.MTLStrategy, "_predict", spoiled)
    few = dict(list(frames.items())[:n_assets])
    res = run_backtest(few, predictors, BacktestConfig(mode="live", rebalance="bar"))
    strat = res.strategy
    assert calls["bad"] > 10
    # a call is a decision when some row has every used head finite
    decided = [np.all([f[t] for t in strat.used_tasks], axis=0).any() for f in seen]
    assert strat.decisions == sum(decided)
    if n_assets == 1:  # the spoiled bars were skipped
        assert sum(decided) == calls["n"] - calls["bad"]
