"""The csv source and bar-file I/O: header variants, time formats, tz, atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from mtl_bt.config import DataConfig
from mtl_bt.data import load_frames, read_frame, symbol_filename, write_frame
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.errors import ConfigError, DataError
from mtl_bt.plugins.sources.csv_file import CsvSource

BARS = garch_bars(30, seed=7, freq="1h", start="2024-03-10")


def _fetch(path, symbols=("XYZ",), **options):
    return CsvSource().fetch(list(symbols), path=str(path), **options)


def _check(frame: pd.DataFrame, expected: pd.DataFrame = BARS) -> None:
    assert frame.index.equals(expected.index)
    np.testing.assert_allclose(frame.to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert frame.attrs["timeframe"] == "1h" and frame.attrs["source"] == "csv"


def test_symbol_filename():
    assert symbol_filename("BTC/USDT") == "BTC_USDT"
    assert symbol_filename("BTC/USDT:USDT") == "BTC_USDT_USDT"
    assert symbol_filename("AAPL") == "AAPL"
    with pytest.raises(DataError):
        symbol_filename("..")


@pytest.mark.parametrize("time_name", ["date", "datetime", "Time", "TIMESTAMP"])
def test_named_time_columns_iso_strings(tmp_path, time_name):
    table = BARS.reset_index()
    table.columns = [time_name, "open", "high", "low", "close", "volume"]
    table[time_name] = table[time_name].dt.strftime("%Y-%m-%d %H:%M:%S+00:00")
    path = tmp_path / "x.csv"
    table.to_csv(path, index=False)
    _check(_fetch(path)["XYZ"])


def test_unnamed_index_column_with_capitalised_headers(tmp_path):
    table = BARS.copy()
    table.columns = ["Open", "High", "Low", "Close", "Volume"]
    table.index = table.index.tz_localize(None)
    table.index.name = None
    path = tmp_path / "pandas_default.csv"
    table.to_csv(path)  # header: ",Open,High,Low,Close,Volume"
    assert (tmp_path / "pandas_default.csv").read_text().startswith(",Open,High,Low,Close,Volume")
    _check(_fetch(path)["XYZ"])


def test_epoch_milliseconds_and_adj_close_ignored_by_default(tmp_path):
    table = BARS.reset_index()
    table["datetime"] = table["datetime"].astype("int64") // 1000  # us -> ms
    table["timestamp"] = table.pop("datetime")
    table["Adj Close"] = table["close"] * 0.5
    path = tmp_path / "ms.csv"
    table.to_csv(path, index=False)
    _check(_fetch(path)["XYZ"])


def test_adjust_option_scales_by_adj_close(tmp_path):
    table = BARS.reset_index()
    table["Adj Close"] = table["close"] * 0.5
    path = tmp_path / "adj.csv"
    table.to_csv(path, index=False)
    frame = _fetch(path, adjust=True)["XYZ"]
    np.testing.assert_allclose(frame["close"], BARS["close"] * 0.5, rtol=1e-12)
    np.testing.assert_allclose(frame["volume"], BARS["volume"] / 0.5, rtol=1e-12)


def test_naive_times_are_utc_unless_tz_option(tmp_path):
    winter = garch_bars(30, seed=7, freq="1h", start="2024-01-10")
    table = winter.copy()
    table.index = table.index.tz_localize(None).rename("Date")
    path = tmp_path / "naive.csv"
    table.to_csv(path)
    _check(_fetch(path)["XYZ"], winter)
    shifted = _fetch(path, tz="America/New_York")["XYZ"]
    assert shifted.index.equals(winter.index + pd.Timedelta("5h"))  # EST is UTC-5


def test_tz_option_dst_gap_is_a_clear_error(tmp_path):
    table = BARS.copy()  # 2024-03-10 00:00 .. : 02:00 does not exist in New York that day
    table.index = table.index.tz_localize(None).rename("Date")
    path = tmp_path / "naive.csv"
    table.to_csv(path)
    with pytest.raises(DataError, match="cannot place naive times in time zone 'America/New_York'"):
        _fetch(path, tz="America/New_York")


def test_offsets_in_strings_win(tmp_path):
    table = BARS.tz_convert("Asia/Tokyo").reset_index()
    path = tmp_path / "tokyo.csv"
    table.to_csv(path, index=False)  # "2024-03-10 09:00:00+09:00"
    assert "+09:00" in path.read_text()
    _check(_fetch(path, tz="America/New_York")["XYZ"])


def test_parquet_with_datetime_index(tmp_path):
    path = tmp_path / "x.parquet"
    BARS.to_parquet(path)
    _check(_fetch(path)["XYZ"])


def test_folder_of_symbol_files_and_long_format(tmp_path):
    write_frame(BARS, tmp_path / "BTC_USDT.csv")
    write_frame(BARS * 2, tmp_path / "ETH_USDT.parquet")
    frames = _fetch(tmp_path, symbols=("BTC/USDT", "ETH/USDT"))
    _check(frames["BTC/USDT"])
    np.testing.assert_allclose(frames["ETH/USDT"]["close"], BARS["close"] * 2)
    long = pd.concat(
        [BARS.assign(Ticker="A").reset_index(), (BARS * 3).assign(Ticker="B").reset_index()]
    )
    long.to_csv(tmp_path / "long.csv", index=False)
    frames = _fetch(tmp_path / "long.csv", symbols=("A", "B"))
    _check(frames["A"])
    np.testing.assert_allclose(frames["B"]["open"], BARS["open"] * 3)
    with pytest.raises(DataError, match=r"no rows for symbol 'C'.*\['A', 'B'\]"):
        _fetch(tmp_path / "long.csv", symbols=("C",))
    with pytest.raises(DataError, match="no file for symbol 'SOL/USDT'.*SOL_USDT.csv"):
        _fetch(tmp_path, symbols=("SOL/USDT",))


def test_csv_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="needs option path"):
        CsvSource().fetch(["X"])
    with pytest.raises(DataError, match="not found"):
        _fetch(tmp_path / "nope.csv")
    path = tmp_path / "notime.csv"
    BARS.to_csv(path, index=False)
    with pytest.raises(DataError, match="no time column"):
        _fetch(path)
    bad = BARS.reset_index()
    bad["datetime"] = bad["datetime"].astype(str)
    bad.loc[4, "datetime"] = "not a time"
    bad.to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"symbol 'XYZ' \(file .*notime.csv\): time value 'not a time'"
    ):
        _fetch(path)
    write_frame(BARS, path)
    with pytest.raises(DataError, match="has 1h bars, not 1d"):
        CsvSource().fetch(["XYZ"], timeframe="1d", path=str(path))
    with pytest.raises(DataError, match="one series but 2 symbols"):
        _fetch(path, symbols=("A", "B"))
    with pytest.raises(ConfigError, match="does not take option"):
        _fetch(path, tzz="UTC")


def test_csv_through_load_frames_with_since_until(tmp_path):
    write_frame(BARS, tmp_path / "XYZ.csv")
    cfg = DataConfig(
        source="csv",
        symbols=["XYZ"],
        timeframe=None,
        since="2024-03-10 05:00",
        until="2024-03-10 10:00",
        options={"path": str(tmp_path / "XYZ.csv")},
    )
    frame = load_frames(cfg)["XYZ"]
    _check(frame, BARS.iloc[5:10])
    assert frame.attrs == {"symbol": "XYZ", "timeframe": "1h", "source": "csv"}
    assert not any((tmp_path / "cache").rglob("*.parquet"))  # local files are never cached


def test_interrupted_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "bars.parquet"
    write_frame(BARS, path)
    before = path.read_bytes()

    def crash(self, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"PAR1 half a file")
        raise KeyboardInterrupt  # the process is killed mid-write

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        write_frame(BARS * 2, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["bars.parquet"]  # no temp file left behind
    monkeypatch.undo()
    frame = read_frame(path)
    assert frame.attrs["symbol"] == "SYN"  # stored symbol wins over the file name
    np.testing.assert_array_equal(frame.to_numpy(), BARS.to_numpy())
