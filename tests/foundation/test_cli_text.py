"""What the CLI prints for people to read (issue #28, a newcomer's first hour): fractions as
percentages in the demo's table, every row aligned, epochs counted from 1, plurals."""

from __future__ import annotations

from mtl_bt.cli.run_cmd import PERCENT, metrics_text
from mtl_bt.report.run_report import METRICS
from mtl_bt.training.pipeline import _epochs

DOC = {
    "portfolio": {
        "sharpe": 1.234, "sortino": 2.0, "max_drawdown": -0.1234, "win_rate": 0.51,
        "cagr": 0.2, "annual_volatility": 0.3, "calmar": 1.1, "num_trades": 12,
        "exposure": 0.9, "turnover": 12.3, "gross_sharpe": 1.5, "gross_cagr": 0.25,
        "cost_drag": 0.012, "rejected_orders": 0, "profit_factor": float("nan"),
    }
}  # fmt: skip


def test_the_metrics_table_shows_percentages_in_aligned_columns():
    lines = metrics_text(DOC, DOC).splitlines()
    assert len({len(line) for line in lines}) == 1  # "Costs per year" no longer breaks it
    rows = {line[: line.index("  ")].strip(): line.split()[-1] for line in lines[1:]}
    assert rows["Max drawdown"] == "-12.34%" and rows["Costs per year"] == "1.20%"
    assert rows["Win rate"] == "51.00%" and rows["Sharpe"] == "1.234" and rows["Trades"] == "12"
    assert {key for key, _ in METRICS} >= PERCENT


def test_epochs_are_counted_from_one():
    assert _epochs(1, 0) == "1 epoch (best: epoch 1)"
    assert _epochs(5, 2) == "5 epochs (best: epoch 3)"
