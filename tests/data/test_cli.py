"""``mtl-bt data fetch | info | clear-cache`` end to end (sample, csv, ccxt over loopback)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.data import read_frame, write_frame
from mtl_bt.data.synthetic import garch_bars


def _run(*args: str):
    return CliRunner().invoke(main, ["data", *args], catch_exceptions=False)


def test_fetch_one_symbol_to_csv_and_back(tmp_path):
    out = tmp_path / "btc.csv"
    result = _run(
        "fetch",
        "--symbol",
        "BTC/USDT",
        "--since",
        "2024-06-01",
        "--until",
        "2024-06-03",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "BTC/USDT: 48 bars" in result.output
    frame = read_frame(out, symbol="BTC/USDT")
    assert len(frame) == 48 and frame.index[0] == pd.Timestamp("2024-06-01", tz="UTC")
    assert out.read_text().splitlines()[0] == "datetime,open,high,low,close,volume"


def test_fetch_several_symbols_writes_one_file_each(tmp_path):
    out = tmp_path / "bars.parquet"
    result = _run(
        "fetch",
        "--symbol",
        "AAPL",
        "--symbol",
        "MSFT",
        "--since",
        "2010-01-01",
        "--until",
        "2011-01-01",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AAPL.parquet", "MSFT.parquet"]
    aapl = read_frame(tmp_path / "AAPL.parquet")
    assert aapl.attrs["symbol"] == "AAPL" and len(aapl) == 252
    folder = tmp_path / "dir"
    result = _run(
        "fetch",
        "--symbol",
        "ETH/USDT",
        "--symbol",
        "DOT/USDT",
        "--until",
        "2024-01-01",
        "--out",
        str(folder),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["DOT_USDT.csv", "ETH_USDT.csv"]


def test_info_reports_range_count_timeframe_gaps_zero_volume(tmp_path):
    bars = garch_bars(100, freq="1h", start="2024-01-01")
    holey = bars.drop(bars.index[[10, 11, 50]])
    holey.loc[holey.index[3], "volume"] = 0.0
    write_frame(holey, tmp_path / "X.csv")
    result = _run("info", "--source", "csv", "--symbol", "X", "--path", str(tmp_path / "X.csv"))
    assert result.exit_code == 0, result.output
    text = result.output
    assert (
        "X: 97 bars, 2024-01-01T00:00:00+00:00 .. 2024-01-05T03:00:00+00:00, timeframe 1h" in text
    )
    assert "gaps: 2 (3 bars missing)" in text and "zero-volume bars: 1" in text
    result = _run(
        "info", "--source", "csv", "--symbol", "X", "--path", str(tmp_path / "X.csv"), "--json"
    )
    (info,) = json.loads(result.output)
    assert info["bars"] == 97 and info["gaps"] == 2 and info["missing_bars"] == 3
    assert info["zero_volume"] == 1 and info["timeframe"] == "1h"


def test_info_sample_stocks_and_user_errors_exit_2(tmp_path):
    result = _run("info", "--symbol", "GOOG")
    assert result.exit_code == 0 and "GOOG: 2148 bars" in result.output
    assert "(weekends closed)" in result.output
    result = _run("info", "--symbol", "AAPL", "--timeframe", "1h")
    assert result.exit_code == 2 and "has 1d bars" in result.output
    result = _run("info", "--source", "nope", "--symbol", "A")
    assert result.exit_code == 2 and "unknown source 'nope'" in result.output
    result = _run("fetch", "--symbol", "AAPL", "--out", str(tmp_path / "x.xlsx"))
    assert result.exit_code == 2 and "unknown format" in result.output


def test_fetch_from_ccxt_loopback_then_clear_cache(bybit, tmp_path):
    url, state = bybit
    cache = tmp_path / "cache"
    args = [
        "fetch",
        "--source",
        "ccxt",
        "--symbol",
        "BTC/USDT",
        "--since",
        "2024-02-01",
        "--until",
        "2024-02-03",
        "--api-url",
        url,
        "--cache-dir",
        str(cache),
        "--out",
        str(tmp_path / "btc.parquet"),
    ]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert "BTC/USDT: 48 bars" in result.output
    # the real load_markets ran against the loopback server's instruments-info
    assert {r["category"] for r in state.requests if "instruments" in r["path"]} >= {
        "spot",
        "linear",
    }
    assert len(state.kline_requests()) == 1
    result = _run(*args)  # served from the cache
    assert len(state.kline_requests()) == 1
    frame = read_frame(tmp_path / "btc.parquet")
    assert np.isfinite(frame.to_numpy()).all() and len(frame) == 48
    result = _run("clear-cache", "--cache-dir", str(cache))
    assert result.exit_code == 0 and "removed 1 cached file(s)" in result.output
    _run(*args)
    assert len(state.kline_requests()) == 2


def test_bad_request_options_name_the_key_before_any_fetch(tmp_path):
    """Options are checked like config keys: exit 2, one line naming data.<key>."""
    for args, key in (
        (["--since", "2024-99-01"], "'data.since'"),
        (["--since", "2024-02-01", "--until", "2024-01-01"], "data.until"),
        (["--timeframe", "7x"], "'data.timeframe'"),
    ):
        res = _run("info", "--symbol", "AAPL", *args)
        assert res.exit_code == 2, (args, res.output)
        assert "invalid config (mtl-bt data options)" in res.output and key in res.output
        assert "Traceback" not in res.output and "pydantic" not in res.output
