"""The return head's validation-slice calibration (mtl_bt.compare.frontier): causal per fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt.compare.frontier import validation_calibration

PRICES = ["open", "high", "low", "close"]


def _utc(value) -> pd.Timestamp:
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tz is None else t


def moved_from(frames, start, seed=0):
    """Every bar at/after ``start`` scaled by a random factor (OHLC order kept)."""
    rng = np.random.default_rng(seed)
    out = {}
    for symbol, frame in frames.items():
        f = frame.copy()
        index = f.index if f.index.tz is not None else f.index.tz_localize("UTC")
        later = np.asarray(index >= start)
        factor = np.exp(rng.normal(0, 0.05, later.sum()))
        f.loc[later, PRICES] = f.loc[later, PRICES].to_numpy() * factor[:, None]
        f.attrs = dict(frame.attrs)
        out[symbol] = f
    return out


@pytest.mark.parametrize("k", [0, 1, 2])
def test_test_window_bars_leave_the_calibration_unchanged(frames, predictors, k):
    predictor = predictors[k]
    base = validation_calibration(frames, predictor)
    assert base["n"] > 10 and np.isfinite(base["b"])
    moved = moved_from(frames, _utc(predictor.fold["test_start"]), seed=k)
    assert validation_calibration(moved, predictor) == base
    # the check can see a leak: moving the validation slice's last bars changes the fit
    inside = moved_from(frames, _utc(predictor.fold["train_end"]) - pd.Timedelta(days=5), k)
    assert validation_calibration(inside, predictor) != base


def test_the_fit_is_the_least_squares_line(frames, predictors):
    """OLS slope = IC * std(realised) / std(prediction); clipping at 0 keeps the mean."""
    for predictor in predictors:
        row = validation_calibration(frames, predictor)
        assert row["b"] == pytest.approx(row["ic"] * row["realised_std"] / row["pred_std"])
        assert row["b_clipped"] == max(row["b"], 0.0)
        if row["b"] < 0:
            assert row["a_clipped"] != row["a"]


def test_frontier_grid_has_per_decision_then_per_day_rows():
    from mtl_bt import registry
    from mtl_bt.compare.frontier import grid, main

    rows = grid([1.0], [None], [0.5], daily_margins=[7.0, 15.0])
    assert rows[0] == {"hysteresis": False, "margin": 0.0}
    assert [r["margin"] for r in rows[1:]] == [1.0, None, None]
    assert [r.get("daily_margin") for r in rows[1:]] == [None, 7.0, 15.0]
    for options in rows:  # every row builds the rule as the frontier will
        registry.create("signal", "agree_voltarget", **options)
    assert main(["RUN", "--daily-margins", "x"]) == 2


def test_the_calibrated_model_predicts_a_plus_b_times_the_raw_return(frames, predictors):
    from mtl_bt.compare.frontier import calibrated

    predictor = predictors[0]
    fit = {"a_clipped": 0.002, "b_clipped": 0.25}
    model = calibrated(predictor, fit)
    x = np.random.default_rng(0).normal(size=(5, len(predictor.feature_columns)))
    x = x.astype(np.float32)
    ids = np.zeros(5, dtype=np.int64)
    raw, cal = predictor.predict(x, ids), model.predict(x, ids)
    np.testing.assert_allclose(cal["return@1"], 0.002 + 0.25 * raw["return@1"], rtol=1e-12)
    for name in raw:
        if name != "return@1":
            np.testing.assert_array_equal(cal[name], raw[name])
    np.testing.assert_array_equal(predictor.predict(x, ids)["return@1"], raw["return@1"])
