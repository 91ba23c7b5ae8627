"""A large time gap inside the training data is announced by `run` and `train` (issue #17),
not only by `mtl-bt data info`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.data import write_frame
from mtl_bt.data.synthetic import garch_bars

CONFIG = """
[data]
source = "csv"
symbols = ["AAA"]
timeframe = "1h"
options = {{path = "{path}"}}

[features]
names = ["log_return"]

[[tasks]]
name = "return"

[model]
hidden = [4]

[training]
epochs = 1

[walk_forward]
train_bars = 400
test_bars = 200
max_folds = 1
"""


def _config(tmp_path, hole: int):
    frame = garch_bars(900, seed=1, freq="1h", start="2024-01-01", symbol="AAA")
    frame = frame.drop(frame.index[500 : 500 + hole])
    write_frame(frame, tmp_path / "AAA.csv")
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(path=tmp_path / "AAA.csv"))
    return path


@pytest.mark.parametrize("command", ["train", "run"])
def test_a_large_gap_is_a_warning_line(tmp_path, command):
    config = _config(tmp_path, hole=30)
    res = CliRunner().invoke(main, [command, str(config), "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (
        "warning: AAA: 1 large gap(s) inside the data, the largest 30 missing bars from "
        "2024-01-21T20:00:00+00:00" in res.output
    )
    assert "DataWarning" not in res.output  # one line, not Python's warning format


def test_a_small_gap_is_not_worth_a_warning(tmp_path):
    config = _config(tmp_path, hole=3)
    res = CliRunner().invoke(main, ["train", str(config), "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "large gap" not in res.output
