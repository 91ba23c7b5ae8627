"""Cross-frame features: other symbols of the run and higher timeframes, causal by
construction, checked across frames, streamed bit for bit.

Each built-in's values are pinned against an independent pandas construction (the last
closed bar of the other symbol; the daily bar entering at the first hourly bar of the next
day), each is proved causal with every frame cut and with each frame's future perturbed,
and the naive ``resample('1D').last().ffill()`` daily feature fails the same checks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_bt import hookimpl, registry
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.errors import ConfigError, PluginError
from mtl_bt.features import FeatureSpec, compute, drop_warmup, feature
from mtl_bt.features.cross_stream import cross_frames
from mtl_bt.features.frames import Reads, aggregate
from mtl_bt.testing import ConformanceError, check_cross_feature, check_feature
from mtl_bt.testing.cross import cross_findings, named, ragged_frames, stream_findings

ONE = {"windows": [1]}


@pytest.fixture(scope="module")
def ragged():
    return ragged_frames(bars=600)


def _spec(**params) -> FeatureSpec:
    return FeatureSpec(names=list(params), params=params)


# -- values, pinned independently -------------------------------------------------------


def test_cross_asset_is_the_other_symbols_last_closed_bar_with_its_staleness(ragged):
    spec = _spec(cross_asset={"of": "BBB", "params": ONE, "staleness": True})
    assert spec.columns() == ["x_bbb_log_return_1", "x_bbb_stale"]
    a, b = ragged["AAA"], ragged["BBB"]
    got = compute(a, spec, ragged)
    # independent: B's own 1-bar log return, as-of joined on the label (last bar <= t)
    ret = np.log(b["close"]).diff().rename("want").to_frame()
    ret["b_time"] = b.index
    joined = pd.merge_asof(
        pd.DataFrame({"t": a.index}), ret.reset_index(drop=True), left_on="t", right_on="b_time"
    )
    np.testing.assert_array_equal(got["x_bbb_log_return_1"].to_numpy(), joined["want"].to_numpy())
    # staleness: A's bars since B's bar in use arrived (B misses bars, so it grows)
    age = np.array([(a.index[: i + 1] > t).sum() for i, t in enumerate(joined["b_time"])])
    np.testing.assert_array_equal(got["x_bbb_stale"].to_numpy(), age.astype(float))
    assert got["x_bbb_stale"].max() >= 2


def test_higher_tf_daily_bar_enters_at_the_first_hourly_bar_after_the_day(ragged):
    frame = ragged["AAA"]
    spec = _spec(higher_tf={"timeframe": "1d", "params": ONE})
    got = compute(frame, spec)["tf1d_log_return_1"]
    day_close = frame["close"].groupby(frame.index.floor("1D")).last()
    day_ret = np.log(day_close).diff()
    # at an hourly bar of day D the last closed day is D-1: its return = ln(C[D-1] / C[D-2])
    want = day_ret.shift(1).reindex(frame.index.floor("1D")).to_numpy()
    np.testing.assert_array_equal(got.to_numpy(), want)
    # the picture: 23:00 of day D still has D-1's bar; 00:00 of D+1 has day D's
    d = frame.index[frame.index.hour == 23][3]
    assert got[d] == day_ret.shift(1)[d.floor("1D")]
    assert got[d + pd.Timedelta("1h")] == day_ret[d.floor("1D")]


def test_market_is_the_equal_weight_mean_of_every_symbols_last_closed_bar(ragged):
    spec = _spec(market={"params": ONE})
    got = compute(ragged["AAA"], spec, ragged)["mkt_log_return_1"]
    t = ragged["AAA"].index
    rets = [
        np.log(f["close"]).diff().reindex(f.index.union(t)).ffill().reindex(t)
        for f in ragged.values()
    ]
    want = pd.concat(rets, axis=1).mean(axis=1)  # nan-skipping mean over the symbols
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-15, atol=0)


def test_aggregate_is_closed_periods_only_and_a_prefix_gives_a_prefix(ragged):
    frame = ragged["CCC"]
    bars, avail = aggregate(frame, "1d")
    days = frame.groupby(frame.index.floor("1D"))
    assert len(bars) == days.ngroups - 1  # the last day may still be open: left out
    np.testing.assert_array_equal(bars["high"], days["high"].max().to_numpy()[:-1])
    np.testing.assert_array_equal(bars["close"], days["close"].last().to_numpy()[:-1])
    # available at the first bar of the next day present (CCC misses a whole day)
    firsts = days.apply(lambda g: g.index[0])
    assert list(pd.to_datetime(avail, unit="us", utc=True)) == list(firsts.iloc[1:])
    for cut in (50, 300, len(frame) - 1):
        part, part_avail = aggregate(frame.iloc[:cut], "1d")
        pd.testing.assert_frame_equal(part, bars.iloc[: len(part)])
        np.testing.assert_array_equal(part_avail, avail[: len(part)])


# -- causality across frames -------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"cross_asset": {"of": "BBB", "staleness": True}},
        {"market": {"params": {"windows": [1, 3]}}},
        {"higher_tf": {"params": {"windows": [1, 2]}}},
        {"higher_tf": {"timeframe": "4h", "of": "CCC", "feature": "close_sma"}},
    ],
    ids=["cross_asset", "market", "higher_tf", "higher_tf_of"],
)
def test_every_built_in_passes_the_cross_frame_laws(ragged, params):
    spec = _spec(**params)
    for target in ragged:
        assert cross_findings(spec, ragged, target) == []
    assert stream_findings(spec, ragged, 0.0, 0.0) == []


def test_the_kit_check_passes_the_built_ins():
    report = check_cross_feature("cross_asset", of="CCC", target="AAA")
    assert "prefix invariance with every frame cut" in report.laws
    assert "prefix invariance with every frame cut" in check_feature("higher_tf").laws


@pytest.fixture
def plugin():
    """Register features for one test (their module-level names must be unique)."""
    names = []

    def add(name, fn):
        class P:
            @hookimpl
            def register_features(self, register):
                register(name, fn, "test feature")

        registry.register_plugin(P(), f"cross_test_{name}")
        names.append(f"cross_test_{name}")

    yield add
    for n in names:
        registry.unregister_plugin(n)


@feature(warmup=24)
def naive_daily(frame: pd.DataFrame) -> pd.DataFrame:
    """The trap: the day's close forward-filled onto its own hours (known only at 24:00)."""
    daily = np.log(frame["close"].resample("1D").last()).diff()
    return pd.DataFrame({"naive_daily": daily.reindex(frame.index, method="ffill")}, frame.index)


