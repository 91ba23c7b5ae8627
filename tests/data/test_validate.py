"""The validation module: every bad case gives its error; repairs are reported; round trips."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_bt.data import read_frame, write_frame
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.data.validate import DataWarning, describe, infer_timeframe, normalise
from mtl_bt.errors import DataError


def _raw(n: int = 6, freq: str = "1h") -> pd.DataFrame:
    """A small valid frame with capitalised names and a naive index (as users bring it)."""
    frame = garch_bars(n, seed=3, freq=freq)
    frame.columns = ["Open", "High", "Low", "Close", "Volume"]
    frame.index = frame.index.tz_localize(None)
    return frame


def _norm(frame: pd.DataFrame, **kw) -> pd.DataFrame:
    return normalise(frame, symbol="XYZ", source="test", path="f.csv", **kw)


def test_canonical_shape_and_attrs():
    out = _norm(_raw())
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert all(out.dtypes == "float64")
    assert str(out.index.tz) == "UTC" and out.index.name == "datetime"
    assert out.attrs == {"symbol": "XYZ", "timeframe": "1h", "source": "test"}
    np.testing.assert_array_equal(out["close"].to_numpy(), _raw()["Close"].to_numpy())


def test_missing_ohlc_column_names_symbol_column_and_file():
    with pytest.raises(
        DataError, match=r"symbol 'XYZ' \(file f.csv\): missing column\(s\) \['high'\]"
    ):
        _norm(_raw().drop(columns=["High"]))


def test_non_numeric_value_names_column_and_timestamp():
    raw = _raw().astype(object)
    raw.iloc[3, raw.columns.get_loc("Low")] = "n/a"
    stamp = raw.index[3].isoformat()
    with pytest.raises(DataError, match=rf"column 'low' has non-numeric value 'n/a' at {stamp}"):
        _norm(raw)


def test_nan_in_ohlc_is_an_error():
    raw = _raw()
    raw.iloc[2, 3] = np.nan
    with pytest.raises(DataError, match=rf"column 'close' is NaN .* at {raw.index[2].isoformat()}"):
        _norm(raw)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_price_is_an_error(value):
    raw = _raw()
    raw.iloc[4, 0] = value
    with pytest.raises(
        DataError, match=rf"column 'open' has non-positive price .* at {raw.index[4].isoformat()}"
    ):
        _norm(raw)


def test_high_below_open_close_is_an_error():
    raw = _raw()
    raw.iloc[1, 1] = min(raw.iloc[1, 0], raw.iloc[1, 3]) * 0.99
    with pytest.raises(
        DataError, match=rf"column 'high' is below max\(open, close\) at {raw.index[1].isoformat()}"
    ):
        _norm(raw)


def test_low_above_open_close_is_an_error():
    raw = _raw()
    raw.iloc[5, 2] = max(raw.iloc[5, 0], raw.iloc[5, 3]) * 1.01
    with pytest.raises(
        DataError, match=rf"column 'low' is above min\(open, close\) at {raw.index[5].isoformat()}"
    ):
        _norm(raw)


def test_float_noise_in_high_is_snapped_and_reported():
    raw = _raw()
    raw.iloc[1, 1] = max(raw.iloc[1, 0], raw.iloc[1, 3]) * (1 - 1e-12)
    with pytest.warns(DataWarning, match="1 high value"):
        out = _norm(raw)
    assert out["high"].iloc[1] == max(out["open"].iloc[1], out["close"].iloc[1])


def test_negative_volume_is_an_error():
    raw = _raw()
    raw.iloc[0, 4] = -5
    with pytest.raises(DataError, match="column 'volume' is negative"):
        _norm(raw)


def test_unsorted_rows_are_sorted_with_a_warning():
    raw = _raw()
    with pytest.warns(DataWarning, match="not in time order; sorted"):
        out = _norm(raw.iloc[::-1])
    pd.testing.assert_frame_equal(out, _norm(raw))


def test_identical_duplicates_dropped_conflicting_duplicates_error():
    raw = _raw()
    doubled = pd.concat([raw, raw.iloc[[2]]]).sort_index()
    with pytest.warns(DataWarning, match="1 identical duplicate"):
        out = _norm(doubled)
    assert len(out) == len(raw)
    conflicting = doubled.copy()
    conflicting.iloc[3, 4] += 1.0  # second copy of row 2 differs in volume
    with pytest.raises(DataError, match=rf"duplicate timestamp {raw.index[2].isoformat()}"):
        _norm(conflicting)


def test_missing_volume_is_nan_with_a_warning():
    with pytest.warns(DataWarning, match="no volume column; volume is NaN"):
        out = _norm(_raw().drop(columns=["Volume"]))
    assert out["volume"].isna().all() and out["volume"].dtype == "float64"


def test_timeframe_smaller_than_declared_is_an_error():
    with pytest.raises(DataError, match=r"closer than the timeframe '1d'.*inferred 1h"):
        _norm(_raw(), timeframe="1d")


def test_epoch_millisecond_and_string_indexes_are_parsed():
    raw = _raw()
    expected = _norm(raw).index
    raw.index = expected.as_unit("ms").asi8  # plain int64 epoch milliseconds
    assert _norm(raw).index.equals(expected)
    raw.index = [t.isoformat() for t in expected]
    assert _norm(raw).index.equals(expected)


def test_unparseable_time_is_an_error():
    raw = _raw()
    raw.index = ["2024-01-01"] * 5 + ["yesterday"]
    with pytest.raises(DataError, match="'yesterday' is not a date/time"):
        _norm(raw)


def test_infer_timeframe_is_the_bar_size_despite_gaps():
    daily = pd.bdate_range("2024-01-01", periods=30, tz="UTC")  # weekends skipped
    assert infer_timeframe(daily) == "1d"
    assert infer_timeframe(pd.date_range("2024", periods=10, freq="15min")) == "15m"
    assert infer_timeframe(pd.date_range("2024", periods=5, freq="4h")) == "4h"
    with pytest.raises(DataError, match="at least 2"):
        infer_timeframe(pd.DatetimeIndex(["2024-01-01"]))


def test_describe_reports_gaps_and_zero_volume_without_filling():
    frame = garch_bars(48, freq="1h", start="2024-01-01")
    holey = frame.drop(frame.index[[5, 6, 7, 30]])
    holey.loc[holey.index[10], "volume"] = 0.0
    summary = describe(holey)
    assert [(g.start, g.bars) for g in summary.gaps] == [(frame.index[5], 3), (frame.index[30], 1)]
    assert summary.missing_bars == 4 and summary.zero_volume == 1 and summary.bars == 44
    assert len(holey) == 44  # nothing filled
    assert "gaps: 2 (4 bars missing)" in "\n".join(summary.lines())


def test_describe_weekday_data_does_not_count_weekends():
    days = pd.bdate_range("2024-01-01", "2024-03-01", tz="UTC")
    frame = garch_bars(len(days))
    frame.index = days.rename("datetime")
    assert describe(frame).gaps == [] and describe(frame).weekends_closed
    summary = describe(frame.drop(frame.index[3]))
    assert summary.missing_bars == 1 and summary.gaps[0].start == days[3]


# -- property: any valid frame survives normalise -> write -> read unchanged -------------------
_finite = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def valid_frames(draw):
    n = draw(st.integers(min_value=1, max_value=25))
    step = draw(st.sampled_from(["1min", "1h", "1D", "7D"]))
    start = draw(
        st.datetimes(min_value=pd.Timestamp("1990-01-01"), max_value=pd.Timestamp("2030-01-01"))
    )
    index = pd.date_range(pd.Timestamp(start).floor("s"), periods=n, freq=step, tz="UTC")
    keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    index = index[[k or i == 0 for i, k in enumerate(keep)]]  # gaps allowed
    rows = []
    for _ in range(len(index)):
        o, c = draw(_finite), draw(_finite)
        h = max(o, c) * draw(st.floats(min_value=1, max_value=1.5))
        low = min(o, c) / draw(st.floats(min_value=1, max_value=1.5))
        v = draw(st.one_of(st.just(0.0), st.floats(min_value=0, max_value=1e12)))
        rows.append((o, h, low, c, v))
    frame = pd.DataFrame(rows, index=index, columns=["open", "high", "low", "close", "volume"])
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".csv.gz"])
@settings(max_examples=25)
@given(frame=valid_frames())
def test_normalise_write_read_round_trip(tmp_path_factory, suffix, frame):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # a valid frame needs no repair
        canonical = normalise(frame, symbol="BTC/USDT", source="test")
        path = tmp_path_factory.mktemp("rt") / f"BTC_USDT{suffix}"
        write_frame(canonical, path)
        back = read_frame(path, symbol="BTC/USDT", timeframe=canonical.attrs["timeframe"])
    pd.testing.assert_frame_equal(back, canonical, check_exact=True, check_freq=False)
    assert back.index.equals(canonical.index)
    assert (
        back.attrs["symbol"] == "BTC/USDT"
        and back.attrs["timeframe"] == canonical.attrs["timeframe"]
    )


def test_messages_show_plain_numbers_not_numpy_reprs():
    """`-1.5`, not `np.float64(-1.5)` (issue #17)."""
    index = pd.date_range("2024-01-01", periods=2, freq="1h", tz="UTC")
    bars = {"open": [1.0, -1.5], "high": [2.0, 2.0], "low": [0.5, 0.5], "close": [1.0, 1.0]}
    frame = pd.DataFrame({**bars, "volume": [1.0, 1.0]}, index=index)
    with pytest.raises(DataError) as err:
        normalise(frame, symbol="X", source="t")
    assert "non-positive price -1.5 at" in str(err.value) and "np." not in str(err.value)
    frame["open"] = [1.0, 1.0]
    frame["high"] = np.array([2.0, 0.5])
    with pytest.raises(DataError) as err:
        normalise(frame, symbol="X", source="t")
    assert "(open=1.0, high=0.5, low=0.5, close=1.0)" in str(err.value)


# -- one series, one bar size (issue #28) ----------------------------------------------
def _two_sizes(first: str, n_first: int, second: str, n_second: int) -> pd.DataFrame:
    """``n_first`` bars ``first`` apart, then ``n_second`` bars ``second`` apart (a file that
    appends 6-hourly bars to daily ones)."""
    a = pd.date_range("2021-01-01", periods=n_first, freq=first)
    b = pd.date_range(a[-1] + pd.Timedelta(second), periods=n_second, freq=second)
    frame = garch_bars(n_first + n_second, seed=5, freq="1h")
    frame.index = a.append(b)
    return frame


@pytest.mark.parametrize("order", ["daily then 6h", "6h then daily"])
def test_a_change_of_bar_size_is_refused_naming_both_sizes_and_the_row(order):
    if order == "daily then 6h":
        frame, change = _two_sizes("1D", 300, "6h", 200), 299
    else:
        frame, change = _two_sizes("6h", 200, "1D", 300), 199
    with pytest.raises(DataError) as err:
        _norm(frame)  # timeframe unset: it used to be read as 6h with gaps, Sharpe and all
    text = str(err.value)
    assert f"the bar size changes at row {change} ({frame.index[change].isoformat()}" in text
    assert "1d bars" in text and "6h bars" in text and "f.csv" in text and "XYZ" in text
    with pytest.raises(DataError, match="bar size changes"):  # a declared 6h does not hide it
        _norm(frame, timeframe="6h")


@settings(max_examples=30, deadline=None)
@given(
    freq=st.sampled_from(["1min", "1h", "4h", "1D"]),
    gaps=st.lists(st.integers(1, 400), max_size=25),
)
def test_one_bar_size_with_gaps_is_never_taken_for_a_change(freq, gaps):
    """Outages and missing bars (here up to 25 holes in 600 bars) are gaps, not a new size."""
    frame = garch_bars(600, seed=1, freq=freq)
    keep = np.ones(len(frame), bool)
    keep[[g for g in gaps if g < len(frame) - 1]] = False
    out = _norm(frame[keep])
    assert out.attrs["timeframe"] == infer_timeframe(frame.index)


def test_stock_sessions_are_one_bar_size():
    """Weekday daily bars (runs of at most 5 equal steps) and hourly session bars (nights and
    weekends between) are one bar size each."""
    days = pd.bdate_range("2020-01-01", periods=400, tz="UTC")
    hours = pd.DatetimeIndex(
        [d + pd.Timedelta(hours=14, minutes=30) + pd.Timedelta(hours=h) for d in days[:60]
         for h in range(7)]
    )  # fmt: skip
    for index, size in ((days, "1d"), (hours, "1h")):
        frame = garch_bars(len(index), seed=2, freq="1h")
        frame.index = index
        assert _norm(frame).attrs["timeframe"] == size
