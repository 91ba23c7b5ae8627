"""Output and cache locations are checked before any work (issue #17, items 8 and 10):
one line naming the path, exit 2, and nothing fetched."""

from __future__ import annotations

from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.data.cache import Cache


def _data(*args: str):
    return CliRunner().invoke(main, ["data", *args])


def _ccxt_fetch(url: str, *more: str):
    return _data(
        "fetch",
        "--source",
        "ccxt",
        "--symbol",
        "BTC/USDT",
        "--since",
        "2024-02-01",
        "--until",
        "2024-02-02",
        "--api-url",
        url,
        *more,
    )


def test_an_unusable_cache_dir_fails_before_the_download(bybit, tmp_path):
    url, state = bybit
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    res = _ccxt_fetch(url, "--cache-dir", str(blocker / "cache"), "--out", str(tmp_path / "o.csv"))
    assert res.exit_code == 2, res.output
    assert f"cache folder {blocker / 'cache'} is not writable" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert state.kline_requests() == []  # nothing was downloaded first


def test_an_unusable_out_folder_fails_before_the_download(bybit, tmp_path):
    url, state = bybit
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    res = _ccxt_fetch(url, "--out", str(blocker / "sub" / "o.csv"))
    assert res.exit_code == 2 and "--out folder" in res.output and "not writable" in res.output
    assert state.kline_requests() == []


def test_fetch_refuses_an_output_name_it_would_not_honour(bybit, tmp_path):
    """.txt is read as CSV but never written as one silently; .xlsx neither."""
    url, state = bybit
    for name in ("x.txt", "x.xlsx"):
        res = _ccxt_fetch(url, "--out", str(tmp_path / name))
        assert res.exit_code == 2 and "name it .csv, .csv.gz or .parquet" in res.output
        assert not (tmp_path / name).exists()
    assert state.kline_requests() == []


def test_clear_cache_counts_only_what_it_removed(tmp_path):
    root = tmp_path / "cache"
    bars = root / "bars" / "ccxt" / "bybit-spot" / "1h"
    bars.mkdir(parents=True)
    (bars / "BTC_USDT.parquet").write_bytes(b"x" * 10)
    (bars / "ETH_USDT.parquet").mkdir()  # cannot be unlinked (even by root)
    res = _data("clear-cache", "--cache-dir", str(root))
    assert res.exit_code == 2
    assert "removed 1 cached file(s)" in res.output
    assert "1 cached file(s) could not be removed and are still there" in res.output
    assert "ETH_USDT.parquet" in res.output
    assert (bars / "ETH_USDT.parquet").exists() and not (bars / "BTC_USDT.parquet").exists()
    assert [p.name for p in Cache(root).files()] == ["ETH_USDT.parquet"]
