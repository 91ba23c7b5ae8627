"""The streaming path (feeds that are not preloaded): same bars -> same features, predictions
and orders as the preloaded path; resample and replay semantics; the perturbed-future proof.

Real Backtrader runs on bundled real bars (AAPL daily, BTC/USDT hourly 24/7), one real model
using every built-in feature.
"""

from __future__ import annotations

import sys
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.backtesting import frame_feed
from mtl_bt.backtesting.runner import make_cerebro
from mtl_bt.config import BacktestConfig
from mtl_bt.errors import PluginError
from mtl_bt.features import DEFAULT_FEATURES, FeatureSpec, compute
from mtl_bt.features.streaming import check_stream, stream_frame
from mtl_bt.strategies import MTLStrategy

sys.path.insert(0, str(Path(__file__).parent))
from test_any_feed import _same_run, run_feeds  # noqa: E402

MEMORYLESS = {"hysteresis": False, "margin": 0.0}  # the pre-cost-aware rule: trades often

FOUR_HOURS = dict(timeframe=bt.TimeFrame.Minutes, compression=240)


def _feeds(frames):
    return {s: frame_feed(f, name=s) for s, f in frames.items()}


@pytest.fixture(scope="module")
def preloaded(real_frames, real_model):
    return run_feeds(_feeds(real_frames), real_model)


def test_every_built_in_feature_streams_to_the_vectorised_values(real_frames):
    spec = FeatureSpec()
    assert spec.names == list(DEFAULT_FEATURES)
    for frame in real_frames.values():
        want = compute(frame, spec).to_numpy(np.float64)
        got = stream_frame(spec, frame)
        np.testing.assert_array_equal(got, want)  # bit for bit, NaN warm-up included
        assert check_stream(spec, frame) == 0.0


def test_a_long_memory_feature_without_a_stream_updater_is_caught(real_frames, monkeypatch):
    """close_ema recomputed over warmup+1 bars is NOT its full-history value: check_stream says
    so, naming the column (this is why recursive features declare a stream updater)."""
    from mtl_bt import registry

    fn = registry.get("feature", "close_ema")
    monkeypatch.setattr(fn, "stream", None)
    with pytest.raises(PluginError, match="'close_ema' streams to"):
        check_stream(FeatureSpec(names=["close_ema"]), real_frames["BTC/USDT"])
    # a declared window long enough for the seed to fade makes it close, not exact
    monkeypatch.setattr(fn, "window", 2000)
    assert check_stream(FeatureSpec(names=["close_ema"]), real_frames["BTC/USDT"], 1e-9) < 1e-9


@pytest.mark.parametrize("how", ["preload_false", "streaming_param"])
def test_streaming_run_equals_the_preloaded_run(how, real_frames, real_model, preloaded):
    if how == "preload_false":
        run = run_feeds(_feeds(real_frames), real_model, cerebro_kwargs={"preload": False})
    else:
        run = run_feeds(_feeds(real_frames), real_model, streaming=True)
    strat = run[0]
    assert strat.streaming and not preloaded[0].streaming
    _same_run(preloaded, run)  # predictions bit-equal (within 1e-9 a fortiori), same orders
    assert strat.ppy.tolist() == preloaded[0].ppy.tolist()
    for a in range(2):
        np.testing.assert_array_equal(np.array(strat.book.kept[a]), preloaded[0].book.feats[a])


def test_batched_streaming_run_equals_the_preloaded_run(
    real_frames, real_model, preloaded, monkeypatch
):
    """The many-feeds engine (one BatchStream per step, rows computed at the strategy's first
    question) on the two feeds: AAPL daily and BTC/USDT hourly, so most steps deliver one
    asset only and the rest both: same features, predictions and orders."""
    import mtl_bt.backtesting.streaming as streaming

    monkeypatch.setattr(streaming, "BATCH_MIN_ASSETS", 1)
    strat, *rest = run_feeds(_feeds(real_frames), real_model, cerebro_kwargs={"preload": False})
    assert strat.streaming and strat.book.batch
    _same_run(preloaded, (strat, *rest))
    for a in range(2):
        np.testing.assert_array_equal(np.array(strat.book.kept[a]), preloaded[0].book.feats[a])


@given(st.floats(719_163.0, 800_000.0), st.integers(-12, 12))
def test_bar_micros_is_datenum_micros(num, nudge):
    """The book's per-bar time conversion (Python numbers) equals the array one, snapping
    included (``nudge`` moves a stamp a few microseconds around a whole second)."""
    from mtl_bt.backtesting.bars import datenum_micros
    from mtl_bt.backtesting.streaming import bar_micros

    second = round(num * 86_400) / 86_400 + nudge / 86_400e6
    for x in (num, second):
        assert bar_micros(x) == int(datenum_micros(np.array([x]))[0])


