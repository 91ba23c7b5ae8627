"""Strong simple baselines per task: a linear model and LightGBM on the run's own folds.

A neural MTL model that does not beat a ridge regression or a gradient-boosted tree on
the same inputs should be told so (Qlib publishes Linear and LightGBM beside every deep
model). For each walk-forward fold of a finished ``mtl-bt run`` and each task, one model
per baseline is fitted on that fold's train-proper rows (the same dataset, features,
scaler, folds and purge as the run: ``prepare_fold``), tuned on its validation rows, and
scored on its test rows with the run's own metric function (``fold_metric_rows``):

==============  ==========================================  ===================================
task kind       linear                                      LightGBM
==============  ==========================================  ===================================
return, volume  ridge (alpha by validation MSE)             L2 regression, early stopping
direction       logistic (C by validation log loss)         binary, predicts P(up)
volatility      ridge on log variance, then the intercept   gamma objective on variance (its
                shift minimising QLIKE on the train rows    deviance is QLIKE); alpha by QLIKE
==============  ==========================================  ===================================

Inputs are the current bar's feature row (a sequence model's lookback is not given to the
baselines). LightGBM grows every tree on all rows and all features (no bagging): its fit is
a deterministic function of the rows, like the ridge's, so a seed cannot change it and it is
fitted once, not once per training seed (``compare`` runs both baselines at the first seed
only; copies would add time and count as extra trials in the DSR). Task kinds
other than these have no baseline and are listed as skipped. The baselines' heads are also
traded by the run's signal rule and costs (``BaselinePredictor``): every built-in head
(return, direction, volatility) is supplied, so the rule reads the same heads it reads from
the MTL model. ``mtl-bt compare`` runs them as variants ``linear`` and ``lightgbm`` (job
``mtl_bt.compare.jobs:backtest_baseline``); on a finished run folder::

    python -m mtl_bt.compare.baselines RUN_DIR [--models linear,lightgbm] [--no-backtest]
        [--signal NAME]

It needs scikit-learn and LightGBM: ``pip install 'mtl-bt[baselines]'``.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import UserError

INSTALL = "pip install 'mtl-bt[baselines]'"
MISSING = f"baselines need scikit-learn and LightGBM: {INSTALL}"
MODELS = ("linear", "lightgbm")
#: task kind -> what is fitted (other kinds get no baseline)
FAMILY = {
    "return": "regression",
    "volume": "regression",
    "direction": "classification",
    "volatility": "variance",
}
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
LOGISTIC_CS = (0.001, 0.01, 0.1, 1.0)
#: no row or column subsampling: the fit is deterministic (``seedless``). Learning rate 0.1
#: with early stopping after 20 rounds: on the crypto demo's folds the same out-of-sample
#: metrics as 0.05 / 50 rounds with bagging (volatility QLIKE 0.3057 vs 0.3065, volume rank
#: IC 0.474 vs 0.479, return rank IC 0.004 vs 0.011, both indistinguishable from 0) in 2.8 s
#: instead of 6.9 s per seed (``fit_baselines``, idle machine)
LGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 1000,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 50,
    "subsample": 1.0,
    "subsample_freq": 0,
    "colsample_bytree": 1.0,
    "reg_lambda": 1.0,
    "n_jobs": 1,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
}
EARLY_STOP = 20

Head = Callable[[np.ndarray], np.ndarray]  # scaled feature rows -> transformed prediction


def require() -> tuple[Any, Any]:
    """scikit-learn's ``linear_model`` and ``lightgbm``, or one line saying how to get them."""
    try:
        import lightgbm
        from sklearn import linear_model
    except ImportError:
        raise UserError(MISSING) from None
    return linear_model, lightgbm


