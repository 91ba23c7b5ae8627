"""Cross-frame features in Backtrader: a real model trained with another symbol's returns,
the market mean and daily context, run preloaded, with ``preload=False`` and through
live-protocol feeds whose bars arrive at different times: the same feature rows,
predictions and orders; a feature that reads a symbol with no feed is refused."""

from __future__ import annotations

import sys
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mtl_bt import config as config_mod
from mtl_bt.backtesting import frame_feed
from mtl_bt.backtesting.calendar import bt_timeframe, timeframe_seconds
from mtl_bt.errors import ConfigError, DataError
from mtl_bt.features import compute
from mtl_bt.training.dataset import run_frames

sys.path.insert(0, str(Path(__file__).parents[1] / "backtesting"))
from test_any_feed import _same_run, run_feeds  # noqa: E402

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
FEATURES = {
    "names": ["log_return", "rsi", "cross_asset", "market", "higher_tf"],
    "params": {
        "cross_asset": {"of": "BTC/USDT", "params": {"windows": [1, 5]}, "staleness": True},
        "market": {"params": {"windows": [1]}},
        "higher_tf": {"timeframe": "1d", "params": {"windows": [1]}},
    },
}


@pytest.fixture(scope="module")
def frames(crypto_frames):
    """Hourly bars on different calendars: ETH misses 30 hours, SOL starts 50 hours late."""
    out = {s: crypto_frames[s].iloc[:900] for s in SYMBOLS}
    out["ETH/USDT"] = out["ETH/USDT"].drop(out["ETH/USDT"].index[600:630])
    out["SOL/USDT"] = out["SOL/USDT"].iloc[50:]
    return run_frames(out)


@pytest.fixture(scope="module")
def model(tmp_path_factory, frames):
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.training.pipeline import train_walk_forward

    cfg = config_mod.from_dict(
        {
            "data": {"source": "csv", "symbols": SYMBOLS, "timeframe": "1h"},
            "features": FEATURES,
            "tasks": [{"name": "return", "horizons": [1]}, {"name": "direction", "horizons": [1]}],
            "model": {"hidden": [8], "dropout": 0.0},
            "training": {"epochs": 1, "batch_size": 128, "seed": 0},
            "walk_forward": {"train_bars": 400, "test_bars": 50, "max_folds": 1},
        }
    )
    out = tmp_path_factory.mktemp("train_cross")
    train_walk_forward(cfg, {s: f.iloc[:500] for s, f in frames.items()}, out)
    return load_predictors(out)


class LiveFrameFeed(bt.feed.DataBase):
    """Backtrader's live protocol (islive() True, one bar per _load), replaying a frame."""

    def __init__(self) -> None:
        from mtl_bt.backtesting.feeds import bt_datenums

        frame = self.p.dataname
        self._nums = bt_datenums(frame.index)
        self._rows = frame[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)
        self._i = 0

    def islive(self) -> bool:
        return True

    def haslivedata(self) -> bool:
        return self._i < len(self._rows)

    def _load(self):
        if self._i >= len(self._rows):
            return False
        lines, i = self.lines, self._i
        lines.datetime[0] = self._nums[i]
        lines.open[0], lines.high[0], lines.low[0], lines.close[0], lines.volume[0] = self._rows[i]
        lines.openinterest[0] = 0.0
        self._i += 1
        return True


def _live(frames):
    feeds = {}
    for s, f in frames.items():
        tf, comp = bt_timeframe(timeframe_seconds("1h"))
        feeds[s] = LiveFrameFeed(dataname=f, timeframe=tf, compression=comp)
    return feeds


@pytest.fixture(scope="module")
def preloaded(frames, model):
    return run_feeds({s: frame_feed(f, name=s) for s, f in frames.items()}, model)


def test_the_preloaded_book_has_the_cross_frame_rows_of_the_whole_run(frames, model, preloaded):
    strat = preloaded[0]
    spec = strat.predictors[0].feature_spec
    columns = strat.predictors[0].feature_columns
    assert "x_btc_usdt_log_return_1" in columns and "tf1d_log_return_1" in columns
    for a, s in enumerate(SYMBOLS):
        want = compute(frames[s], spec, frames)[columns].to_numpy(np.float32)
        np.testing.assert_array_equal(strat.book.feats[a], want)


