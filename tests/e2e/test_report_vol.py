"""The run report's volatility calibration per fold and realised-vs-target volatility."""

from __future__ import annotations

import pandas as pd
import pytest

from mtl_bt.report.run_report import calibration_table, target_vol_table


def test_calibration_table_per_fold_next_to_the_baselines():
    rows = []
    for fold in ("all", 0, 1):
        for metric, value in (("calibration", 1.1), ("calibration_ewma", 0.9), ("qlike", 0.3)):
            rows.append({"fold": fold, "task": "volatility@24", "metric": metric, "value": value})
    rows.append({"fold": "all", "task": "return@24", "metric": "ic", "value": 0.1})
    table = calibration_table(pd.DataFrame(rows))
    assert list(table["fold"]) == ["all", 0, 1]
    assert list(table.columns) == ["task", "fold", "calibration", "calibration_ewma", "qlike"]


def test_target_vol_from_config_or_rule_default():
    metrics = {"per_asset": {"A": {"annual_volatility": 0.1, "exposure": 0.25}}}
    table = target_vol_table(metrics, "[backtest]\nsignal_options = {target_vol = 0.15}\n")
    assert table.loc[0, "target_vol"] == 0.15
    assert table.loc[0, "realised vol while held"] == pytest.approx(0.2)
    default = target_vol_table(metrics, '[backtest]\nsignal = "vol_managed"\n')
    assert default.loc[0, "target_vol"] == 0.2
