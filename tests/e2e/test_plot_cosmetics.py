"""Report plots and the compare summary read right (issue #28, a newcomer's first hour):
integer fold ticks and one axis per metric, a log axis for long equity curves, no empty bars
for variants without a value, and one verdict line before compare's wide tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mtl_bt.cli.run_cmd import verdict
from mtl_bt.report import plots
from mtl_bt.report.run_report import METRIC_NOTES


@pytest.fixture
def figures(monkeypatch) -> list:
    """The figures the plot functions draw (captured at the write)."""
    drawn: list = []
    real = plots._save

    def keep(fig, path):
        drawn.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return drawn


def test_fold_metrics_have_integer_fold_ticks_and_one_axis_per_metric(tmp_path, figures):
    rows = [
        (fold, task, metric, value)
        for fold in range(4)
        for task, metrics in (("return@1", ["ic", "rmse"]), ("volatility@1", ["qlike", "calibration"]))
        for metric, value in zip(metrics, [0.01 * fold - 0.01, 0.5 + fold], strict=True)
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["fold", "task", "metric", "value"])
    assert plots.plot_fold_metrics(frame, tmp_path / "f.png").is_file()
    axes = [ax for ax in figures[0].axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in axes) == sorted(
        f"{t}: {m}" for t, m in {(r[1], r[2]) for r in rows}
    )
    for ax in axes:
        assert ax.get_legend() is None and len(ax.get_lines()) <= 2  # the series, a zero line
        ticks = [t for t in ax.get_xticks() if -0.5 <= t <= 3.5]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


@pytest.mark.parametrize(("growth", "scale"), [(12.0, "log"), (1.3, "linear")])
def test_equity_gets_a_log_axis_when_it_spans_a_wide_range(tmp_path, figures, growth, scale):
    index = pd.date_range("2000-01-01", periods=500, freq="D", tz="UTC")
    rets = pd.Series(np.full(500, growth ** (1 / 500) - 1), index=index)
    plots.plot_equity({"strategy": rets}, tmp_path / "e.png")
    assert figures[0].axes[0].get_yscale() == scale


def test_bars_leave_out_variants_without_a_value(tmp_path, figures):
    frame = pd.DataFrame(
        {"variant": ["a", "b", "c", "d"], "sharpe": [1.0, math.nan, -0.5, math.nan]}
    )
    plots.plot_bars(frame, "sharpe", None, tmp_path / "s.png", "Sharpe")
    labels = [t.get_text() for t in figures[0].axes[0].get_yticklabels()]
    assert labels == ["a", "c"]
    assert plots.plot_bars(frame.iloc[[1, 3]], "sharpe", None, tmp_path / "n.png", "x") is None


def _table(diff, low, high) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": ["mmoe+equal", "shared_bottom+equal", "single_task[mmoe]"],
            "kind": ["mtl", "mtl", "single_task"],
            "ensemble_sharpe": [0.4, 1.2, 0.3],
            "sharpe_diff": [0.1, diff, math.nan],
            "sharpe_diff_low": [-1.0, low, math.nan],
            "sharpe_diff_high": [1.0, high, math.nan],
        }
    )


@pytest.mark.parametrize(
    ("ci", "said"),
    [((0.9, 0.2, 1.6), "MTL is better"), ((-0.9, -1.6, -0.2), "MTL is worse"),
     ((0.3, -0.4, 1.0), "no significant difference")],
)  # fmt: skip
def test_compare_prints_one_verdict_line(ci, said):
    line = verdict(_table(*ci))
    assert line.startswith("Verdict: best MTL variant shared_bottom+equal (Sharpe 1.20)")
    assert f"Sharpe difference {ci[0]:+.2f}, 95% CI [{ci[1]:.2f}, {ci[2]:.2f}]: {said}" in line
    assert "\n" not in line and len(line) < 250
    assert verdict(_table(*ci).iloc[[2]]) == ""  # no MTL variant with a difference: no verdict


def test_the_report_explains_its_metrics_inline():
    assert "docs/" not in METRIC_NOTES and "qlike" in METRIC_NOTES  # no link dead once shared
