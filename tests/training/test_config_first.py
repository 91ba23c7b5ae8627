"""Every plugin item a config names is built, with its options, before any data is loaded
(issue #17, item 9); an unusable --out fails before any work (item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtl_bt.cli import main

#: data from a file that does not exist: an error about it means the data came first
CONFIG = """
[data]
source = "csv"
symbols = ["AAA"]
options = {{path = "{missing}"}}

[features]
names = ["log_return"]

[[tasks]]
name = "return"

[model]
hidden = [4]

[backtest]
{backtest}
"""


def _config(tmp_path: Path, backtest: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(missing=tmp_path / "nope.csv", backtest=backtest))
    return path


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_signal_option_typo_fails_before_any_data_or_training(tmp_path, command):
    config = _config(tmp_path, "signal_options = {target_voll = 0.1}")
    res = CliRunner().invoke(main, [command, str(config), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "backtest.signal_options.target_voll" in res.output
    assert "did you mean 'target_vol'?" in res.output
    assert "nope.csv" not in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_an_unknown_signal_fails_before_any_data(tmp_path):
    config = _config(tmp_path, 'signal = "agree_voltargett"')
    res = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "agree_voltargett" in res.output
    assert "nope.csv" not in res.output


def test_a_valid_config_reaches_the_data(tmp_path):
    """The control: without the typo the first error is the missing data file."""
    config = _config(tmp_path, "signal_options = {target_vol = 0.1}")
    res = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "nope.csv" in res.output


def test_an_unusable_out_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    config = _config(tmp_path, "")
    for command in ("run", "train"):
        res = CliRunner().invoke(main, [command, str(config), "--out", str(blocker / "o")])
        assert res.exit_code == 2 and "is a file, not a folder" in res.output
        assert str(blocker) in res.output
        assert "nope.csv" not in res.output
    res = CliRunner().invoke(main, ["run", str(config), "--out", str(blocker)])
    assert res.exit_code == 2 and "is a file" in res.output


@pytest.mark.parametrize("command", ["run", "train"])
@pytest.mark.parametrize("signal", ["agree_voltarget", "sign", "vol_managed"])
def test_a_signal_horizon_no_task_predicts_fails_before_any_data(tmp_path, command, signal):
    """Issue #28: `horizon = 5` with only return@1 used to fail after every fold trained."""
    config = _config(tmp_path, f'signal = "{signal}"\nsignal_options = {{horizon = 5}}')
    res = CliRunner().invoke(main, [command, str(config), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert (
        "backtest.signal_options" in res.output and "horizon=5 has no return@5 head" in res.output
    )
    assert "the tasks are ['return@1']" in res.output
    assert "nope.csv" not in res.output and "Traceback" not in res.output
