"""The ``volatility_ratio`` task: next-h realised vol over a causal trailing EWMA vol. Its
target obeys the look-ahead laws (past before t-lookback and future after t+h unused), the
anchor at t is an independent weighted mean of r[t-w+1..t]^2, and ``add_anchored`` turns a
ratio forecast back into the level the ``volatility`` task forecasts (same realised target)."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mtl_bt.config import TaskConfig
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.errors import ConfigError
from mtl_bt.metrics.volatility import add_anchored, add_baselines
from mtl_bt.report.oos import oos_metrics
from mtl_bt.tasks import build_tasks, task_from_spec
from mtl_bt.tasks.targets import forward_realised_vol
from mtl_bt.testing import lookahead


def _task(h=3, **options):
    return build_tasks([TaskConfig(name="volatility_ratio", horizons=[h], options=options)])[0]


def test_target_is_forward_vol_over_an_independent_trailing_ewma():
    task = _task(3, half_life=5.0)
    frame = garch_bars(300, seed=1)
    assert task.lookback == 15 and task.name == "volatility_ratio@3"
    r = np.log(frame["close"].to_numpy()).copy()
    r = np.diff(r, prepend=np.nan)
    t = 120
    w = 0.5 ** (np.arange(15) / 5.0)
    anchor = math.sqrt(float(np.sum(w * r[t - np.arange(15)] ** 2) / w.sum()))
    fwd = math.sqrt(float(np.mean(r[t + 1 : t + 4] ** 2)))
    target = task.build_target(frame)
    assert target.iloc[t] == pytest.approx(max(fwd, 1e-4) / anchor, rel=1e-12)
    assert target.iloc[:15].isna().all() and target.iloc[15:-3].notna().all()
    assert target.iloc[-3:].isna().all()


@pytest.mark.parametrize("half_life", [2.0, 5.0, 11.2])
def test_target_obeys_the_lookahead_laws(half_life):
    task = _task(4, half_life=half_life)
    frame = garch_bars(400, seed=3)
    cuts = lookahead.default_cuts(len(frame), task.lookback + task.horizon, 4)
    found = lookahead.target_findings(task.build_target, frame, 4, task.lookback, cuts)
    assert found == []
    # and a shorter declared lookback is caught (the anchor really uses its window)
    short = lookahead.target_findings(task.build_target, frame, 4, task.lookback - 2, cuts)
    assert short and short[0].law == "target uses bars before t-lookback"


def test_anchor_sees_bars_up_to_t_only():
    task = _task(2, half_life=4.0)
    frame = garch_bars(200, seed=4)
    other = lookahead.perturb_future(frame, 120, seed=1)
    a, b = task.anchor(frame).to_numpy(), task.anchor(other).to_numpy()
    np.testing.assert_array_equal(a[:121], b[:121])
    assert not np.allclose(a[121:], b[121:])


def test_options_round_trip_through_a_weights_only_checkpoint_and_are_checked():
    task = _task(5, half_life=7.5, loss="qlike")
    buf = io.BytesIO()
    torch.save(dataclasses.asdict(task.spec), buf)
    buf.seek(0)
    again = task_from_spec(torch.load(buf, weights_only=True))
    assert type(again) is type(task) and again.spec == task.spec and again.lookback == 23
    with pytest.raises(ConfigError, match="half_life"):
        _task(5, half_life=0)


def test_add_anchored_gives_the_level_and_the_volatility_target():
    task = _task(3, half_life=5.0)
    frames = {s: garch_bars(300, seed=i, symbol=s) for i, s in enumerate(("A", "B"))}
    rows = []
    for s, f in frames.items():
        idx = f.index[150:260]
        ratio = task.build_target(f).loc[idx].to_numpy()
        rows.append(
            pd.DataFrame(
                {
                    "datetime": idx,
                    "symbol": s,
                    "fold": 0,
                    task.name: np.full(len(idx), 1.1),
                    f"target_{task.name}": ratio,
                }
            )
        )
    pred = pd.concat(rows, ignore_index=True)
    out = add_anchored(pred, frames, {task.name: task})
    levels, preds = [], []
    for s, f in frames.items():
        mine = out["symbol"] == s
        idx = pd.DatetimeIndex(out.loc[mine, "datetime"])
        anchor = task.anchor(f).loc[idx].to_numpy()
        level = np.maximum(forward_realised_vol(f["close"], 3).loc[idx].to_numpy(), 1e-4)
        np.testing.assert_allclose(out.loc[mine, "volatility_anchored@3"], 1.1 * anchor)
        np.testing.assert_allclose(out.loc[mine, "target_volatility_anchored@3"], level)
        levels.append(level)
        preds.append(1.1 * anchor)
    # scored as a volatility level with the EWMA / HAR baselines on the same rows
    folds = [{"fold": 0, "test_start": str(pred["datetime"].min())}]
    metrics = oos_metrics(add_baselines(out, frames, folds), tasks={task.name: task})
    anchored = metrics[metrics["task"] == "volatility_anchored@3"].set_index(["fold", "metric"])
    assert {"qlike", "calibration", "mz_slope", "qlike_ewma"} <= {m for _f, m in anchored.index}
    level, p = np.concatenate(levels), np.concatenate(preds)
    want = np.sqrt(np.mean(level**2) / np.mean(p**2))
    assert anchored.loc[("all", "calibration"), "value"] == pytest.approx(want, rel=1e-12)
    # and the run report's calibration table lists it beside the ratio task's own rows
    from mtl_bt.report.run_report import calibration_table

    table = calibration_table(metrics)
    assert set(table["task"]) == {"volatility_anchored@3"}
    assert table.set_index(["task", "fold"]).loc[("volatility_anchored@3", "all"), "mz_slope"] > 0