def installed() -> bool:
    """True when scikit-learn and LightGBM are installed, found without importing them:
    ``compare``'s driver only decides whether to plan the baselines, and importing both costs
    it about 2 s (the jobs that fit them import them)."""
    import importlib.util

    for name in ("sklearn", "lightgbm"):
        if name in sys.modules:
            if sys.modules[name] is None:  # an import of it failed or was blocked
                return False
        elif importlib.util.find_spec(name) is None:
            return False
    return True


def check_installed() -> None:
    """``installed()``, or one line saying how to get them."""
    if not installed():
        raise UserError(MISSING)


# -- fitting ------------------------------------------------------------------------------


def _floor(task: Any) -> float:
    return float(task.spec.options.get("floor", 1e-4))


def _val_loss(family: str, pred: np.ndarray, y: np.ndarray) -> float:
    from mtl_bt.metrics import prediction as pm

    if family == "classification":
        return pm.log_loss(pred, y)
    if family == "variance":
        return pm.qlike(pred**2, y**2)
    return pm.rmse(pred, y)


def _linear(family: str, task: Any, x: np.ndarray, y: np.ndarray) -> Callable[[float], Head]:
    """A factory: penalty -> fitted head (the caller picks the penalty on validation rows)."""
    linear_model, _ = require()
    if family == "classification":
        up = (y > 0.5).astype(int)

        def fit_c(c: float) -> Head:
            if up.min() == up.max():  # one class in the train slice: its rate is the forecast
                rate = float(up.mean())
                return lambda z: np.full(len(z), rate)
            model = linear_model.LogisticRegression(C=c, max_iter=1000).fit(x, up)
            return lambda z: model.predict_proba(z)[:, 1]

        return fit_c
    if family == "variance":
        floor = _floor(task)
        var = np.maximum(y, floor) ** 2
        logv = np.log(var)

        def fit_var(alpha: float) -> Head:
            model = linear_model.Ridge(alpha=alpha).fit(x, logv)
            # the constant that minimises QLIKE on the train rows: a calibrated level
            shift = float(np.log(np.mean(var / np.exp(model.predict(x)))))
            return lambda z: np.exp(0.5 * (model.predict(z) + shift))

        return fit_var

    def fit_ridge(alpha: float) -> Head:
        model = linear_model.Ridge(alpha=alpha).fit(x, y)
        return model.predict

    return fit_ridge


