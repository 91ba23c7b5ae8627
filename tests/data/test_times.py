"""Times are instants (issue #17, items 5 and 6): offsets that change with daylight saving,
naive and offset times mixed, trading-day gaps for daily bars, and no row numbers taken
for epoch times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.data import describe, normalise, read_frame
from mtl_bt.errors import ConfigError, DataError


def _ohlcv(n: int) -> dict[str, np.ndarray]:
    close = 100 + np.arange(n, dtype=float)
    return {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": close}


def test_a_new_york_index_as_pandas_writes_it_reads_as_instants(tmp_path):
    """-05:00 in winter, -04:00 in summer: one column, two offsets."""
    times = pd.date_range("2000-03-01 16:00", "2000-04-28 16:00", freq="B", tz="America/New_York")
    frame = pd.DataFrame(_ohlcv(len(times)), index=times.rename("date"))
    path = tmp_path / "SPY.csv"
    frame.to_csv(path)
    text = path.read_text()
    assert "-05:00" in text and "-04:00" in text
    bars = read_frame(path)
    assert bars.index.equals(pd.DatetimeIndex(times.tz_convert("UTC"), name="datetime"))
    assert describe(bars).gaps == []  # 16:00 New York is 21:00 or 20:00 UTC: same days


def test_naive_and_offset_times_mixed_are_instants(tmp_path):
    path = tmp_path / "X.csv"
    path.write_text(
        "date,open,high,low,close,volume\n"
        "2024-01-02 10:00:00,1,2,0.5,1.5,10\n"
        "2024-01-02 12:00:00+01:00,1,2,0.5,1.5,10\n"
        "2024-01-02T12:00:00Z,1,2,0.5,1.5,10\n"
    )
    bars = read_frame(path)
    assert list(bars.index) == [
        pd.Timestamp("2024-01-02 10:00", tz="UTC"),
        pd.Timestamp("2024-01-02 11:00", tz="UTC"),
        pd.Timestamp("2024-01-02 12:00", tz="UTC"),
    ]


def test_ambiguous_local_times_stay_a_clear_error(tmp_path):
    path = tmp_path / "X.csv"
    path.write_text(
        "date,open,high,low,close,volume\n"
        "2024-11-03 00:30:00,1,2,0.5,1.5,10\n2024-11-03 01:30:00,1,2,0.5,1.5,10\n"
    )
    from mtl_bt.data.io import bars_from_table, read_table

    with pytest.raises(DataError, match="cannot place naive times in time zone 'America/New_York'"):
        bars_from_table(read_table(path), symbol="X", tz="America/New_York", path=path)


def _eod(tmp_path, drop: list[str] | None = None):
    days = pd.bdate_range("2021-01-04", "2021-12-31")
    days = days[~days.isin(pd.DatetimeIndex(drop or []))]
    table = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), **_ohlcv(len(days))})
    path = tmp_path / "eod.csv"
    table.to_csv(path, index=False)
    return path


def test_eod_example_in_new_york_time_has_no_fake_summer_gaps(tmp_path):
    """docs/data.md: `mtl-bt data info --source csv --path eod.csv --symbol SPY
    --option tz=America/New_York` (midnights move between 05:00 and 04:00 UTC)."""
    path = _eod(tmp_path)
    args = ["data", "info", "--source", "csv", "--path", str(path), "--symbol", "SPY"]
    res = CliRunner().invoke(main, [*args, "--option", "tz=America/New_York"])
    assert res.exit_code == 0, res.output
    assert "gaps: 0 (0 bars missing)" in res.output
    # a real missing trading day is still found, in summer time too
    path = _eod(tmp_path, drop=["2021-07-06"])
    res = CliRunner().invoke(main, [*args, "--option", "tz=America/New_York"])
    assert "closed or missing weekdays: 1 bar in 1 gap(s)" in res.output  # a holiday, or not
    assert "1 bar missing from 2021-07-06T04:00:00+00:00" in res.output  # New York midnight


def test_row_numbers_are_not_epoch_times(tmp_path):
    """A frame written with DataFrame.to_csv() and no time column: its unnamed first column
    holds 0, 1, 2 ... and must not become 1-second bars from 1970."""
    path = tmp_path / "X.csv"
    pd.DataFrame(_ohlcv(50)).to_csv(path)
    with pytest.raises(
        DataError, match=r"no time column found: column 'Unnamed: 0' holds numbers 0 \.\. 49"
    ):
        read_frame(path)
    with pytest.raises(DataError, match="no time column found: the index holds numbers"):
        normalise(pd.DataFrame(_ohlcv(50)), symbol="X", source="test")


def test_epoch_numbers_with_an_explicit_unit(tmp_path):
    seconds = 1_700_000_000 + 3600 * np.arange(24)
    path = tmp_path / "X.csv"
    pd.DataFrame({"timestamp": seconds, **_ohlcv(24)}).to_csv(path, index=False)
    frame = read_frame(path)  # seconds by magnitude
    assert frame.index[0] == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")
    from mtl_bt.plugins.sources.csv_file import CsvSource

    got = CsvSource().fetch(["X"], path=str(path), time_unit="s")["X"]
    assert got.index.equals(frame.index)
    with pytest.raises(DataError, match="as epoch ms are not times"):
        CsvSource().fetch(["X"], path=str(path), time_unit="ms")  # 1970-01-20: implausible
    with pytest.raises(ConfigError, match="time_unit 'days' must be one of"):
        CsvSource().fetch(["X"], path=str(path), time_unit="days")