def test_the_naive_resample_ffill_daily_feature_fails_the_checks(plugin, ragged):
    plugin("naive_daily", naive_daily)
    with pytest.raises(ConformanceError, match="looks ahead"):
        check_feature("naive_daily")
    # and the built-in that does it right passes on the same bars
    check_feature("higher_tf", ragged["AAA"], params=ONE)


@feature(warmup=1, reads=Reads(symbol="BBB"), columns=["peek"])
def peek(frame: pd.DataFrame) -> pd.DataFrame:
    """Reads the other symbol's NEXT bar: the perturbed future of that frame catches it."""
    return pd.DataFrame({"peek": np.log(frame["close"]).diff().shift(-1)}, frame.index)


def test_a_cross_feature_peeking_into_the_other_frame_fails(plugin, ragged):
    plugin("peek", peek)
    found = cross_findings(FeatureSpec(names=["peek"]), ragged, "AAA")
    assert found and found[0].law in ("prefix invariance", "perturbed future")
    with pytest.raises(ConformanceError, match="looks ahead on AAA"):
        check_cross_feature("peek", ragged)


# -- streaming = preloaded ---------------------------------------------------------------


def test_streams_bit_for_bit_on_the_crypto_sample_with_bars_arriving_at_different_times(
    crypto_frames,
):
    frames = {s: f.iloc[-900:] for s, f in crypto_frames.items()}
    symbols = list(frames)
    frames[symbols[1]] = frames[symbols[1]].iloc[np.r_[0:300, 340:900]]  # a feed goes quiet
    frames[symbols[2]] = frames[symbols[2]].iloc[100:]  # one starts late
    spec = FeatureSpec(
        names=["log_return", "rsi", "cross_asset", "cross_asset@b", "market", "higher_tf"],
        params={
            "cross_asset": {"of": symbols[0], "staleness": True},
            "cross_asset@b": {"of": symbols[1], "feature": "volatility", "staleness": True},
            "market": {"params": ONE},
        },
    )
    frames = named(frames)
    for batch in (True, False):  # the single-frame part batched, or per asset
        streamed = cross_frames(spec, frames, batch=batch)
        for s, f in frames.items():
            np.testing.assert_array_equal(streamed[s], compute(f, spec, frames).to_numpy())


