"""Out-of-sample task metrics from ``predictions.parquet`` (one definition for reports and tables).

Columns expected: ``datetime, symbol, fold, <task>..., target_<task>...`` with task names
``kind@h``; predictions are the transformed outputs (see COMMON semantics). Metrics per kind:

- return, volume: ``ic`` (Pearson correlation of prediction and target), ``rank_ic`` (Spearman).
- direction: ``auc`` (probability a random up-bar scores above a random down-bar), ``accuracy``.
- volatility: ``qlike`` = mean(s2/h - log(s2/h) - 1) with s2 the realised and h the predicted
  per-bar variance (Patton 2011; 0 is perfect, lower is better, robust to noisy proxies),
  ``log_corr`` (correlation of log predicted and log realised volatility) and
  ``calibration`` = RMS(realised) / RMS(predicted) (1 is calibrated; a level check only), and
  the Mincer-Zarnowitz regression realised = a + b predicted (``mz_intercept``, ``mz_slope``,
  1 is calibrated in shape too) with Newey-West HAC standard errors (``mz_*_se``; lag = h bars
  times the symbols per bar, rows in time order). When the predictions hold
  ``ewma_<task>`` / ``har_<task>`` columns (``mtl_bt.metrics.volatility.add_baselines``), the
  same two metrics of those baselines on the same rows: ``qlike_ewma``, ``calibration_ewma``,
  ``qlike_har``, ``calibration_har``.
- any other kind (a plugin task): its own ``Task.metrics(prediction, target)``, when the task
  class is registered (``plugin_metrics``).

Correlations are pooled over all symbols and bars of the slice (time-series + cross-section).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

#: which metric summarises each task kind in comparison tables (higher is better unless noted)
HEADLINE: dict[str, str] = {
    "return": "ic",
    "direction": "auc",
    "volatility": "qlike",
    "volume": "ic",
}


#: prediction columns scored as a volatility level (``volatility_anchored@h``: a
#: ``volatility_ratio@h`` forecast times its anchor, ``mtl_bt.metrics.volatility.add_anchored``)
VOLATILITY_KINDS = ("volatility", "volatility_anchored")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks of ties (what Spearman's correlation uses)."""
    return pd.Series(x).rank(method="average").to_numpy()


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.std(x) < 1e-15 or np.std(y) < 1e-15:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    pos, neg = int(label.sum()), int((~label).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = _ranks(score)
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _direction_labels(target: np.ndarray) -> np.ndarray:
    values = np.unique(target)
    if np.all(np.isin(values, (0.0, 1.0))):
        return target > 0.5
    return target > 0


def task_metrics(
    kind: str, pred: np.ndarray, target: np.ndarray, task: Any = None, hac_lag: int | None = None
) -> dict[str, float]:
    """Metrics of one task kind on aligned, finite prediction/target arrays; ``task`` (the
    configured Task instance) scores a plugin kind with its own options; ``hac_lag`` (rows,
    in time order) adds the volatility kind's Mincer-Zarnowitz regression."""
    pred = np.asarray(pred, dtype=float)
    target = np.asarray(target, dtype=float)
    ok = np.isfinite(pred) & np.isfinite(target)
    pred, target = pred[ok], target[ok]
    out: dict[str, float] = {"n": float(pred.size)}
    if kind in ("return", "volume"):
        out["ic"] = _corr(pred, target)
        out["rank_ic"] = _corr(_ranks(pred), _ranks(target)) if pred.size else np.nan
    elif kind == "direction":
        label = _direction_labels(target)
        out["auc"] = _auc(pred, label)
        out["accuracy"] = float(((pred > 0.5) == label).mean()) if pred.size else float("nan")
    elif kind in VOLATILITY_KINDS:
        pos = (pred > 0) & (target > 0)
        p, t = pred[pos], target[pos]
        if p.size:
            ratio = t**2 / p**2
            out["qlike"] = float(np.mean(ratio - np.log(ratio) - 1.0))
            out["log_corr"] = _corr(np.log(p), np.log(t))
            out["calibration"] = float(np.sqrt(np.mean(t**2) / np.mean(p**2)))
        else:
            out["qlike"] = out["log_corr"] = out["calibration"] = float("nan")
        if hac_lag is not None:
            from mtl_bt.metrics.volatility import mincer_zarnowitz

            out.update(mincer_zarnowitz(p, t, hac_lag))
    else:
        out.update(plugin_metrics(kind, pred, target, task))
    return out


def plugin_metrics(
    kind: str, pred: np.ndarray, target: np.ndarray, task: Any = None
) -> dict[str, float]:
    """A plugin task's own ``metrics()`` (``task``, else the kind with default options), or {}
    when it is not registered or fails on these rows (an evaluation table is always filled)."""
    from mtl_bt import registry

    try:
        if task is None:
            task = registry.get("task", kind)()
        values = task.metrics(pred, target)
    except Exception:  # noqa: BLE001 - a third-party metric must not break the report
        return {}
    out = {}
    for name, value in dict(values).items():
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _baseline_metrics(frame: pd.DataFrame, task: str) -> dict[str, float]:
    """qlike and calibration of the EWMA / HAR-RV columns of a volatility task, same rows."""
    out: dict[str, float] = {}
    for tag in ("ewma", "har"):
        col = f"{tag}_{task}"
        if col not in frame:
            continue
        both = frame[[task, col, f"target_{task}"]].to_numpy(dtype=float)
        keep = np.isfinite(both).all(axis=1)  # the model's rows, so all compare on one set
        values = task_metrics("volatility", both[keep, 1], both[keep, 2])
        out[f"qlike_{tag}"] = values.get("qlike", float("nan"))
        out[f"calibration_{tag}"] = values.get("calibration", float("nan"))
    return out


def task_columns(predictions: pd.DataFrame) -> list[str]:
    """Task names that have both a prediction and a ``target_`` column."""
    return [
        c
        for c in predictions.columns
        if "@" in str(c) and not str(c).startswith("target_") and f"target_{c}" in predictions
    ]


def oos_metrics(
    predictions: pd.DataFrame, by_fold: bool = True, tasks: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Long table ``fold, task, metric, value`` (fold = "all" rows pool every fold).

    ``tasks``: the configured Task instances by name (plugin kinds are scored with them)."""
    rows: list[dict[str, object]] = []
    if predictions is None or predictions.empty:
        return pd.DataFrame(columns=["fold", "task", "metric", "value"])
    groups: list[tuple[object, pd.DataFrame]] = [("all", predictions)]
    if by_fold and "fold" in predictions:
        groups += list(predictions.groupby("fold", sort=True))
    for fold, frame in groups:
        if "datetime" in frame:  # time order (the HAC lags run over rows)
            frame = frame.sort_values("datetime", kind="stable")
        per_bar = max(1, frame["symbol"].nunique()) if "symbol" in frame else 1
        for task in task_columns(predictions):
            kind = task.split("@", 1)[0]
            h = task.split("@", 1)[1]
            values = task_metrics(
                kind,
                frame[task].to_numpy(),
                frame[f"target_{task}"].to_numpy(),
                (tasks or {}).get(task),
                hac_lag=(int(h) if h.isdigit() else 1) * per_bar,
            )
            if kind in VOLATILITY_KINDS:
                values.update(_baseline_metrics(frame, task))
            for metric, value in values.items():
                rows.append({"fold": fold, "task": task, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=["fold", "task", "metric", "value"])


def _plugin_headline(kind: str) -> list[str]:
    from mtl_bt import registry

    try:
        metric = getattr(registry.get("task", kind), "headline_metric", None)
    except Exception:  # noqa: BLE001 - not registered here: show every metric
        return []
    return [metric] if metric else []


def headline(metrics: pd.DataFrame) -> dict[str, float]:
    """``{"<task> <metric>": value}`` for the pooled (fold == "all") metrics of every task."""
    out: dict[str, float] = {}
    if metrics is None or metrics.empty:
        return out
    pooled = metrics[metrics["fold"].astype(str) == "all"]
    for task, sub in pooled.groupby("task", sort=False):
        kind = str(task).split("@", 1)[0]
        names = {
            "return": ["ic", "rank_ic"],
            "volume": ["ic", "rank_ic"],
            "volatility": ["qlike", "calibration", "qlike_ewma", "qlike_har"],
        }.get(kind, [HEADLINE.get(kind, "")])
        if kind not in HEADLINE:  # a plugin task: its declared metric, else all of them
            names = _plugin_headline(kind) or [m for m in sub["metric"] if m != "n"]
        for metric in names:
            hit = sub[sub["metric"] == metric]
            if not hit.empty:
                out[f"{task} {metric}"] = float(hit["value"].iloc[0])
    return out