@pytest.mark.parametrize("how", ["preload_false", "live_feeds"])
def test_streaming_runs_equal_the_preloaded_run(how, frames, model, preloaded):
    if how == "live_feeds":
        run = run_feeds(_live(frames), model)
        assert all(d.islive() for d in run[0].datas)
    else:
        run = run_feeds(
            {s: frame_feed(f, name=s) for s, f in frames.items()},
            model,
            cerebro_kwargs={"preload": False},
        )
    strat = run[0]
    assert strat.streaming and strat.book.batch
    for a in range(len(SYMBOLS)):  # every feature row, NaN warm-up included
        np.testing.assert_array_equal(np.array(strat.book.kept[a]), preloaded[0].book.feats[a])
    _same_run(preloaded, run)


@pytest.mark.parametrize("preload", [True, False])
def test_a_feature_reading_a_symbol_with_no_feed_is_refused_naming_it(frames, model, preload):
    feeds = {s: frame_feed(frames[s], name=s) for s in ("ETH/USDT", "SOL/USDT")}
    with pytest.raises(DataError, match=r"read symbol 'BTC/USDT', which has no feed in Cerebro"):
        run_feeds(feeds, model, cerebro_kwargs={"preload": preload})


def test_perturbing_another_symbols_future_changes_no_earlier_decision(frames, model):
    """BTC's bars after t replaced: ETH's and SOL's decisions up to t are unchanged."""
    from mtl_bt.testing.cross import perturb_after

    cut = frames["ETH/USDT"].index[700]
    other = dict(frames)
    other["BTC/USDT"] = perturb_after(frames["BTC/USDT"], cut, 5)
    base = run_feeds({s: frame_feed(f, name=s) for s, f in frames.items()}, model)
    pert = run_feeds({s: frame_feed(f, name=s) for s, f in other.items()}, model)

    def upto(run, symbol):
        strat = run[0]
        a = SYMBOLS.index(symbol)
        return [
            (dt, {k: v.tolist() for k, v in p.items()})
            for dt, assets, p in strat.predictions_log
            if a in list(assets) and pd.Timestamp(bt.num2date(dt), tz="UTC") <= cut
        ]

    for s in ("ETH/USDT", "SOL/USDT"):
        assert upto(base, s) == upto(pert, s) and len(upto(base, s)) > 100
    assert base[0].predictions_log[-1][2]["return@1"].tolist() != (
        pert[0].predictions_log[-1][2]["return@1"].tolist()
    )


def _bars_of(frame, size):
    """``frame``'s hourly bars aggregated to ``size`` (labelled at their start)."""
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    out = frame.resample(size).agg(agg).dropna()
    out.attrs = {**frame.attrs, "timeframe": size.lower()}
    return out


@pytest.mark.parametrize("how", ["preloaded", "preload_false", "live_12h", "live_stated_4h"])
def test_another_symbol_of_another_bar_size_is_refused_by_every_path_alike(frames, model, how):
    """BTC's bars 12-hourly (or 4-hourly) under hourly ETH and SOL: ``cross_asset``/``market``
    would read BTC's bar labelled at its start before it closes. Every path refuses with
    compute's line: preloaded, ``preload=False`` and live feeds (told by the first 3 bars of
    each feed), a live feed that states its bar size (refused at its first bar)."""
    size = "4h" if how == "live_stated_4h" else "12h"  # enough bars for the warm-up
    other = dict(frames)
    other["BTC/USDT"] = _bars_of(frames["BTC/USDT"], size)
    spec = model[0].feature_spec
    with pytest.raises(ConfigError) as want:
        compute(other["BTC/USDT"], spec, other)
    assert "reads 'ETH/USDT' (0 days 01:00:00 bars) for 'BTC/USDT'" in str(want.value)
    if how.startswith("live"):
        feeds = _live(other)
        if how == "live_stated_4h":
            tf, comp = bt_timeframe(timeframe_seconds("4h"))
            feeds["BTC/USDT"] = LiveFrameFeed(
                dataname=other["BTC/USDT"], timeframe=tf, compression=comp
            )
        else:  # Backtrader's default (Days, 1) states nothing: the first bars tell
            feeds["BTC/USDT"] = LiveFrameFeed(dataname=other["BTC/USDT"])
        kwargs = None
    else:
        feeds = {s: frame_feed(f, name=s) for s, f in other.items()}
        kwargs = {"preload": how == "preloaded"}
    with pytest.raises(ConfigError) as got:
        run_feeds(feeds, model, cerebro_kwargs=kwargs)
    assert str(got.value) == str(want.value)
