"""One rule for CONFIG in every command (issue #17): a TOML file, or a shipped config's
name (`crypto`, `stocks`) when no such file exists."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.cli.configs import SHIPPED, config_path, shipped_config
from mtl_bt.errors import ConfigError

SMALL = [
    "--set",
    'data.symbols=["BTC/USDT"]',
    "--set",
    'data.until="2024-03-01"',
    "--set",
    "walk_forward.train_bars=600",
    "--set",
    "walk_forward.test_bars=200",
    "--set",
    "walk_forward.max_folds=1",
    "--set",
    "training.epochs=1",
    "--set",
    "model.asset_embedding=0",
]


def test_a_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_path("crypto") == shipped_config("crypto")
    (tmp_path / "stocks").mkdir()  # a run folder (`--out stocks`) is not a config
    assert config_path("stocks") == shipped_config("stocks")
    (tmp_path / "crypto").write_text("")
    assert config_path("crypto").resolve() == (tmp_path / "crypto").resolve()


def test_a_folder_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; give a TOML file"):
        config_path(tmp_path)


@pytest.mark.parametrize("command", ["run", "train", "backtest", "compare", "demo"])
def test_every_command_gives_the_same_error_for_an_unknown_name(tmp_path, command):
    args = [command, "cryptoo", "--out", str(tmp_path / "o")]
    if command == "backtest":
        args += ["--model", str(tmp_path)]
    if command == "demo":
        args = ["demo", "--config", "cryptoo", "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "config file cryptoo not found; give a TOML file or a shipped config" in res.output
    assert ", ".join(sorted(SHIPPED)) in res.output


def test_train_and_backtest_take_a_shipped_name_like_run(tmp_path):
    out = tmp_path / "t"
    res = CliRunner().invoke(main, ["train", "crypto", "--out", str(out), "--quiet", *SMALL])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        main, ["backtest", "crypto", "--model", str(out), "--out", str(tmp_path / "b"), *SMALL]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "metrics.json").exists()
