"""`python -m mtl_bt.experiments.<name>`: bad input is one line and exit code 2, before any
work; a good run writes its table and owns its folder."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from mtl_bt.experiments import pooling, transfer

from .conftest import write_data

CONFIG = """
[data]
source = "csv"
symbols = ["AAA", "BBB", "CCC"]
timeframe = "1h"
options = {{path = "{path}"}}

[features]
names = {features}

{tasks}

[model]
hidden = [4]
dropout = 0.0

[training]
epochs = 1
batch_size = 128

[walk_forward]
train_bars = 300
test_bars = 120
max_folds = 1
"""
TASKS = """
[[tasks]]
name = "return"
horizons = [2]

[[tasks]]
name = "volatility"
horizons = [2]
"""


def _config(tmp_path, tasks=TASKS, features='["log_return", "volatility"]', late=0):
    data = write_data(tmp_path / "data", late)
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(path=data["options"]["path"], tasks=tasks, features=features))
    return path


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.toml"], "config file missing.toml not found"),
        (["nosuch"], "config file nosuch not found"),
    ],
)
def test_a_missing_config_is_one_line(tmp_path, args, message):
    res = CliRunner().invoke(transfer.main, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [f"Error: {message}; give a TOML file or a "
                                               "shipped config (crypto, stocks)"]  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_a_config_without_a_volatility_task_is_refused_before_work(tmp_path):
    tasks = '[[tasks]]\nname = "return"\nhorizons = [2]\n'
    config = _config(tmp_path, tasks=tasks)
    res = CliRunner().invoke(pooling.main, [str(config), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "needs a 'volatility' task" in lines[0], res.output
    assert not (tmp_path / "o").exists()


def test_transfer_refuses_cross_symbol_features_in_one_line(tmp_path):
    config = _config(tmp_path, features='["log_return", "market"]')
    res = CliRunner().invoke(transfer.main, [str(config), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "read other symbols" in res.output


def test_zero_seeds_is_a_usage_error_of_the_module(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "mtl_bt.experiments.transfer", "crypto", "--seeds", "0",
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "--seeds" in res.stderr
    assert not (tmp_path / "o").exists()


def test_a_run_writes_its_table_and_a_manifest(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "o"
    res = CliRunner().invoke(pooling.main, [str(config), "--seeds", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "table.csv")
    assert len(table) == 2 * (1 + 3)
    assert "## One pooled network vs one network per asset" in res.output
    assert (out / "manifest.json").exists()
    assert (out / "table.md").read_text() in res.output
    again = CliRunner().invoke(pooling.main, [str(config), "--seeds", "1", "--out", str(out)])
    assert again.exit_code == 0  # a finished experiment folder is replaced as a whole


def test_a_symbol_no_pool_can_pair_is_named_in_the_heading(tmp_path):
    """CCC has no bars in the only fold's training window (as FB in the stocks sample):
    its own model is not trained, the heading says so, and CCC has no row of its own."""
    config = _config(tmp_path, late=330)
    out = tmp_path / "o"
    res = CliRunner().invoke(pooling.main, [str(config), "--seeds", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Not trained (their bars are unpaired): volatility@2 fold 0 own CCC: no training" in (
        res.output
    )
    assert list(pd.read_csv(out / "table.csv")["symbol"]) == ["all", "AAA", "BBB"] * 2
