"""Ridge/logistic and LightGBM baselines per task on the run's own folds: fitted on train
rows only, scored by the run's metric functions, traded through the run's rule, and the
command on a real (tiny) run folder."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from mtl_bt import config as config_mod
from mtl_bt.compare import baselines as bl
from mtl_bt.data.synthetic import garch_bars

TASKS = [
    {"name": "return", "horizons": [1]},
    {"name": "direction", "horizons": [1]},
    {"name": "volatility", "horizons": [2]},
]


def _config():
    return config_mod.from_dict(
        {
            "data": {"source": "csv", "symbols": ["AAA", "BBB"], "timeframe": "1h"},
            "features": {"names": ["log_return", "volatility", "rsi"]},
            "tasks": TASKS,
            "model": {"hidden": [8], "dropout": 0.0},
            "training": {"epochs": 1, "batch_size": 64, "seed": 0},
            "walk_forward": {"train_bars": 300, "test_bars": 120, "max_folds": 2},
        }
    )


@pytest.fixture(scope="module")
def frames():
    return {s: garch_bars(700, seed=i + 3, freq="1h", symbol=s) for i, s in enumerate("AB")}


@pytest.fixture(scope="module")
def fitted(frames):
    return bl.fit_baselines(_config(), frames)


def _dataset(frames):
    from mtl_bt.training.dataset import cached_dataset
    from mtl_bt.training.pipeline import build_components, splits_for

    cfg = _config()
    comp = build_components(cfg)
    ds = cached_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)
    return cfg, comp, ds, splits_for(cfg, ds)


def test_changing_later_targets_leaves_a_fold_unchanged(frames, fitted):
    """Perturbed-future law: every target from fold 0's test slice on is changed; fold 0's
    baselines (fitted before it) predict exactly as before, fold 1's (whose train slice now
    holds changed targets) do not."""
    cfg, _, ds, splits = _dataset(frames)
    later = ds.pos >= splits[0].test_start
    targets = ds.targets.copy()
    rng = np.random.default_rng(1)
    targets[later, 0] = rng.normal(0.0, 0.05, later.sum())  # return
    targets[later, 1] = 1.0 - targets[later, 1]  # direction flipped
    targets[later, 2] = targets[later, 2] * 3.0  # volatility
    moved = bl.fit_baselines(cfg, frames, targets=targets).predictions
    base = fitted.predictions
    names = [t["name"] + f"@{t['horizons'][0]}" for t in TASKS]
    for model in bl.MODELS:
        a = base[(base["model"] == model) & (base["fold"] == 0)][names].to_numpy()
        b = moved[(moved["model"] == model) & (moved["fold"] == 0)][names].to_numpy()
        np.testing.assert_array_equal(a, b)
        a = base[(base["model"] == model) & (base["fold"] == 1)][names].to_numpy()
        b = moved[(moved["model"] == model) & (moved["fold"] == 1)][names].to_numpy()
        assert not np.allclose(a, b)  # the perturbation reaches the later fold's fit


def test_metrics_are_the_tasks_own_on_the_test_rows(frames, fitted):
    _, comp, _, splits = _dataset(frames)
    table = fitted.metrics.set_index(["model", "fold", "task", "metric"])["value"]
    checked = 0
    for model in bl.MODELS:
        for split in splits:
            rows = fitted.predictions[
                (fitted.predictions["model"] == model) & (fitted.predictions["fold"] == split.fold)
            ]
            for task in comp.tasks:
                p, y = rows[task.name].to_numpy(), rows[f"target_{task.name}"].to_numpy()
                ok = np.isfinite(p) & np.isfinite(y)
                for metric, value in task.metrics(p[ok], y[ok]).items():
                    assert table[(model, split.fold, task.name, metric)] == pytest.approx(value)
                    checked += 1
    assert checked == 2 * len(splits) * (3 + 4 + 4)
    vol = fitted.predictions["volatility@2"]
    assert (vol > 0).all() and np.isfinite(vol).all()
    up = fitted.predictions["direction@1"]
    assert ((up > 0) & (up < 1)).all()


def test_the_traded_predictor_predicts_what_was_scored(frames, fitted):
    """``BaselinePredictor`` (what the strategy reads) on the raw feature rows gives the
    scored test predictions: the backtest trades the predictions in the table."""
    _, comp, ds, splits = _dataset(frames)
    names = [t.name for t in comp.tasks]

    class Inner:  # only what BaselinePredictor reads from a run's fold predictor
        task_names, tasks = names, comp.tasks

    for fb, split in zip(fitted.folds, splits, strict=True):
        rows = ds.rows_in(split.test_start, split.test_end, trainable=False)
        for model in bl.MODELS:
            out = bl.BaselinePredictor(Inner(), fb, model).predict(ds.features[rows])
            scored = fitted.predictions[
                (fitted.predictions["model"] == model) & (fitted.predictions["fold"] == fb.fold)
            ]
            for name in names:
                np.testing.assert_allclose(out[name], scored[name].to_numpy(), rtol=1e-6)


def test_missing_dependency_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    assert bl.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: baselines need scikit-learn and LightGBM: {bl.INSTALL}"
    monkeypatch.delitem(sys.modules, "lightgbm")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(bl.UserError, match="mtl-bt\\[baselines\\]"):
        bl.fit_baselines(_config(), {})


@pytest.mark.parametrize("family", ["regression", "classification", "variance"])
def test_lightgbm_fit_does_not_depend_on_the_seed(family):
    """No row or column subsampling: the seed cannot change the fit, which is why compare
    fits LightGBM once, not once per training seed."""
    rng = np.random.default_rng(0)
    x, xv, xt = (rng.normal(size=(n, 6)) for n in (600, 200, 50))
    y, yv = (np.abs(a[:, 0] + 0.5 * rng.normal(size=len(a))) for a in (x, xv))

    class Task:
        spec = type("Spec", (), {"options": {}})()

    heads = [bl.fit_lightgbm(family, Task(), x, y, xv, yv, seed) for seed in (0, 12345)]
    np.testing.assert_array_equal(heads[0](xt), heads[1](xt))


def test_the_command_on_a_real_run_folder(tmp_path, capsys):
    """``mtl-bt run`` on two bundled pairs (tiny), then the command: the table holds the
    run's metrics beside both baselines, and both baselines are traded by the run's rule."""
    from mtl_bt.pipeline import run

    cfg = config_mod.from_dict(
        {
            "data": {
                "source": "sample",
                "symbols": ["BTC/USDT", "ETH/USDT"],
                "timeframe": "1h",
                "since": "2024-01-01",
                "until": "2024-02-05",
            },
            "features": {"names": ["log_return", "volatility", "rsi"]},
            "tasks": [{"name": n, "horizons": [4]} for n in ("return", "direction", "volatility")],
            "model": {"hidden": [8], "dropout": 0.0},
            "training": {"epochs": 1, "batch_size": 128, "seed": 0},
            "walk_forward": {"train_bars": 400, "test_bars": 200, "max_folds": 2},
            "report": {"plots": False},
        }
    )
    out = tmp_path / "run"
    run(cfg, out, report=False, buy_and_hold=False)
    assert bl.main([str(out)]) == 0
    text = capsys.readouterr().out
    table = pd.read_csv(out / "baselines" / "task_metrics.csv")
    assert list(table.columns) == ["task", "metric", "fold", "mtl", "linear", "lightgbm"]
    run_metrics = pd.read_csv(out / "fold_metrics.csv")
    joined = table.merge(run_metrics, on=["task", "metric", "fold"])
    assert len(joined) == len(run_metrics)
    np.testing.assert_allclose(joined["mtl"], joined["value"])
    assert table[["linear", "lightgbm"]].notna().all().all()
    for model in bl.MODELS:
        assert (out / "baselines" / model / "metrics.json").exists()
    assert "return@4 rank_ic" in text and "traded by the run's rule" in text
    # a baseline is traded on its whole-frame predictions (precomputed mode): the same
    # orders as one scikit-learn call per bar (live mode)
    from mtl_bt.backtesting.runner import load_predictors, run_backtest
    from mtl_bt.data import load_frames

    frames = load_frames(cfg.data)
    fitted = bl.fit_baselines(cfg, frames, ["linear"])
    by_fold = {fb.fold: fb for fb in fitted.folds}
    wrapped = [
        bl.BaselinePredictor(p, by_fold[int(p.fold["fold"])], "linear")
        for p in load_predictors([str(out / "checkpoints")])
    ]
    sign = cfg.backtest.model_copy(update={"signal": "sign", "signal_options": {}})
    live = run_backtest(frames, wrapped, sign.model_copy(update={"mode": "live"}))
    pre = run_backtest(frames, wrapped, bl.traded_precomputed(sign))
    assert pre.strategy.p.mode == "precomputed" and len(live.orders) > 0
    pd.testing.assert_frame_equal(live.orders, pre.orders)
    assert live.metrics["sharpe"] == pre.metrics["sharpe"]
    # another rule trades the run and the baselines alike; an unknown rule fails first
    assert bl.main([str(out), "--models", "linear", "--signal", "sign"]) == 0
    text = capsys.readouterr().out
    traded = text.split("traded by the rule (sign) and costs:\n")[1].splitlines()
    assert [line.split()[0] for line in traded[1:3]] == ["mtl", "linear"]
    assert (out / "baselines" / "linear_sign" / "metrics.json").exists()
    assert bl.main([str(out), "--signal", "no_such_rule"]) == 2
    assert "no_such_rule" in capsys.readouterr().err
    # the run report shows them: a portfolio column each and the headline table by fold
    from mtl_bt.report.document import fmt
    from mtl_bt.report.run_report import write_run_report

    write_run_report(out, plots_on=False, html=False)
    report = (out / "report.md").read_text()
    assert "### Strong simple baselines" in report
    header = next(ln for ln in report.splitlines() if ln.startswith("| metric |"))
    assert "| linear | lightgbm |" in header
    lgbm = json.loads((out / "baselines" / "lightgbm" / "metrics.json").read_text())
    assert fmt(lgbm["portfolio"]["turnover"]) in report
    now = pd.read_csv(out / "baselines" / "task_metrics.csv")  # the last call: linear only
    vol = now[(now["task"] == "volatility@4") & (now["metric"] == "qlike")]
    assert fmt(vol["linear"].iloc[0]) in report and fmt(vol["mtl"].iloc[1]) in report
    lost = vol["linear"].mean() < vol["mtl"].mean()
    assert ("volatility@4 qlike (vs linear)" in report) == lost
