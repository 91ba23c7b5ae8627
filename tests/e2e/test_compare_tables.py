"""compare's tables of tests: Holm beside raw p-values, per-fold calibration over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_bt.compare.table import add_holm, calibration_view
from mtl_bt.compare.variants import Variant


def test_holm_columns_adjust_one_family_across_columns():
    table = pd.DataFrame({"a_p": [0.01, 0.04, np.nan], "b_p": [0.03, np.nan, 0.5]})
    add_holm(table, ["a_p", "b_p", "missing_p"])
    # family of 4: 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.09, 0.09, 0.5
    np.testing.assert_allclose(table["a_p_holm"], [0.04, 0.09, np.nan])
    np.testing.assert_allclose(table["b_p_holm"], [0.09, np.nan, 0.5])
    assert "missing_p_holm" not in table


def _seed(folder: Path, slopes: dict[str, float]) -> None:
    folder.mkdir(parents=True)
    (folder / "job.json").write_text("{}")
    rows = [
        {"fold": f, "task": "volatility@24", "metric": m, "value": v}
        for f, slope in slopes.items()
        for m, v in (("calibration", 1.0 / slope), ("mz_slope", slope), ("n", 100.0))
    ]
    rows.append({"fold": "all", "task": "return@24", "metric": "ic", "value": 0.01})
    pd.DataFrame(rows).to_csv(folder / "oos_metrics.csv", index=False)


def test_calibration_view_shows_every_fold_mean_and_std_over_seeds(tmp_path):
    runs = tmp_path / "runs"
    _seed(runs / "m" / "seed_0", {"all": 1.0, "0": 0.6, "1": 1.2})
    _seed(runs / "m" / "seed_1", {"all": 1.0, "0": 0.4, "1": 1.4})
    _seed(runs / "st" / "seed_0", {"all": 0.9})  # a seed without per-fold rows
    variants = [Variant("m", "mtl", "a", "equal"), Variant("st", "single_task", "a", "")]
    view = calibration_view(runs, variants, [0, 1])
    mine = view[view["variant"] == "m"].set_index("fold")
    assert list(mine.index) == ["all", "0", "1"]  # pooled first, then the folds in order
    assert mine.loc["0", "mz_slope"] == "0.5 ± 0.14"
    assert mine.loc["1", "mz_slope"] == "1.3 ± 0.14"
    assert view[view["variant"] == "st"]["mz_slope"].tolist() == ["0.9"]
    assert calibration_view(runs, [Variant("x", "mtl", "a", "equal")], [0]).empty


@pytest.mark.parametrize("bad", [["a_p"], []])
def test_add_holm_on_a_table_without_tests_changes_nothing(bad):
    table = pd.DataFrame({"x": [1.0]})
    add_holm(table, bad)
    assert list(table.columns) == ["x"]