def fit_linear(family: str, task: Any, x, y, xv, yv) -> Head:
    """Ridge / logistic with the penalty that scores best on the validation rows."""
    factory = _linear(family, task, x, y)
    grid = LOGISTIC_CS if family == "classification" else RIDGE_ALPHAS
    if len(yv) == 0:
        return factory(grid[len(grid) // 2])
    best, best_loss = None, math.inf
    for penalty in grid:
        head = factory(penalty)
        loss = _val_loss(family, head(xv), yv)
        if best is None or (math.isfinite(loss) and loss < best_loss):
            best, best_loss = head, loss
    assert best is not None
    return best


def fit_lightgbm(family: str, task: Any, x, y, xv, yv, seed: int = 0) -> Head:
    """Gradient-boosted trees, early-stopped on the validation rows (``seed`` is LightGBM's
    ``random_state``; with ``LGBM_PARAMS``' no-bagging settings it changes nothing)."""
    _, lgb = require()
    params = {**LGBM_PARAMS, "random_state": int(seed)}
    stop = [lgb.early_stopping(EARLY_STOP, verbose=False)] if len(yv) else None

    def fit(model: Any, y_: np.ndarray, yv_: np.ndarray) -> None:
        if not len(yv_):
            model.fit(x, y_)
        elif "eval_X" in inspect.signature(model.fit).parameters:  # lightgbm >= 4.7
            model.fit(x, y_, eval_X=(xv,), eval_y=(yv_,), callbacks=stop)
        else:
            model.fit(x, y_, eval_set=[(xv, yv_)], callbacks=stop)

    if family == "classification":
        up, upv = (y > 0.5).astype(int), (yv > 0.5).astype(int)
        if up.min() == up.max():
            rate = float(up.mean())
            return lambda z: np.full(len(z), rate)
        model = lgb.LGBMClassifier(**params)
        fit(model, up, upv)
        return lambda z: model.predict_proba(z)[:, 1]
    if family == "variance":
        floor = _floor(task)
        var, varv = np.maximum(y, floor) ** 2, np.maximum(yv, floor) ** 2
        unit = float(var.mean())  # variance in units of its train mean (scale-free trees)
        model = lgb.LGBMRegressor(objective="gamma", **params)
        fit(model, var / unit, varv / unit)
        return lambda z: np.sqrt(np.maximum(model.predict(z), 0.0) * unit)
    model = lgb.LGBMRegressor(objective="regression", **params)
    fit(model, y, yv)
    return model.predict


@dataclass
class FoldBaselines:
    """One fold's fitted baselines: ``heads[model][task]`` maps scaled rows to predictions."""

    fold: int
    scaler: Any
    heads: dict[str, dict[str, Head]] = field(default_factory=dict)


@dataclass
class Baselines:
    """Out-of-sample predictions and metrics of the baselines over every fold."""

    predictions: pd.DataFrame  # model, datetime, symbol, fold, <task>..., target_<task>...
    metrics: pd.DataFrame  # model, fold, task, metric, value, n (rows of fold_metrics.csv)
    folds: list[FoldBaselines]
    skipped: list[str]  # tasks with no baseline (unknown kind)


def fit_baselines(
    config: Any,
    frames: Mapping[str, pd.DataFrame],
    models: Sequence[str] = MODELS,
    *,
    targets: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> Baselines:
    """Fit every baseline on every fold of ``config`` over ``frames`` and predict its test rows.

    ``targets`` replaces the dataset's targets when fitting (a test's perturbation); the
    reported ``target_<task>`` columns and metrics use the real ones.
    """
    from mtl_bt.training.dataset import cached_dataset
    from mtl_bt.training.pipeline import (
        build_components,
        fold_metric_rows,
        prepare_fold,
        splits_for,
    )

    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserError(f"unknown baseline model(s) {unknown}; choose from {', '.join(MODELS)}")
    require()
    say = log or (lambda _msg: None)
    comp = build_components(config)
    ds = cached_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)
    y_fit = ds.targets if targets is None else targets
    tasks = [t for t in comp.tasks if t.kind in FAMILY]
    skipped = [t.name for t in comp.tasks if t.kind not in FAMILY]
    col = {name: j for j, name in enumerate(ds.task_names)}
    preds, metrics, fitted = [], [], []
    for split in splits_for(config, ds):
        fd = prepare_fold(ds, split, config.features.scaler)
        xs = fd.scaled.numpy()
        x, xv, xt = xs[fd.fit_rows], xs[fd.val_rows], xs[fd.test_rows]
        fb = FoldBaselines(split.fold, fd.scaler)
        rows = fd.test_rows
        base = pd.DataFrame(
            {
                "datetime": pd.DatetimeIndex(ds.times[rows], tz="UTC"),
                "symbol": np.asarray(ds.symbols, dtype=object)[ds.asset[rows]],
                "fold": split.fold,
            }
        )
        for model in models:
            frame = base.copy()
            fb.heads[model] = {}
            for task in tasks:
                j, family = col[task.name], FAMILY[task.kind]
                y, yv = y_fit[fd.fit_rows, j].astype(np.float64), y_fit[fd.val_rows, j]
                yv = yv.astype(np.float64)
                if model == "linear":
                    head = fit_linear(family, task, x, y, xv, yv)
                else:
                    seed = config.training.seed + split.fold
                    head = fit_lightgbm(family, task, x, y, xv, yv, seed)
                fb.heads[model][task.name] = head
                frame[task.name] = np.asarray(head(xt), dtype=np.float64)
            for task in tasks:
                frame[f"target_{task.name}"] = ds.targets[rows, col[task.name]].astype(np.float64)
            metrics.extend(
                {"model": model, **r} for r in fold_metric_rows(split.fold, tasks, frame)
            )
            preds.append(frame.assign(model=model))
        fitted.append(fb)
        say(f"fold {split.fold}: baselines fitted on {len(fd.fit_rows)} train rows")
    predictions = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame()
    if len(predictions):
        predictions = predictions[["model", *[c for c in predictions if c != "model"]]]
    table = pd.DataFrame(metrics, columns=["model", "fold", "task", "metric", "value", "n"])
    return Baselines(predictions, table, fitted, skipped)


# -- trading the baselines ----------------------------------------------------------------


class BaselinePredictor:
    """A run's fold predictor whose heads are a baseline's: the strategy, rule and costs see
    the same interface (features, symbols, fold dates) and read these predictions."""

    def __init__(self, inner: Any, fold: FoldBaselines, model: str) -> None:
        self._inner = inner
        self._scaler = fold.scaler
        self._heads = fold.heads[model]
        self.task_names = [t for t in inner.task_names if t in self._heads]
        self.tasks = [t for t in inner.tasks if t.name in self._heads]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _uses_asset(self) -> bool:
        return False

    def predict(self, x: np.ndarray, asset_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        from mtl_bt.predictor import scale_array

        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:  # a sequence window: the baselines read its last (current) row
            x = x[:, -1, :]
        z = scale_array(self._scaler, x)
        return {t: np.asarray(self._heads[t](z), dtype=np.float64) for t in self.task_names}


def traded_precomputed(config: Any) -> Any:
    """``config`` (a ``Config`` or a ``BacktestConfig``) with the backtest in precomputed
    mode: a baseline is traded on its whole-frame predictions, the ones its metrics score.
    Its heads are row-wise functions of the current feature row, so live mode could only
    repeat them one bar at a time, through a scikit-learn / LightGBM call per decision
    (about 1.7 ms each: 10 of a linear baseline job's 11 s on the crypto demo)."""
    bt_cfg = getattr(config, "backtest", config)
    if bt_cfg.mode == "precomputed":
        return config
    bt_cfg = bt_cfg.model_copy(update={"mode": "precomputed"})
    if hasattr(config, "backtest"):
        return config.model_copy(update={"backtest": bt_cfg})
    return bt_cfg


def backtest(
    frames: Mapping[str, pd.DataFrame], predictors: Sequence[Any], result: Baselines, cfg: Any
) -> dict[str, Any]:
    """Each baseline traded by the run's rule and costs (``traded_precomputed``):
    ``{model: BacktestResult}``."""
    from mtl_bt.backtesting.runner import run_backtest

    cfg = traded_precomputed(cfg)
    by_fold = {fb.fold: fb for fb in result.folds}
    out = {}
    models = list(result.folds[0].heads) if result.folds else []
    for model in models:
        wrapped = [
            BaselinePredictor(p, by_fold[int(p.fold["fold"])], model)
            for p in predictors
            if int(p.fold["fold"]) in by_fold
        ]
        out[model] = run_backtest(frames, wrapped, cfg)
    return out


# -- the comparison table -----------------------------------------------------------------


def comparison(run_metrics: pd.DataFrame, baseline_metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, metric, fold): the run's value (``mtl``) beside each baseline's."""
    mtl = run_metrics.assign(model="mtl")
    both = pd.concat([mtl, baseline_metrics], ignore_index=True)
    wide = both.pivot_table(
        index=["task", "metric", "fold"], columns="model", values="value", aggfunc="first"
    )
    order = ["mtl", *[m for m in MODELS if m in wide.columns]]
    wide = wide[[c for c in order if c in wide.columns]]
    wide.columns.name = None
    return wide.reset_index()


def headline(table: pd.DataFrame, tasks: Mapping[str, Any]) -> str:
    """Each task's headline metric per fold, MTL beside the baselines (text)."""
    lines = []
    for name, task in tasks.items():
        sub = table[(table["task"] == name) & (table["metric"] == task.headline_metric)]
        if sub.empty:
            continue
        better = "higher" if getattr(task, "higher_is_better", True) else "lower"
        lines.append(f"{name} {task.headline_metric} ({better} is better)")
        lines.append(
            sub.drop(columns=["task", "metric"]).to_string(index=False, float_format="%.4f")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtl_bt.compare.baselines")
    parser.add_argument("run_dir")
    parser.add_argument("--models", default=",".join(MODELS), help="linear,lightgbm")
    parser.add_argument("--no-backtest", action="store_true", help="metrics only")
    parser.add_argument(
        "--signal",
        default=None,
        help="trade the run and the baselines by this rule (its default options) instead of "
        "the run's, e.g. sign",
    )
    args = parser.parse_args(argv)
    try:
        return _main(Path(args.run_dir), args.models.split(","), not args.no_backtest, args.signal)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _main(run: Path, models: list[str], trade: bool, signal: str | None = None) -> int:
    from mtl_bt.config import load
    from mtl_bt.data import load_frames
    from mtl_bt.report.io import write_csv, write_parquet
    from mtl_bt.tasks import build_tasks

    require()
    needed = ["config.toml", "fold_metrics.csv"] + (["checkpoints"] if trade else [])
    missing = [n for n in needed if not (run / n).exists()]
    if missing:
        raise UserError(f"{run}: not an mtl-bt run folder (missing {', '.join(missing)})")
    cfg = load(run / "config.toml")
    bt_cfg = cfg.backtest
    if signal is not None and signal != bt_cfg.signal:
        from mtl_bt import registry

        registry.get("signal", signal)  # an unknown rule fails before any work
        bt_cfg = bt_cfg.model_copy(update={"signal": signal, "signal_options": {}})
    frames = load_frames(cfg.data)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result = fit_baselines(cfg, frames, models, log=say)
    out = run / "baselines"
    table = comparison(pd.read_csv(run / "fold_metrics.csv"), result.metrics)
    write_csv(out / "task_metrics.csv", table)
    write_parquet(out / "predictions.parquet", result.predictions)
    tasks = {t.name: t for t in build_tasks(cfg.tasks)}
    print(headline(table, tasks))
    if result.skipped:
        print(f"no baseline for task(s) {result.skipped} (kinds without one)")
    if trade:
        import json

        from mtl_bt.backtesting import write_outputs
        from mtl_bt.backtesting.inputs import load_predictors

        predictors = load_predictors([str(run / "checkpoints")])
        rows = []
        if bt_cfg is not cfg.backtest:  # another rule: the run is traded by it too
            from mtl_bt.backtesting.runner import run_backtest

            m = run_backtest(frames, predictors, bt_cfg).metrics
            rows.append({"model": "mtl", **{k: m.get(k) for k in _TRADE_KEYS}})
        elif (run / "metrics.json").exists():
            m = json.loads((run / "metrics.json").read_text()).get("portfolio", {})
            rows.append({"model": "mtl", **{k: m.get(k) for k in _TRADE_KEYS}})
        for model, bt in backtest(frames, predictors, result, bt_cfg).items():
            where = out / (model if bt_cfg is cfg.backtest else f"{model}_{bt_cfg.signal}")
            write_outputs(bt, where)
            rows.append({"model": model, **{k: bt.metrics.get(k) for k in _TRADE_KEYS}})
        whose = "the run's rule" if bt_cfg is cfg.backtest else "the rule"
        print(f"traded by {whose} ({bt_cfg.signal}) and costs:")
        print(pd.DataFrame(rows).to_string(index=False, float_format="%.3f"))
    print(f"wrote {out / 'task_metrics.csv'}")
    return 0


_TRADE_KEYS = ("sharpe", "gross_sharpe", "total_return", "turnover", "cost_drag", "num_trades")


if __name__ == "__main__":
    raise SystemExit(main())