def _resampled_by_pandas(hourly: pd.DataFrame) -> pd.DataFrame:
    """Backtrader's convention: a 4h bar is stamped with its right edge and holds the bars
    after the previous edge up to and including the stamp (closed and labelled right)."""
    rule = dict(open="first", high="max", low="min", close="last", volume="sum")
    out = hourly.resample("4h", closed="right", label="right").agg(rule).dropna()
    out.attrs = {"symbol": hourly.attrs.get("symbol"), "timeframe": "4h"}
    return out


def test_resampledata_features_are_those_of_the_resampled_bars(crypto_frames, real_model):
    hourly = crypto_frames["BTC/USDT"].iloc[:1600]
    cerebro = make_cerebro({}, BacktestConfig())
    cerebro.resampledata(frame_feed(hourly, name="BTC/USDT"), name="BTC/USDT", **FOUR_HOURS)
    cerebro.addstrategy(
        MTLStrategy, predictor=real_model, record=True, signal_options=MEMORYLESS, any_bar_size=True
    )
    strat = cerebro.run()[0]
    expected = _resampled_by_pandas(hourly)
    n = len(expected) - 1  # the last 4h bar is incomplete in the data; Backtrader emits it
    got = np.array(strat.book.kept[0])
    want = real_model[0].features(expected).to_numpy(np.float32)
    assert len(got) == len(expected)
    np.testing.assert_array_equal(got[:n], want[:n])
    assert strat.ppy[0] == 365.0 * 6 and strat.decisions > 50  # the 4h calendar


def test_replaydata_decides_only_on_completed_bars_like_the_resampled_run(
    crypto_frames, real_model
):
    hourly = crypto_frames["BTC/USDT"].iloc[:1600]
    runs = {}
    for how in ("resampledata", "replaydata"):
        # no slippage: Backtrader caps slippage to the range of the bar seen at the fill,
        # which in replay is the first tick's; without it a fill is the bare open
        cerebro = make_cerebro({}, BacktestConfig(slippage=0.0))
        getattr(cerebro, how)(frame_feed(hourly, name="BTC/USDT"), name="BTC/USDT", **FOUR_HOURS)
        cerebro.addstrategy(
            MTLStrategy,
            predictor=real_model,
            record=True,
            signal_options=MEMORYLESS,
            any_bar_size=True,
        )
        runs[how] = cerebro.run()[0]
    res, rep = runs["resampledata"], runs["replaydata"]
    edges = set(
        pd.DatetimeIndex(_resampled_by_pandas(hourly).index).tz_convert(None).to_pydatetime()
    )
    log_res, log_rep = res.predictions_log, rep.predictions_log
    # every replay decision is on a completed 4h bar, at its edge, with its values
    assert {bt.num2date(dt) for dt, _, _ in log_rep} <= edges
    common = len(log_rep)
    assert common > 50 and len(log_res) - common <= 1  # the incomplete last bar
    for (dt1, a1, p1), (dt2, a2, p2) in zip(log_res[:common], log_rep, strict=True):
        assert dt1 == dt2 and a1 == a2
        for t in p1:
            np.testing.assert_array_equal(p1[t], p2[t])
    # the same orders (created on the same bar, same size) in both runs
    done_res = [(o.created.dt, o.size) for o in res.broker.orders if o.status == o.Completed]
    done_rep = [(o.created.dt, o.size) for o in rep.broker.orders if o.status == o.Completed]
    assert len(done_rep) > 10
    assert done_rep == done_res[: len(done_rep)]
    # a replayed order fills at the next 4h bar's open: the open of the next hourly bar
    # (the resampled run agrees except where Backtrader's resampler fills an order at the
    # open of the bar it was created on, a quirk of its resample mode: see docs)
    opens = hourly["open"]
    for o in rep.broker.orders:
        if o.status == o.Completed:
            created = pd.Timestamp(bt.num2date(o.created.dt)).tz_localize("UTC")
            assert o.executed.price == pytest.approx(
                opens[opens.index > created].iloc[0], rel=1e-12
            )


def test_replay_to_a_bar_that_does_not_divide_a_day_is_refused(real_frames, real_model):
    from mtl_bt.errors import DataError

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.replaydata(
        frame_feed(real_frames["AAPL"], name="AAPL"), name="AAPL", timeframe=bt.TimeFrame.Weeks
    )
    cerebro.addstrategy(
        MTLStrategy, predictor=real_model, signal_options=MEMORYLESS, any_bar_size=True
    )
    with pytest.raises(DataError, match="feed 'AAPL': replaydata .* use cerebro.resampledata"):
        cerebro.run()


