"""A time-aware feature (``hour_of_day``) sees the bars' real UTC times on the streaming
path: streamed = preloaded bit for bit, one asset, batched, and in a real Backtrader run with
``preload=False`` (the path replay, resample, live feeds and ``mtl-bt paper`` share)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt.features import FeatureSpec, compute
from mtl_bt.features.streaming import BarBuffer, batch_frames, check_stream, stream_frame

NAMES = ["log_return", "hour_of_day"]


@pytest.fixture
def btc(crypto_frames):
    return crypto_frames["BTC/USDT"].iloc[:300]


def test_bar_buffer_frame_has_the_bars_utc_times(btc):
    buf = BarBuffer(5)
    micros = btc.index.as_unit("us").asi8
    for t, row in zip(micros[:7], btc.to_numpy()[:7], strict=True):
        buf.append((float(t), *row))
    got = buf.frame(5, "BTC/USDT")
    want = btc.iloc[2:7]
    pd.testing.assert_index_equal(got.index, pd.DatetimeIndex(want.index.as_unit("us")))
    assert got.index.tz is not None and str(got.index.tz) == "UTC"


def test_hour_of_day_streams_to_its_preloaded_values_bit_for_bit(probes, btc):
    SPEC = FeatureSpec(names=NAMES)
    want = compute(btc, SPEC).to_numpy(np.float64)
    assert len(set(btc.index.hour)) == 24  # every hour of the day is in the window
    np.testing.assert_array_equal(stream_frame(SPEC, btc), want)
    (batched,) = batch_frames(SPEC, [btc])
    np.testing.assert_array_equal(batched, want)
    assert check_stream(SPEC, btc) == 0.0


def test_a_backtrader_run_without_preloading_feeds_it_the_same_rows(
    probes, crypto_frames, tmp_path
):
    """A real model trained on hour_of_day; a run with preload=False computes every row
    bar by bar and must equal the preloaded run's rows, predictions and orders."""
    import sys
    from pathlib import Path

    from mtl_bt import config as config_mod
    from mtl_bt.backtesting import frame_feed
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.training.pipeline import train_walk_forward

    sys.path.insert(0, str(Path(__file__).parents[1] / "backtesting"))
    from test_any_feed import _same_run, run_feeds

    cfg = config_mod.from_dict(
        {
            "data": {"source": "csv", "symbols": ["BTC/USDT"], "timeframe": "1h"},
            "features": {"names": ["log_return", "hour_of_day"]},
            "tasks": [{"name": "return", "horizons": [1]}],
            "model": {"hidden": [4], "dropout": 0.0},
            "training": {"epochs": 1, "batch_size": 64, "seed": 0},
            "walk_forward": {"train_bars": 300, "test_bars": 200, "max_folds": 1},
        }
    )
    frame = crypto_frames["BTC/USDT"].iloc[:520]
    train_walk_forward(cfg, {"BTC/USDT": frame}, tmp_path)
    model = load_predictors(tmp_path)
    test = crypto_frames["BTC/USDT"].iloc[300:520]
    preloaded = run_feeds({"BTC/USDT": frame_feed(test, name="BTC/USDT")}, model, calendar="24/7")
    streamed = run_feeds(
        {"BTC/USDT": frame_feed(test, name="BTC/USDT")},
        model,
        cerebro_kwargs={"preload": False},
        calendar="24/7",
    )
    assert streamed[0].streaming and not preloaded[0].streaming
    np.testing.assert_array_equal(np.array(streamed[0].book.kept[0]), preloaded[0].book.feats[0])
    _same_run(preloaded, streamed)


@pytest.mark.parametrize("engine", ["stream", "batch"])
def test_a_raising_feature_streamed_is_one_line_naming_it(probes, btc, engine):
    """The streaming path (paper, live feeds, preload=False) calls a plugin without stream=
    over its last bars: its exception names the plugin and the symbol, as compute's does."""
    from mtl_bt.plugin_calls import PluginRaised

    spec = FeatureSpec(names=["log_return", "raising"])
    frame = btc.iloc[:5].copy()
    frame.attrs = {**btc.attrs, "symbol": "ETH/USDT"}
    run = stream_frame if engine == "stream" else lambda s, f: batch_frames(s, [f])
    with pytest.raises(PluginRaised) as got:
        run(spec, frame)
    assert str(got.value).startswith(
        "feature 'raising' from plugin 'probe_plugins' raised ZeroDivisionError on ETH/USDT: "
        "probe: division by zero"
    )


def test_a_plugins_own_updaters_failing_are_one_line_naming_it(probes, btc):
    """A plugin's own ``stream=`` / ``batch=`` updater (not the recompute fallback) that
    raises, or returns the wrong number of values or a column of the wrong shape: one
    line naming the feature, its plugin and the symbol(s), on both streaming engines."""
    from mtl_bt.errors import PluginError
    from mtl_bt.plugin_calls import PluginRaised

    frame = btc.iloc[:6].copy()
    frame.attrs = {**btc.attrs, "symbol": "ETH/USDT"}
    named = "feature 'stream_raising' from plugin 'probe_plugins' raised ZeroDivisionError on "
    with pytest.raises(PluginRaised) as got:
        stream_frame(FeatureSpec(names=["log_return", "stream_raising"]), frame)
    assert str(got.value).startswith(named + "ETH/USDT: probe: the updater divided by zero")
    other = btc.iloc[:6].copy()
    other.attrs = {**btc.attrs, "symbol": "SOL/USDT"}
    with pytest.raises(PluginRaised) as got:  # no batch updater: per asset in BatchStream
        batch_frames(FeatureSpec(names=["stream_raising"]), [frame, other])
    assert str(got.value).startswith(named + "ETH/USDT: ")
    with pytest.raises(PluginRaised) as got:
        batch_frames(FeatureSpec(names=["batch_raising"]), [frame, other])
    assert str(got.value).startswith(
        "feature 'batch_raising' from plugin 'probe_plugins' raised ValueError on "
        "ETH/USDT, SOL/USDT: probe: the batch updater failed"
    )
    with pytest.raises(
        PluginError,
        match=r"^feature 'stream_wide' from plugin 'probe_plugins'"
        r": its streaming updater returned 2 values on ETH/USDT, not one per "
        r"column \(1\)",
    ):
        stream_frame(FeatureSpec(names=["stream_wide"]), frame)
    with pytest.raises(
        PluginError,
        match=r"^feature 'batch_scalar' .* its batch updater "
        r"returned a column of shape \(\) on ETH/USDT, SOL/USDT",
    ):
        batch_frames(FeatureSpec(names=["batch_scalar"]), [frame, other])