@settings(max_examples=15, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from(["1d", "4h", "1w"]),
    st.integers(1, 3),
    st.sampled_from(["log_return", "close_ema", "volatility"]),
)
def test_streaming_equals_compute_on_random_calendars(seed, timeframe, window, inner):
    rng = np.random.default_rng(seed)
    frames = {}
    for i, s in enumerate(["A", "B"]):
        f = garch_bars(400, seed=seed + i, freq="1h")
        keep = np.sort(rng.choice(len(f), int(len(f) * rng.uniform(0.6, 1.0)), replace=False))
        frames[s] = f.iloc[keep]
    params = {"windows": [window]} if inner == "log_return" else {}
    spec = _spec(
        cross_asset={"of": "B", "feature": inner, "params": params, "staleness": True},
        higher_tf={"timeframe": timeframe, "feature": inner, "params": params},
        market={"params": ONE},
    )
    frames = named(frames)
    streamed = cross_frames(spec, frames)
    for s, f in frames.items():
        np.testing.assert_array_equal(streamed[s], compute(f, spec, frames).to_numpy())


@settings(max_examples=12, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from(["1d", "4h", "1w"]),
    st.floats(0.05, 0.95),
    st.sampled_from(["A", "B"]),
)
def test_no_frame_leaks_on_random_calendars_and_cuts(seed, timeframe, where, target):
    """The laws across frames as a property: random calendars (bars missing at random, B
    starting late), a random cut, either symbol as the target."""
    rng = np.random.default_rng(seed)
    frames = {}
    for i, s in enumerate(["A", "B"]):
        f = garch_bars(300, seed=seed + i, freq="1h")
        keep = np.sort(rng.choice(len(f), int(len(f) * rng.uniform(0.6, 1.0)), replace=False))
        frames[s] = f.iloc[keep].iloc[int(rng.integers(0, 40)) * i :]
    spec = _spec(
        cross_asset={"of": "B" if target == "A" else "A", "params": ONE, "staleness": True},
        higher_tf={"timeframe": timeframe, "params": ONE, "staleness": True},
        market={"params": ONE},
    )
    cut = int(where * (len(frames[target]) - 1))
    assert cross_findings(spec, named(frames), target, cuts=[cut], seed=seed) == []


# -- stocks: sessions, holidays ----------------------------------------------------------