@pytest.mark.parametrize("preload", [True, False])
def test_perturbed_future_leaves_every_decision_up_to_t_unchanged(preload, real_frames, real_model):
    """Every prediction and every order created up to T is unchanged when every bar after T is
    multiplied by noise: on the preloaded and on the streaming path. (T falls in the BTC/USDT
    stretch, so all of AAPL and the first weeks of BTC/USDT are before it.)"""
    cut = pd.Timestamp("2024-01-25", tz="UTC")
    rng = np.random.default_rng(3)
    noisy = {}
    for s, f in real_frames.items():
        g = f.copy()
        after = g.index > cut
        k = int(after.sum())
        g.loc[after, ["open", "high", "low", "close"]] *= rng.uniform(0.8, 1.25, size=(k, 1))
        g.loc[after, "volume"] *= rng.uniform(0.5, 2.0, size=k)
        noisy[s] = g
    kwargs = {"cerebro_kwargs": {"preload": preload}}
    base = run_feeds(_feeds(real_frames), real_model, **kwargs)[0]
    pert = run_feeds(_feeds(noisy), real_model, **kwargs)[0]
    assert base.streaming is not preload
    t_num = bt.date2num(cut.tz_convert(None).to_pydatetime())
    a = [x for x in base.predictions_log if x[0] <= t_num]
    b = [x for x in pert.predictions_log if x[0] <= t_num]
    assert len(a) > 100 and len(a) == len(b)
    assert any(1 in assets for _, assets, _ in a)  # BTC/USDT decided before T too
    for (dt1, as1, p1), (dt2, as2, p2) in zip(a, b, strict=True):
        assert dt1 == dt2 and as1 == as2
        for t in p1:
            np.testing.assert_array_equal(p1[t], p2[t])

    def orders(strat, upto=True):
        return [
            (o.data._name, o.created.dt, o.size)
            for o in strat.broker.orders
            if o.created.dt <= t_num or not upto
        ]

    assert orders(base) == orders(pert) and len(orders(base)) > 20
    assert orders(base, upto=False) != orders(pert, upto=False)  # the future did change


class LiveFrameFeed(bt.feed.DataBase):
    """A feed speaking Backtrader's live protocol (islive() True, bars handed over one at a
    time from a queue, as a CCXT/yfinance live feed does), replaying real bars."""

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


def test_a_live_feed_runs_through_the_streaming_path(real_frames, real_model, preloaded):
    from mtl_bt.backtesting.calendar import bt_timeframe, timeframe_seconds

    feeds = {}
    for s, f in real_frames.items():
        tf, comp = bt_timeframe(timeframe_seconds(f.attrs["timeframe"]))
        feeds[s] = LiveFrameFeed(dataname=f, timeframe=tf, compression=comp)
    run = run_feeds(feeds, real_model)
    assert run[0].streaming and all(d.islive() for d in run[0].datas)
    _same_run(preloaded, run)


def test_intraday_session_calendar_is_the_same_on_both_paths(crypto_frames, real_model):
    """Real hourly bars cut to a weekday 14:00-18:00 UTC session (5 bars a day, no weekend):
    252 sessions x 5 bars on the preloaded and on the streaming path."""
    h = crypto_frames["BTC/USDT"].iloc[:2000]
    idx = h.index
    session = h[(idx.day_of_week < 5) & (idx.hour >= 14) & (idx.hour <= 18)].copy()
    session.attrs = dict(h.attrs)
    pre = run_feeds({"S": frame_feed(session, name="S")}, real_model)[0]
    stream = run_feeds(
        {"S": frame_feed(session, name="S")}, real_model, cerebro_kwargs={"preload": False}
    )[0]
    assert pre.ppy.tolist() == stream.ppy.tolist() == [252.0 * 5]
    assert stream.decisions == pre.decisions > 10


def test_auto_calendar_decided_on_less_than_a_week_of_weekday_bars_warns(crypto_frames, real_model):
    """BTC/USDT trades 24/7, but 110 hourly bars from a Monday fall Monday to Friday:
    the streaming path must fix bars per year at its first decision and can only guess
    'exchange' from them. That guess is said (once per asset), naming the feed and the fix;
    with the calendar given, or with a weekend bar seen, nothing is said."""
    btc = crypto_frames["BTC/USDT"]
    weekdays = btc.loc["2024-01-01":"2024-01-05 13:00"]  # Monday 00:00 to Friday 13:00
    assert len(weekdays) == 110 and not (weekdays.index.day_of_week >= 5).any()
    with pytest.warns(
        UserWarning, match=r"feed 'BTC/USDT': calendar='auto' chose 'exchange'"
    ) as record:
        strat = run_feeds(
            {"BTC/USDT": frame_feed(weekdays, name="BTC/USDT")},
            real_model,
            cerebro_kwargs={"preload": False},
        )[0]
    assert strat.decisions > 0
    said = [str(w.message) for w in record if "calendar='auto'" in str(w.message)]
    assert len(said) == 1  # once per asset
    assert f"({strat.ppy[0]:g} bars a year)" in said[0] and "(8760 bars a year)" in said[0]
    assert strat.ppy[0] < 8760
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        told = run_feeds(
            {"BTC/USDT": frame_feed(weekdays, name="BTC/USDT")},
            real_model,
            cerebro_kwargs={"preload": False},
            calendar="24/7",
        )[0]
        with_weekend = btc.loc["2024-01-05 14:00":].iloc[:150]  # Friday 14:00 on
        run_feeds(
            {"BTC/USDT": frame_feed(with_weekend, name="BTC/USDT")},
            real_model,
            cerebro_kwargs={"preload": False},
        )
    assert told.ppy.tolist() == [24.0 * 365]
