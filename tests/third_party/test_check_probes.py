"""`mtl-bt check` on the probes: each bad one is named with its real cause, in one line
(exit 2); the honest controls and the time-aware feature pass every law; the output says
how many bars of each symbol it covered."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.config import dumps
from mtl_bt.testing import tiny_config


def _check(tmp_path, names, *args):
    path = tmp_path / "cfg.toml"
    path.write_text(dumps(tiny_config(features={"names": ["log_return", *names]})))
    return CliRunner().invoke(main, ["check", str(path), *args])


def test_the_bad_probes_are_each_named_with_their_cause(probes, tmp_path):
    names = ["eth_peek", "cached_once", "cached_by_first_bar", "raising"]
    result = _check(tmp_path, names, "--json", "--parity-bars", "0")
    rows = json.loads(result.output.split("\nError:")[0])
    failed = {(r["name"], r["law"]): r["detail"] for r in rows if r["status"] == "FAIL"}
    assert failed.keys() >= {
        ("eth_peek", "look-ahead"),
        ("cached_once", "state between calls"),
        ("cached_by_first_bar", "state between calls"),
        ("raising", "runs"),
    }, failed
    assert failed["eth_peek", "look-ahead"].startswith("ETH/USDT: prefix invariance")
    assert "keeps state between calls" in failed["cached_once", "state between calls"]
    assert failed["raising", "runs"] == (
        "BTC/USDT: raised ZeroDivisionError: probe: division by zero in the plugin"
    )
    assert not any(r["status"] == "FAIL" for r in rows if r["name"] == "log_return")
    result = _check(tmp_path, ["raising"], "--parity-bars", "0")
    assert result.exit_code == 2 and "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1
    assert "feature 'raising' (plugin 'probe_plugins') runs: BTC/USDT: raised" in error[0]


def test_honest_controls_and_hour_of_day_pass_with_the_whole_data_covered(probes, tmp_path):
    result = _check(tmp_path, [*probes.HONEST, "hour_of_day"], "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert not [r for r in rows if r["status"] == "FAIL"]
    covered = {r["name"]: r["detail"] for r in rows if r["law"] == "bars covered"}
    assert covered["BTC/USDT"].startswith("all 960 bars") and covered["ETH/USDT"].startswith(
        "all 960 bars"
    )
    laws = {(r["name"], r["law"]): r["status"] for r in rows}
    assert laws["hour_of_day", "state between calls"] == "pass"
    backtest = [r for r in rows if r["kind"] == "backtest" and r["law"] == "streaming = preloaded"]
    assert backtest[-1]["status"] == "pass", backtest


def test_a_streaming_mismatch_names_look_ahead_as_its_cause(probes, tmp_path):
    result = _check(tmp_path, ["eth_peek"], "--json", "--parity-bars", "100")
    assert result.exit_code == 2
    rows = json.loads(result.output.split("\nError:")[0])
    [row] = [r for r in rows if r["name"] == "eth_peek" and r["law"] == "streaming = preloaded"]
    assert row["detail"].startswith("ETH/USDT: column 'eth_peek' first differs at bar"), row
    assert "; look-ahead: on the bars up to that one it is" in row["detail"]
    assert "declare @feature(window" not in row["detail"]


def test_a_plugin_exception_named_by_compute_is_still_checks_finding():
    """compute wraps a third-party feature's exception in PluginRaised (a UserError, which
    `check` lets through); `check` turns it back into the plugin's FAIL row, on the symbol
    the plugin ran on (a cross-frame feature runs on another symbol's frame)."""
    from mtl_bt.plugin_calls import PluginRaised, calling
    from mtl_bt.testing.config_check import _on, _Raised

    def boom():
        raise KeyError("probe")

    with pytest.raises(_Raised) as got, _on("AAA"):
        calling("feature 'x' from plugin 'p'", "BBB", boom)
    assert got.value.detail == "BBB: raised KeyError: 'probe'"
    with pytest.raises(PluginRaised):  # outside check: the one line
        calling("feature 'x' from plugin 'p'", "BBB", boom)
