"""`mtl-bt train`: in-process (CliRunner) and the installed console script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mtl_bt import checkpoint as ckpt
from mtl_bt.cli import main
from mtl_bt.training import pipeline, trainer

CONFIG = """
[data]
source = "sample"
symbols = ["BTC/USDT", "ETH/USDT"]
timeframe = "1h"
since = "2024-02-01"
until = "2024-03-05"

[features]
names = ["log_return", "volatility", "volume_ratio"]

[[tasks]]
name = "return"
horizons = [1, 3]

[[tasks]]
name = "direction"

[[tasks]]
name = "volatility"
horizons = [4]

[[tasks]]
name = "volume"
horizons = [2]

[model]
architecture = "shared_bottom"
hidden = [8]

[training]
epochs = 2
batch_size = 128
threads = 1

[walk_forward]
train_bars = 400
test_bars = 150
max_folds = 2
"""


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG)
    return path


def _check_outputs(out: Path, folds: int = 2) -> None:
    names = ["return@1", "return@3", "direction@1", "volatility@4", "volume@2"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"fold_{i:03d}.pt" for i in range(folds)
    ]
    pred = pd.read_parquet(out / "predictions.parquet")
    assert list(pred.columns[:3]) == ["datetime", "symbol", "fold"]
    assert [c for c in pred.columns[3:] if not c.startswith("target_")] == names
    assert set(pred["symbol"]) == {"BTC/USDT", "ETH/USDT"}
    assert pred["direction@1"].between(0, 1).all()
    log = pd.read_csv(out / "train_log.csv")
    assert {f"weight_{n}" for n in names} <= set(log.columns)
    assert sorted(set(log["fold"])) == list(range(folds))
    resolved = tomllib.loads((out / "config.toml").read_text())
    assert resolved["training"]["epochs"] == 2
    doc = json.loads((out / "folds.json").read_text())
    assert len(doc["folds"]) == folds
    c = ckpt.load(out / "checkpoints" / "fold_000.pt")
    assert c.task_names == names and c.symbols == ["BTC/USDT", "ETH/USDT"]


def test_cli_train_writes_everything(config_file, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["train", str(config_file), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output == ""  # --quiet
    _check_outputs(out)


class _TerminalStderr:
    """The current ``sys.stderr`` (CliRunner's capture), claiming to be a terminal."""

    def __init__(self, stream):
        self._stream = stream

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _TerminalSys:
    """Stands in for the ``sys`` module the trainer reads ``sys.stderr`` from."""

    @property
    def stderr(self):
        return _TerminalStderr(sys.stderr)

    def __getattr__(self, name):
        return getattr(sys, name)


#: what tqdm draws for a fold: "fold 0:  50%|#####     | 1/2 [00:00<...]"
FOLD_BAR = re.compile(r"fold (\d+): +\d+%\|.*?\| \d+/2 \[")


def test_fold_progress_bar_on_a_terminal_and_quiet_hides_it(config_file, tmp_path, monkeypatch):
    runner = CliRunner()
    res = runner.invoke(main, ["train", str(config_file), "--out", str(tmp_path / "pipe")])
    assert res.exit_code == 0, res.output
    assert "fold 0: test" in res.stderr  # the per-fold lines, but no bar: not a terminal
    assert not FOLD_BAR.search(res.stderr)
    monkeypatch.setattr(trainer, "sys", _TerminalSys())
    res = runner.invoke(main, ["train", str(config_file), "--out", str(tmp_path / "shown")])
    assert res.exit_code == 0, res.output
    assert sorted(set(FOLD_BAR.findall(res.stderr))) == ["0", "1"]  # one bar per fold
    res = runner.invoke(
        main, ["train", str(config_file), "--out", str(tmp_path / "quiet"), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert not FOLD_BAR.search(res.stderr) and res.output == ""


def test_cli_errors_are_one_line_exit_2(config_file, tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        main, ["train", str(config_file), "--out", str(tmp_path / "o"), "--set", "training.epoch=3"]
    )
    assert res.exit_code == 2 and "unknown key 'training.epoch'" in res.output
    res = runner.invoke(
        main,
        [
            "train",
            str(config_file),
            "--out",
            str(tmp_path / "o"),
            "--set",
            "weighting.options.bogus=1",
        ],
    )
    assert res.exit_code == 2 and "bogus" in res.output
    res = runner.invoke(
        main,
        [
            "train",
            str(config_file),
            "--out",
            str(tmp_path / "o"),
            "--set",
            'model.architecture="mmeo"',
        ],
    )
    assert res.exit_code == 2 and "mmoe" in res.output  # registry suggests the close name
    res = runner.invoke(
        main,
        [
            "train",
            str(config_file),
            "--out",
            str(tmp_path / "o"),
            "--set",
            "walk_forward.train_bars=5000",
        ],
    )
    assert res.exit_code == 2 and "too little history" in res.output and "found" in res.output
    res = runner.invoke(
        main,
        ["train", str(config_file), "--out", str(tmp_path / "o"), "--set", "data.options.bogus=1"],
    )
    assert res.exit_code == 2 and "bogus" in res.output
    assert not (tmp_path / "o" / "checkpoints").exists() or not list(
        (tmp_path / "o" / "checkpoints").iterdir()
    )


def test_interrupt_keeps_finished_folds(config_file, tmp_path, monkeypatch):
    real = pipeline.fit

    def fit_then_interrupt(*args, **kwargs):
        if kwargs["fold"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fit", fit_then_interrupt)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["train", str(config_file), "--out", str(out), "--quiet"])
    assert res.exit_code == 130
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["fold_000.pt"]
    ckpt.load(out / "checkpoints" / "fold_000.pt")
    pred = pd.read_parquet(out / "predictions.parquet")
    assert set(pred["fold"]) == {0}
    assert not list(out.rglob("*.tmp"))


def test_installed_console_script(config_file, tmp_path):
    exe = Path(sys.executable).parent / "mtl-bt"
    if not exe.exists():
        pytest.skip("console script not installed next to this interpreter")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            str(exe),
            "train",
            str(config_file),
            "--out",
            str(out),
            "--set",
            "walk_forward.max_folds=1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "trained 1 fold(s) on 2 symbol(s)" in proc.stdout
    _check_outputs(out, folds=1)


def test_train_trains_on_one_thread_by_default_like_run_and_compare(tmp_path, monkeypatch):
    """Issue #28: `mtl-bt train` used torch's default (every core: 35.9 s against 12.5 s on
    one thread for the crypto config) while run and compare pinned one. One default now."""
    import torch

    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG.replace("threads = 1\n", "").replace("max_folds = 2", "max_folds = 1"))
    seen: list[int] = []
    real = pipeline.fit

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fit", spy)
    torch.set_num_threads(2)  # the caller's setting (torch's default on a 2-core machine)
    try:
        res = CliRunner().invoke(
            main, ["train", str(path), "--out", str(tmp_path / "o"), "--quiet"]
        )
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(1)
    assert res.exit_code == 0, res.output
    assert seen == [1] and after == 2  # one thread while training, the caller's restored
