"""write_outputs schema + the `mtl-bt backtest` command (real checkpoints, real files)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner

from mtl_bt.backtesting.runner import json_safe, write_outputs
from mtl_bt.cli import main
from mtl_bt.data import write_frame
from mtl_bt.metrics.performance import PORTFOLIO_KEYS


def test_write_outputs_schema(tmp_path, live_run):
    paths = write_outputs(live_run, tmp_path)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert set(PORTFOLIO_KEYS) <= set(doc["portfolio"])
    assert set(doc["per_asset"]) == {"AAA", "BBB"}
    assert doc["periods_per_year"] == 365
    assert doc["portfolio"]["max_drawdown"] >= 0
    returns = pd.read_csv(paths["returns"])
    assert list(returns.columns) == ["datetime", "portfolio_return"]
    assert len(returns) == len(live_run.returns)
    assert returns["portfolio_return"].tolist() == pytest.approx(
        live_run.returns.tolist(), rel=1e-15
    )
    assert pd.Timestamp(returns["datetime"][0]) == live_run.returns.index[0]
    orders = pd.read_csv(paths["orders"])
    assert {"datetime", "symbol", "side", "size", "price", "status"} <= set(orders.columns)
    trades = pd.read_csv(paths["trades"])
    assert {
        "entry_time",
        "exit_time",
        "entry_price",
        "exit_price",
        "size",
        "pnl",
        "pnl_net",
    } <= set(trades.columns)
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_json_safe_inf_and_nan():
    doc = json_safe({"a": math.inf, "b": -math.inf, "c": math.nan, "d": None, "e": [1.5]})
    assert doc == {"a": "inf", "b": "-inf", "c": None, "d": None, "e": [1.5]}
    json.dumps(doc, allow_nan=False)


@pytest.fixture()
def cli_setup(tmp_path, trained, frames):
    train_dir, cfg, _ = trained
    files = []
    for symbol, frame in frames.items():
        path = tmp_path / "data" / f"{symbol}.csv"
        path.parent.mkdir(exist_ok=True)
        write_frame(frame, path)
        files.append(str(path))
    return train_dir, train_dir / "config.toml", files


def test_cli_backtest_writes_outputs(tmp_path, cli_setup, live_run):
    train_dir, config, files = cli_setup
    out = tmp_path / "bt"
    args = ["backtest", str(config), "--model", str(train_dir), "--out", str(out), "--quiet"]
    for f in files:
        args += ["--data", f]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["portfolio"]["num_trades"] == live_run.metrics["num_trades"]
    assert doc["portfolio"]["sharpe"] == pytest.approx(live_run.metrics["sharpe"], rel=1e-6)
    # one checkpoint file + precomputed mode via --set
    ckpt = sorted((train_dir / "checkpoints").glob("fold_*.pt"))[-1]
    args = [
        "backtest",
        str(config),
        "--model",
        str(ckpt),
        "--out",
        str(tmp_path / "b2"),
        "--set",
        "backtest.mode=precomputed",
    ]
    for f in files:
        args += ["--data", f]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b2" / "returns.csv").exists()
    assert "trades: sharpe" in res.output  # the summary line (no --quiet)


def test_cli_errors_are_clear(tmp_path, cli_setup):
    train_dir, config, files = cli_setup
    stray = tmp_path / "data" / "ZZZ.csv"
    stray.write_text(open(files[0]).read())
    base = ["backtest", str(config), "--model", str(train_dir), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(main, [*base, "--data", str(stray)])
    assert res.exit_code == 2 and "ZZZ" in res.output and "no configured symbol" in res.output
    res = CliRunner().invoke(
        main,
        [
            *base,
            "--set",
            'tasks=[{name="return", horizons=[1]}]',
            *sum((["--data", f] for f in files), []),
        ],
    )
    assert res.exit_code == 2 and "does not match the config" in res.output
    res = CliRunner().invoke(
        main,
        ["backtest", str(config), "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
    )
    assert res.exit_code == 2 and "not found" in res.output


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ('["log_return","rsi"]', "features: model only ['volatility'], config only []"),
        ('["rsi","log_return","volatility"]', "features: same columns in a different order"),
    ],
    ids=["missing", "reordered"],
)
def test_cli_feature_mismatch_is_a_clear_error_before_the_run(tmp_path, cli_setup, names, expected):
    """The config's feature list is not the model's: exit 2 naming the features, nothing run."""
    train_dir, config, files = cli_setup
    out = tmp_path / "o"
    res = CliRunner().invoke(
        main,
        [
            "backtest",
            str(config),
            "--model",
            str(train_dir),
            "--out",
            str(out),
            "--quiet",
            "--set",
            f"features.names={names}",
            *sum((["--data", f] for f in files), []),
        ],
    )
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())  # the one-line error may be wrapped
    assert "does not match the config" in text and expected in text
    assert "tasks:" not in text  # only the features differ
    assert not out.exists()  # the error comes before the run writes anything