def test_stocks_daily_bars_with_weekly_context_across_holidays(read_stock):
    frames = named({s: read_stock(s).iloc[-400:] for s in ("AAPL", "MSFT")})
    spec = _spec(higher_tf={"timeframe": "1w", "params": ONE}, market={"params": ONE})
    frame = frames["AAPL"]
    got = compute(frame, spec, frames)["tf1w_log_return_1"]
    week = frame.index.tz_localize(None).to_period("W-SUN")
    weekly = np.log(frame["close"].groupby(week).last()).diff()
    want = weekly.shift(1).reindex(week).to_numpy()  # a week's bar enters the next week
    np.testing.assert_array_equal(got.to_numpy(), want)
    # a Monday holiday: the week's bar enters on Tuesday, the first bar of the next week
    starts = frame.index[np.r_[True, week[1:] != week[:-1]]]
    assert (starts.day_of_week == 1).any()
    tuesday = starts[starts.day_of_week == 1][0]
    assert got[tuesday] == weekly[tuesday.tz_localize(None).to_period("W-SUN") - 1]
    assert all(cross_findings(spec, frames, s, cuts=[150, 390]) == [] for s in frames)
    assert stream_findings(spec, frames, 0.0, 0.0) == []


def test_an_exchange_day_is_its_session_in_the_exchange_time_zone():
    # ASX in the southern summer: 10:00-16:00 Sydney = 23:00-05:00 UTC, across UTC midnight
    days = pd.bdate_range("2024-01-08", periods=30)
    local = [d + pd.Timedelta(hours=h) for d in days for h in range(10, 16)]
    index = pd.DatetimeIndex(local).tz_localize("Australia/Sydney").tz_convert("UTC")
    frame = garch_bars(len(index), seed=3, freq="1h")
    frame.index = index.rename("datetime")
    frame.attrs = {"symbol": "BHP"}
    session = _spec(higher_tf={"timeframe": "1d", "tz": "Australia/Sydney", "params": ONE})
    utc = _spec(higher_tf={"timeframe": "1d", "params": ONE})
    got = compute(frame, session)["tf1d_log_return_1"]
    # every session's first bar gets the previous session's bar, whole
    sess = frame.index.tz_convert("Australia/Sydney").normalize()
    closes = frame["close"].groupby(sess).last()
    want = np.log(closes).diff().shift(1).reindex(sess).to_numpy()
    np.testing.assert_array_equal(got.to_numpy(), want)
    # UTC days cut each session in two: different (and still causal) values
    assert not np.array_equal(
        compute(frame, utc).to_numpy(), got.to_numpy()[:, None], equal_nan=True
    )
    assert cross_findings(session, {"BHP": frame}, "BHP") == []


# -- config, names, warm-up, refusals ----------------------------------------------------


def test_instances_are_named_plugin_at_label_and_columns_never_clash():
    spec = FeatureSpec(
        names=["cross_asset", "cross_asset@eth", "higher_tf", "higher_tf@w"],
        params={
            "cross_asset": {"of": "BTC/USDT", "params": ONE},
            "cross_asset@eth": {"of": "ETH/USDT", "params": ONE},
            "higher_tf@w": {"timeframe": "1w", "params": ONE},
        },
    )
    assert spec.columns()[:2] == ["x_btc_usdt_log_return_1", "x_eth_usdt_log_return_1"]
    assert "tf1w_log_return_1" in spec.columns()
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert spec.symbols_read() == ["BTC/USDT", "ETH/USDT"]
    with pytest.raises(PluginError, match="same column name"):
        FeatureSpec(
            names=["cross_asset", "cross_asset@again"],
            params={"cross_asset": {"of": "X"}, "cross_asset@again": {"of": "X"}},
        )
    with pytest.raises(ConfigError, match="plugin@label"):
        FeatureSpec(names=["@eth"])
    with pytest.raises(ConfigError, match="of is required"):
        FeatureSpec(names=["cross_asset"])
    with pytest.raises(ConfigError, match="timeframe"):
        FeatureSpec(names=["higher_tf"], params={"higher_tf": {"timeframe": "daily"}})
    with pytest.raises(ConfigError, match="not a time zone"):
        FeatureSpec(names=["higher_tf"], params={"higher_tf": {"tz": "Mars/Olympus"}})
    with pytest.raises(ConfigError, match="reads other frames itself"):
        FeatureSpec(names=["market"], params={"market": {"feature": "higher_tf"}})


