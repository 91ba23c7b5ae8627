"""`mtl-bt check CONFIG`: look-ahead and warm-up of every plugin a config uses."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.config import dumps
from mtl_bt.testing import tiny_config


def _config(tmp_path, **sections):
    path = tmp_path / "cfg.toml"
    path.write_text(dumps(tiny_config(**sections)))
    return str(path)


def test_every_builtin_passes(tmp_path):
    result = CliRunner().invoke(main, ["check", _config(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    features = {r["name"] for r in rows if r["kind"] == "feature"}
    assert len(features) == 12  # features.names unset: every built-in feature
    assert {r["status"] for r in rows if r["kind"] in ("feature", "task")} <= {"pass", "note"}
    contract = {r["kind"]: r["status"] for r in rows if r["law"] == "contract"}
    assert contract == {"architecture": "pass", "weighting": "pass", "signal": "pass"}
    for row in rows:  # "1 law", "3 laws" (it said "1 laws")
        if row["law"] == "contract":
            n, word = row["detail"].split()
            assert word == ("law" if n == "1" else "laws"), row
    parity = [r for r in rows if r["law"] == "streaming = preloaded"]
    assert parity[-1]["kind"] == "backtest" and parity[-1]["status"] == "pass"
    assert {r["status"] for r in parity[:-1]} <= {"note"}  # at most the calendar note


def test_peek_centred_and_start_dependent_features_are_each_named(bad_plugins, tmp_path):
    cfg = _config(tmp_path, features={"names": ["log_return", "peek", "centred", "anchored"]})
    result = CliRunner().invoke(main, ["check", cfg])
    assert result.exit_code == 2, result.output
    # 3 look-ahead/warm-up failures; each also streams to other values (3 + the backtest)
    assert "7 check(s) failed" in result.output
    assert "feature 'anchored' (plugin 'bad_plugins') streaming = preloaded" in result.output
    assert "feature 'peek' (plugin 'bad_plugins') look-ahead" in result.output
    assert "column 'peek' first differs at bar" in result.output
    assert "feature 'centred' (plugin 'bad_plugins') look-ahead" in result.output
    assert "feature 'anchored' (plugin 'bad_plugins') warm-up" in result.output
    assert "never settles" in result.output
    assert "Traceback" not in result.output
    table = result.output.split("Error:")[0]
    assert "log_return" in table and "pass" in table


def test_misdeclared_warmup_and_misaligned_target(bad_plugins, tmp_path):
    cfg = _config(
        tmp_path,
        features={"names": ["short_declared"]},
        tasks=[{"name": "return", "horizons": [2]}, {"name": "too_far", "horizons": [2]}],
    )
    result = CliRunner().invoke(main, ["check", cfg])
    assert result.exit_code == 2, result.output
    assert "feature 'short_declared' (plugin 'bad_plugins') warm-up" in result.output
    assert "declared warm-up 5" in result.output
    assert "task 'too_far@2' (plugin 'bad_plugins') target window" in result.output


def test_unknown_plugin_in_config_is_a_one_line_error(tmp_path):
    cfg = _config(tmp_path, features={"names": ["no_such_feature"]})
    result = CliRunner().invoke(main, ["check", cfg])
    assert result.exit_code == 2
    assert "unknown feature 'no_such_feature'" in result.output


def test_a_bad_architecture_weighting_and_signal_are_named(bad_plugins, tmp_path):
    cfg = _config(
        tmp_path,
        features={"names": ["log_return"]},
        model={"architecture": "two_tower", "hidden": [8]},
        weighting={"name": "drifting"},
        backtest={"signal": "sums_to_five"},
    )
    result = CliRunner().invoke(main, ["check", cfg])
    assert result.exit_code == 2, result.output
    assert "weighting 'drifting' (plugin 'bad_plugins') contract" in result.output
    assert "signal 'sums_to_five' (plugin 'bad_plugins') contract" in result.output
    assert "architecture 'two_tower'" not in result.output.split("Error:")[1]  # it passes
