"""Bad input on the data commands says what happened and what to do (issue #28): a full disk
during `data fetch`, an unreachable exchange being retried, a malformed api_url, a window
outside the data, sources switched off by MTL_BT_DISABLE_PLUGINS."""

from __future__ import annotations

import errno

import pandas as pd
import pytest
from click.testing import CliRunner
from data_testkit import BybitServer

from mtl_bt import registry
from mtl_bt.cli import main


def _run(*args: str):
    return CliRunner().invoke(main, ["data", *args])


def _one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_a_full_disk_during_data_fetch_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    real = pd.DataFrame.to_csv

    def full(self, path, *args, **kwargs):  # pandas' writer fails with the OS's ENOSPC
        real(self.head(3), path, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    out = tmp_path / "btc.csv"
    res = _run("fetch", "--symbol", "BTC/USDT", "--until", "2024-02-01", "--out", str(out))
    line = _one_line_error(res)
    assert f"no space left on the device holding {out}" in line and "free" in line
    assert list(tmp_path.iterdir()) == []  # no partial file, no temp file


def test_an_unreachable_exchange_says_what_it_retries(tmp_path):
    with BybitServer() as server:
        server.down()  # connections refused, as when the exchange is unreachable
        res = _run(
            "fetch", "--source", "ccxt", "--symbol", "BTC/USDT", "--since", "2024-02-01",
            "--until", "2024-02-02", "--api-url", server.url, "--option", "retries=2",
            "--option", "backoff=0", "--out", str(tmp_path / "b.csv"),
        )  # fmt: skip
    assert res.exit_code == 2, res.output
    retries = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(retries) == 2, res.output
    assert "load_markets failed (NetworkError" in retries[0] or "failed (" in retries[0]
    assert "retry 1 of 2 in 0 s" in retries[0] and "retry 2 of 2" in retries[1]
    assert "failed after 3 attempts" in res.output


@pytest.mark.parametrize("url", ["notaurl", "api.bybit.com", "ftp://x.example"])
def test_a_malformed_api_url_says_what_a_valid_one_looks_like(tmp_path, url):
    res = _run(
        "fetch", "--source", "ccxt", "--symbol", "BTC/USDT", "--api-url", url,
        "--out", str(tmp_path / "b.csv"),
    )  # fmt: skip
    line = _one_line_error(res)
    assert f"api_url = {url!r} is not an http(s) URL" in line
    assert "e.g. 'https://api-testnet.bybit.com'" in line


def test_a_window_after_the_data_names_the_data_range(tmp_path):
    res = _run("info", "--symbol", "BTC/USDT", "--since", "2030-01-01")
    line = _one_line_error(res)
    assert "None" not in line
    assert "from 2030-01-01 00:00:00+00:00" in line
    assert "the data covers 2023-12-31 00:00:00+00:00 .. 2024-12-30 01:00:00+00:00" in line


def test_sources_switched_off_by_the_environment_name_the_variable(monkeypatch):
    monkeypatch.delenv("MTL_BT_LOAD_PLUGINS", raising=False)
    monkeypatch.setenv("MTL_BT_DISABLE_PLUGINS", "builtin")
    registry.reset()
    res = _run("info", "--symbol", "BTC/USDT")
    line = _one_line_error(res)
    assert "unknown source 'sample'" in line
    assert "MTL_BT_DISABLE_PLUGINS=builtin keeps plugin(s)" in line and "builtin_sources" in line


def test_a_full_disk_outside_mtl_bt_s_own_writes_is_one_line_too(monkeypatch):
    """A library's own temp file (not an mtl-bt artefact) filling the disk: the CLI's last
    guard turns ENOSPC into one line naming the file, exit 2, no traceback."""
    import mtl_bt.data

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/some-library-cache.bin")

    monkeypatch.setattr(mtl_bt.data, "load_frames", full)
    line = _one_line_error(_run("info", "--symbol", "BTC/USDT"))
    assert "no space left on the device writing /tmp/some-library-cache.bin" in line