def test_a_symbol_not_in_the_run_is_refused_with_its_name(ragged):
    spec = _spec(cross_asset={"of": "BTC/USDT"})
    with pytest.raises(ConfigError, match="'BTC/USDT', which is not a symbol of this run"):
        compute(ragged["AAA"], spec, ragged)
    with pytest.raises(PluginError, match="compute it with the run's frames"):
        compute(ragged["AAA"], spec)


def test_another_symbol_of_another_bar_size_is_refused_and_higher_tf_reads_it(ragged):
    daily = garch_bars(60, seed=9, freq="1D")
    frames = named({"AAA": ragged["AAA"], "DAY": daily})
    with pytest.raises(ConfigError, match=r"reads 'DAY' \(1 days 00:00:00 bars\) for 'AAA'"):
        compute(frames["AAA"], _spec(cross_asset={"of": "DAY"}), frames)
    # through higher_tf the daily bar enters only once the next one is there: causal
    spec = _spec(higher_tf={"of": "DAY", "params": ONE})
    assert cross_findings(spec, frames, "AAA") == []


def test_warm_up_is_counted_on_every_frame(ragged):
    # CCC starts 30 bars late and BBB misses bars: A's cross rows wait for CCC's warm-up
    spec = FeatureSpec(names=["log_return", "cross_asset"], params={"cross_asset": {"of": "CCC"}})
    a = ragged["AAA"]
    raw = compute(a, spec, ragged)
    kept, dropped = drop_warmup(raw, spec, "AAA")
    ccc = ragged["CCC"]
    first_ready = ccc.index[10]  # CCC's 11th bar: log_return_10 defined
    assert kept.index[0] == a.index[a.index >= first_ready][0]
    assert dropped > spec.warmup() and np.isfinite(kept.to_numpy()).all()


def test_the_cross_frame_examples_of_docs_features_md_run():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text()
    section = text.split("## Features beyond one frame", 1)[1].split("\n## ", 1)[0]
    blocks = __import__("re").findall(r"```python\n(.*?)```", section, flags=__import__("re").S)
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "features.md", "exec"), namespace)
    # the plugin example, registered here, passes the kit's cross-frame laws
    from mtl_bt.testing.cross import ragged_frames

    frames = ragged_frames(("BTC/USDT", "ETH/USDT"), bars=400)

    class P:
        @hookimpl
        def register_features(self, register):
            register("leader_range", namespace["leader_range"], "docs example")

    registry.register_plugin(P(), "docs_leader_range")
    try:
        spec = FeatureSpec(names=["leader_range"])
        assert spec.columns() == ["range_5_of_leader", "leader_stale"]
        check_cross_feature("leader_range", frames, target="ETH/USDT")
    finally:
        registry.unregister_plugin("docs_leader_range")


def test_the_run_guard_and_mtl_bt_check_cover_cross_frame_plugins(plugin, ragged):
    from mtl_bt.testing.cross import config_rows
    from mtl_bt.training import guards

    plugin("peek", peek)
    spec = FeatureSpec(names=["log_return", "peek"])
    with pytest.raises(PluginError, match=r"feature 'peek' from plugin .* looks ahead on AAA"):
        guards.check_causal(spec, [], ragged)
    rows = config_rows("peek", FeatureSpec(names=["peek"]), ragged, bars=500, cuts=3)
    assert rows[0][:2] == ("look-ahead", "FAIL") and "column 'peek'" in rows[0][2]
    # a causal cross-frame feature passes every row (built-ins are skipped by the guard)
    good = _spec(cross_asset={"of": "BBB", "staleness": True})
    rows = config_rows("cross_asset", good, ragged, bars=500, cuts=3)
    assert [r[:2] for r in rows] == [
        ("look-ahead", "pass"),
        ("warm-up", "pass"),
        ("streaming = compute", "pass"),
    ]
