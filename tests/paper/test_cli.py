"""``mtl-bt paper``: bad input is a one-line error (exit 2) before any work; SIGTERM stops a
run cleanly after the bar in progress."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pandas as pd
from click.testing import CliRunner
from data_testkit import ExchangeClock
from paper_testkit import HOUR, START, Lockstep, journal_has, paper_config_dict
from test_crash import _Child

from mtl_bt import config as config_mod
from mtl_bt.cli import main


def _toml(tmp_path, data) -> str:
    path = tmp_path / "paper.toml"
    path.write_text(config_mod.dumps(config_mod.from_dict(data)))
    return str(path)


def test_not_a_live_source_is_one_line_error(tmp_path, paper_model):
    data = paper_config_dict("http://127.0.0.1:9")
    data["data"] = {"source": "sample", "symbols": data["data"]["symbols"], "timeframe": "1h"}
    result = CliRunner().invoke(
        main,
        ["paper", _toml(tmp_path, data), "--model", str(paper_model), "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2, result.output
    assert "data.source = 'sample' is not a live source" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "paper.sqlite").exists()  # refused before any state


def test_negative_rate_limit_ms_is_one_line_error_naming_the_key(tmp_path, paper_model):
    data = paper_config_dict("http://127.0.0.1:9")
    data["data"]["options"]["rate_limit_ms"] = -5
    out = tmp_path / "o"
    result = CliRunner().invoke(
        main, ["paper", _toml(tmp_path, data), "--model", str(paper_model), "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "option rate_limit_ms = -5 must be in [0, 3600000]" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (out / "paper.sqlite").exists()  # refused before any state


def test_model_that_does_not_match_the_config_is_refused(tmp_path, paper_model):
    data = paper_config_dict("http://127.0.0.1:9")
    data["tasks"] = [{"name": "return", "horizons": [2]}]
    result = CliRunner().invoke(
        main,
        ["paper", _toml(tmp_path, data), "--model", str(paper_model), "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2 and "does not match the config" in result.output


def test_sigterm_stops_after_the_bar_in_progress(exchange, paper_model, tmp_path):
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(paper_config_dict(url)))
    out = tmp_path / "paper"
    until = START.floor("1h") + 40 * HOUR
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=40):
        child = _Child([str(cfg_path), str(paper_model), str(out), until.isoformat()])
        deadline = time.monotonic() + 60
        while not journal_has(out / "paper.sqlite")(START.floor("1h") + HOUR):
            assert time.monotonic() < deadline and child.poll() is None, child.error()
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGTERM)
        assert child.wait(timeout=30) == 0, child.error()
    db = sqlite3.connect(out / "paper.sqlite")
    bars = db.execute("SELECT COUNT(*) FROM bars").fetchone()[0]
    assert 3 <= bars < 40  # stopped early, after a whole bar
    equity = pd.read_csv(out / "equity.csv")
    assert len(equity) == bars  # the exports were brought up to date before it exited
