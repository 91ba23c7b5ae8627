"""The simple-baselines sentence names a difference only when Holm's p < 0.05.

A lower point estimate with an interval across 0 is "no evidence either way", never
"worse"; the compare CSV columns are the ones `vs_baselines.csv` holds."""

from __future__ import annotations

import math

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.compare import delta as deltas
from mtl_bt.compare.table import simple_verdict

SPECS = [
    deltas.TaskMetric("return@4", "rank_ic", True),
    deltas.TaskMetric("volatility@4", "qlike", False),
]


def _row(baseline: str, d_ret: float, p_ret: float, d_vol: float, p_vol: float) -> dict:
    return {
        "variant": "mtl",
        "baseline": baseline,
        "sharpe": 0.5,
        "baseline_sharpe": 0.8,
        "sharpe_diff": -0.3,
        "sharpe_diff_low": -1.0,
        "sharpe_diff_high": 0.4,
        "sharpe_diff_seeds_low": -1.2,
        "sharpe_diff_seeds_high": 0.6,
        "sharpe_diff_seeds_p_holm": 0.7,
        "d_return@4": d_ret,
        "d_return@4_p_holm": p_ret,
        "d_volatility@4": d_vol,
        "d_volatility@4_p_holm": p_vol,
    }


def test_point_estimates_are_not_called_worse() -> None:
    line = simple_verdict(pd.DataFrame([_row("linear", -0.02, 0.6, 0.01, 0.9)]), SPECS)
    assert "baseline better on none" in line
    assert "MTL better on none" in line
    assert "no evidence either way" in line
    assert "Holm p 0.7: no evidence either way" in line


def test_significant_differences_are_named_with_the_metric_direction() -> None:
    # lower QLIKE is better: a negative difference at Holm p 0.01 is an MTL win
    line = simple_verdict(pd.DataFrame([_row("lightgbm", -0.02, 0.01, -0.03, 0.001)]), SPECS)
    assert "MTL better on volatility@4 qlike vs lightgbm" in line
    assert "baseline better on return@4 rank_ic vs lightgbm" in line


@given(
    d=st.floats(-1, 1, allow_nan=False),
    p=st.floats(0, 1, allow_nan=False),
)
def test_a_task_is_named_only_below_holm_005(d: float, p: float) -> None:
    line = simple_verdict(pd.DataFrame([_row("linear", d, p, 0.0, 1.0)]), SPECS)
    named = "rank_ic vs linear" in line
    assert named == (p < 0.05 and d != 0 and math.isfinite(d))
