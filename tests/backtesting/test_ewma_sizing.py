"""The EWMA volatility input (``volatility_input = "ewma"``) in real Backtrader runs: the
value a rule receives equals an independent pandas EWMA of the bars up to the decision bar,
perturbing later bars changes nothing before them, and the streaming, preloaded and
whole-array (separable) paths give the same inputs and orders.

Real bars (AAPL daily, BTC/USDT hourly 24/7) and the real model of tests/backtesting.
"""

from __future__ import annotations

import sys
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mtl_bt.backtesting import frame_feed
from mtl_bt.backtesting.runner import make_cerebro
from mtl_bt.config import BacktestConfig
from mtl_bt.plugins.signals.vol_managed import VolManaged
from mtl_bt.strategies import MTLStrategy

sys.path.insert(0, str(Path(__file__).parent))
from test_any_feed import _same_run, run_feeds  # noqa: E402

OPTIONS = {"target_vol": 0.1, "volatility_input": "ewma"}
CUT = pd.Timestamp("2024-01-25", tz="UTC")  # in the BTC/USDT stretch, after all of AAPL


class SpyVolManaged(VolManaged):
    """vol_managed that records, per call, the decision bar's row of each asset, the
    ``ewma_vol`` it got and its weights (overriding weights: called bar by bar)."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.owner = None
        self.seen: list[tuple[float, list[str], list[int], np.ndarray, np.ndarray]] = []

    def weights(self, predictions, **context):
        w = super().weights(predictions, **context)
        syms = list(context["symbols"])
        rows = [len(self.owner.getdatabyname(s)) - 1 for s in syms]
        ewma = np.array(context["ewma_vol"], dtype=np.float64)
        self.seen.append((self.owner.datetime[0], syms, rows, ewma, np.array(w)))
        return w


class OwnedStrategy(MTLStrategy):
    def start(self) -> None:
        super().start()
        self.rule.owner = self


def _spy_run(frames, model, preload: bool, mode: str = "live"):
    rule = SpyVolManaged(**OPTIONS)
    cerebro = make_cerebro({}, BacktestConfig())
    cerebro.p.preload = preload
    for s, f in frames.items():
        cerebro.adddata(frame_feed(f, name=s), name=s)
    cerebro.addstrategy(OwnedStrategy, predictor=model, signal=rule, mode=mode, any_bar_size=True)
    strat = cerebro.run()[0]
    assert strat.streaming is not preload and rule.seen
    return strat, rule.seen


def pandas_ewma_vol(close: pd.Series, alpha: float = 0.06) -> float:
    """Independent reference: RiskMetrics on the squared log returns of ``close`` (the bars
    up to t only), seeded with the first 20 squares' mean, then pandas' ewm(alpha) (0.06:
    lambda 0.94, the model's daily bars)."""
    r2 = np.log(close).diff().pow(2).dropna().reset_index(drop=True)
    if len(r2) < 20:
        return float("nan")
    path = pd.concat([pd.Series([r2.iloc[:20].mean()]), r2.iloc[20:]], ignore_index=True)
    var = path.ewm(alpha=alpha, adjust=False).mean().iloc[-1]
    return float(np.sqrt(max(var, 1e-4**2)))


def _noisy(frames):
    rng = np.random.default_rng(5)
    out = {}
    for s, f in frames.items():
        g = f.copy()
        after = g.index > CUT
        k = int(after.sum())
        g.loc[after, ["open", "high", "low", "close"]] *= rng.uniform(0.8, 1.25, size=(k, 1))
        out[s] = g
    return out


@pytest.mark.parametrize("preload", [True, False])
def test_ewma_input_equals_a_pandas_ewm_of_the_bars_up_to_t(preload, real_frames, real_model):
    _, seen = _spy_run(real_frames, real_model, preload)
    checked = 0
    for _, syms, rows, ewma, _w in seen[::7]:
        for s, row, got in zip(syms, rows, ewma, strict=True):
            want = pandas_ewma_vol(real_frames[s]["close"].iloc[: row + 1])
            np.testing.assert_allclose(got, want, rtol=1e-12)
            checked += 1
    assert checked > 100
    assert {s for _, syms, *_ in seen for s in syms} == set(real_frames)


@pytest.mark.parametrize("preload", [True, False])
def test_ewma_input_keeps_the_calendar_half_life_on_hourly_bars(
    preload, real_frames, real_model, monkeypatch
):
    """A model trained on hourly bars sizes with lambda 0.5 ** (1 h / 11.2 days) = 0.99743,
    not the daily 0.94: the half-life of the ``qlike_ewma`` baseline, on both paths."""
    from mtl_bt.backtesting.inputs import sizing_lambda

    monkeypatch.setitem(real_model[0].checkpoint.config["data"], "timeframe", "1h")
    lam = sizing_lambda(real_model[0])
    assert lam == pytest.approx(0.94 ** (1 / 24), abs=1e-12)
    _, seen = _spy_run(real_frames, real_model, preload)
    checked = 0
    for _, syms, rows, ewma, _w in seen[::11]:
        for s, row, got in zip(syms, rows, ewma, strict=True):
            close = real_frames[s]["close"].iloc[: row + 1]
            want = pandas_ewma_vol(close, alpha=1.0 - lam)
            np.testing.assert_allclose(got, want, rtol=1e-12)
            checked += np.isfinite(want) and abs(want - pandas_ewma_vol(close)) > 1e-9 * want
    assert checked > 50  # the hourly decay really differs from 0.94 on these bars


def test_sizing_lambda_from_the_runs_timeframe():
    from types import SimpleNamespace

    from mtl_bt.backtesting.inputs import sizing_lambda

    def model(config):
        return SimpleNamespace(checkpoint=SimpleNamespace(config=config))

    assert sizing_lambda(model({"data": {"timeframe": "1d"}})) == pytest.approx(0.94)
    assert sizing_lambda(model({"data": {"timeframe": "4h"}})) == pytest.approx(0.94 ** (1 / 6))
    assert sizing_lambda(model({"data": {"timeframe": "1w"}})) == pytest.approx(0.94**7)
    assert sizing_lambda(model({})) == 0.94  # no recorded bar size: the daily default


@pytest.mark.parametrize("preload", [True, False])
def test_bars_after_t_leave_the_ewma_input_and_weights_up_to_t_unchanged(
    preload, real_frames, real_model
):
    t = bt.date2num(CUT.tz_convert(None).to_pydatetime())
    _, base = _spy_run(real_frames, real_model, preload)
    _, pert = _spy_run(_noisy(real_frames), real_model, preload)
    before = [x for x in base if x[0] <= t]
    assert len(before) > 100 and any("BTC/USDT" in x[1] for x in before)
    for a, b in zip(before, pert, strict=False):
        assert a[:3] == b[:3]
        np.testing.assert_array_equal(a[3], b[3])
        np.testing.assert_array_equal(a[4], b[4])
    after = [(a[3], b[3]) for a, b in zip(base, pert, strict=False) if a[0] > t]
    assert any(not np.array_equal(x, y) for x, y in after)  # the future did change


def _orders(frames, model, **params):
    """Every order (symbol, created, size) and the final value of a run without ``record``
    (with it, precomputed mode would call the rule bar by bar)."""
    cerebro = make_cerebro({}, BacktestConfig())
    for s, f in frames.items():
        cerebro.adddata(frame_feed(f, name=s), name=s)
    cerebro.addstrategy(
        MTLStrategy, predictor=model, signal="vol_managed", any_bar_size=True, **params
    )
    strat = cerebro.run()[0]
    orders = [(o.data._name, o.created.dt, o.size) for o in strat.broker.orders]
    return strat, orders, cerebro.broker.getvalue()


def test_whole_array_path_has_no_look_ahead(real_frames, real_model):
    """Precomputed mode sizes every bar before the run from whole arrays: the orders
    created up to t are those of the run whose later bars were perturbed."""
    t = bt.date2num(CUT.tz_convert(None).to_pydatetime())
    kw = dict(mode="precomputed", signal_options=OPTIONS)
    strat, base, _ = _orders(real_frames, real_model, **kw)
    assert strat._raw is not None and strat.rule_caller.calls > 100  # the whole-array path
    pert = _orders(_noisy(real_frames), real_model, **kw)[1]
    upto = [o for o in base if o[1] <= t]
    assert len(upto) > 20 and upto == [o for o in pert if o[1] <= t]
    assert base != pert


def test_streaming_equals_preloaded_and_the_whole_array_path(real_frames, real_model):
    feeds = {s: frame_feed(f, name=s) for s, f in real_frames.items()}
    kw = dict(signal="vol_managed", signal_options=OPTIONS)
    preloaded = run_feeds(feeds, real_model, **kw)
    feeds = {s: frame_feed(f, name=s) for s, f in real_frames.items()}
    streaming = run_feeds(feeds, real_model, cerebro_kwargs={"preload": False}, **kw)
    assert streaming[0].streaming and not preloaded[0].streaming
    _same_run(preloaded, streaming)
    # the separable whole-array path (precomputed, no record) trades the same orders
    live = _orders(real_frames, real_model, signal_options=OPTIONS)
    strat, *vector = _orders(real_frames, real_model, mode="precomputed", signal_options=OPTIONS)
    assert strat._raw is not None and len(live[1]) > 20
    assert vector == list(live[1:])
    # the inputs themselves, bar by bar, on both paths
    a = _spy_run(real_frames, real_model, True)[1]
    b = _spy_run(real_frames, real_model, False)[1]
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[:3] == y[:3]
        np.testing.assert_array_equal(x[3], y[3])
        np.testing.assert_array_equal(x[4], y[4])
