"""Report plots, drawn with matplotlib's object API (no pyplot, no GUI backend, thread-safe).

Each function takes plain data (return Series, DataFrames read from artefact files), writes one
PNG atomically and returns its path, or returns None when there is nothing to draw (e.g. no
volatility task) so reports simply leave the picture out.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtl_bt.report.io import write_bytes

_DPI = 100


def _save(fig: Figure, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return write_bytes(path, buf.getvalue())


def equity(returns: pd.Series) -> pd.Series:
    """Growth of 1 from simple per-bar returns."""
    return (1.0 + returns.fillna(0.0)).cumprod()


def drawdown(returns: pd.Series) -> pd.Series:
    """Drawdown from the running peak, as a non-positive fraction."""
    curve = equity(returns)
    return curve / curve.cummax() - 1.0


def rolling_sharpe(returns: pd.Series, window: int, periods_per_year: float) -> pd.Series:
    """Annualised Sharpe over a trailing window of ``window`` bars (NaN where flat)."""
    mean = returns.rolling(window).mean()
    sd = returns.rolling(window).std(ddof=1)
    sd = sd.where(sd > 1e-15)
    return mean / sd * math.sqrt(periods_per_year)


def plot_equity(
    curves: dict[str, pd.Series], path: str | Path, title: str = "Equity"
) -> Path | None:
    """Equity curves (growth of 1) of the strategy and its baselines on one axis."""
    curves = {k: v for k, v in curves.items() if v is not None and len(v)}
    if not curves:
        return None
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    values = []
    for name, rets in curves.items():
        curve = equity(rets).to_numpy()
        values.append(curve)
        ax.plot(rets.index, curve, label=name, lw=1.2)
    ax.axhline(1.0, color="#999", lw=0.6)
    ax.set_title(title)
    ax.set_ylabel("growth of 1")
    if _log_scale(np.concatenate(values)):  # years of compounding: equal % moves look equal
        ax.set_yscale("log")
        ax.set_ylabel("growth of 1 (log scale)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _save(fig, path)


#: an equity plot spanning more than this ratio (highest / lowest value) gets a log axis
LOG_RATIO = 4.0


def _log_scale(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values) & (values > 0)]
    return bool(finite.size) and finite.max() / finite.min() > LOG_RATIO


def plot_drawdown(curves: dict[str, pd.Series], path: str | Path) -> Path | None:
    curves = {k: v for k, v in curves.items() if v is not None and len(v)}
    if not curves:
        return None
    fig = Figure(figsize=(10, 3.5))
    ax = fig.subplots()
    for name, rets in curves.items():
        ax.plot(rets.index, 100 * drawdown(rets).to_numpy(), label=name, lw=1.0)
    ax.set_title(
        "Drawdown (% below the running peak; the tables' max drawdown is its lowest point)"
    )
    ax.set_ylabel("%")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _save(fig, path)


def plot_rolling_sharpe(
    curves: dict[str, pd.Series],
    path: str | Path,
    periods_per_year: float,
    window: int | None = None,
) -> Path | None:
    curves = {k: v for k, v in curves.items() if v is not None and len(v) > 10}
    if not curves:
        return None
    n = min(len(v) for v in curves.values())
    window = window or max(10, min(int(periods_per_year / 12) or 10, n // 4))
    fig = Figure(figsize=(10, 3.5))
    ax = fig.subplots()
    for name, rets in curves.items():
        ax.plot(
            rets.index, rolling_sharpe(rets, window, periods_per_year).to_numpy(), label=name, lw=1
        )
    ax.axhline(0.0, color="#999", lw=0.6)
    ax.set_title(f"Rolling Sharpe (annualised, {window}-bar window)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _save(fig, path)


def plot_fold_metrics(metrics: pd.DataFrame, path: str | Path) -> Path | None:
    """Per-task out-of-sample metrics by fold; ``metrics`` is long: fold, task, metric, value.

    One small panel per (task, metric): metrics mean different things on different scales
    (an IC near 0, a QLIKE near 1, a calibration ratio), so they never share an axis, and
    each panel's title names its metric (no legend over the lines). Folds are integers."""
    from matplotlib.ticker import MaxNLocator

    if metrics is None or metrics.empty:
        return None
    tasks = list(dict.fromkeys(metrics["task"]))
    per_task = {t: list(dict.fromkeys(metrics.loc[metrics["task"] == t, "metric"])) for t in tasks}
    cols = max(len(m) for m in per_task.values())
    rows = len(tasks)
    fig = Figure(figsize=(2.8 * cols + 0.6, 2.2 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, task in enumerate(tasks):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(per_task[task]):
                ax.set_visible(False)
                continue
            metric = per_task[task][c]
            grp = metrics[(metrics["task"] == task) & (metrics["metric"] == metric)]
            grp = grp.sort_values("fold")
            ax.plot(grp["fold"], grp["value"], marker="o", ms=3, lw=1)
            low, high = np.nanmin(grp["value"]), np.nanmax(grp["value"])
            if low < 0 < high:
                ax.axhline(0.0, color="#999", lw=0.6)
            ax.set_title(f"{task}: {metric}", fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.set_xlabel("fold", fontsize=7)
    fig.suptitle("Out-of-sample task metrics by fold")
    fig.tight_layout()
    return _save(fig, path)


def plot_task_weights(train_log: pd.DataFrame, path: str | Path) -> Path | None:
    """Task weights over epochs (``weight_<task>`` columns), folds laid end to end."""
    if train_log is None or train_log.empty:
        return None
    cols = [c for c in train_log.columns if c.startswith("weight_")]
    if not cols:
        return None
    log = train_log.sort_values(["fold", "epoch"]).reset_index(drop=True)
    x = np.arange(len(log))
    fig = Figure(figsize=(10, 3.8))
    ax = fig.subplots()
    for col in cols:
        ax.plot(x, log[col].to_numpy(dtype=float), label=col.removeprefix("weight_"), lw=1.2)
    starts = log.index[log["fold"].ne(log["fold"].shift())].tolist()
    for s in starts[1:]:
        ax.axvline(s - 0.5, color="#bbb", lw=0.8, ls="--")
    ax.set_xlabel("epoch (folds laid end to end; dashed = new fold)")
    ax.set_ylabel("weight")
    ax.set_title("Task weights over epochs")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_volatility(predictions: pd.DataFrame, task: str, path: str | Path) -> Path | None:
    """Predicted vs realised per-bar volatility for one volatility task (scatter + time series)."""
    target = f"target_{task}"
    if predictions is None or task not in predictions or target not in predictions:
        return None
    data = predictions[["datetime", "symbol", task, target]].dropna()
    data = data[(data[task] > 0) & (data[target] > 0)]
    if data.empty:
        return None
    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    sample = data.sample(n=min(len(data), 5000), random_state=0)
    ax1.scatter(sample[task], sample[target], s=3, alpha=0.3)
    lo = float(min(sample[task].min(), sample[target].min()))
    hi = float(max(sample[task].max(), sample[target].max()))
    ax1.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("predicted")
    ax1.set_ylabel("realised")
    corr = np.corrcoef(np.log(data[task]), np.log(data[target]))[0, 1]
    ax1.set_title(f"{task}: log corr {corr:.2f}", fontsize=10)
    symbol = data["symbol"].iloc[0]
    one = data[data["symbol"] == symbol].set_index("datetime").sort_index()
    span = max(1, len(one) // 100)
    ax2.plot(one.index, one[target].rolling(span).mean(), label="realised", lw=1)
    ax2.plot(one.index, one[task].rolling(span).mean(), label="predicted", lw=1)
    ax2.set_title(f"{symbol} ({span}-bar mean)", fontsize=10)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _save(fig, path)


def plot_bars(
    frame: pd.DataFrame, value: str, err: str | None, path: str | Path, title: str
) -> Path | None:
    """Horizontal bars of ``value`` (+- ``err``) per row label (first column), for comparisons."""
    if frame is None or frame.empty or value not in frame:
        return None
    frame = frame[np.isfinite(frame[value].to_numpy(dtype=float))]  # no value: no empty row
    if frame.empty:
        return None
    labels = frame.iloc[:, 0].astype(str).tolist()
    vals = frame[value].to_numpy(dtype=float)
    errs = frame[err].to_numpy(dtype=float) if err and err in frame else None
    fig = Figure(figsize=(8, 0.45 * len(labels) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(labels))
    ax.barh(y, np.nan_to_num(vals), xerr=None if errs is None else np.nan_to_num(errs), alpha=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.6)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def plot_intervals(frame: pd.DataFrame, path: str | Path, title: str) -> Path | None:
    """Point estimates with CIs (columns: label, diff, low, high)."""
    if frame is None or frame.empty:
        return None
    labels = frame.iloc[:, 0].astype(str).tolist()
    diff = frame["diff"].to_numpy(dtype=float)
    low = frame["low"].to_numpy(dtype=float)
    high = frame["high"].to_numpy(dtype=float)
    fig = Figure(figsize=(8, 0.45 * len(labels) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(labels))
    err = np.vstack([np.nan_to_num(diff - low), np.nan_to_num(high - diff)])
    ax.errorbar(diff, y, xerr=np.abs(err), fmt="o", capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.6)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)
