"""Volatility-forecast baselines on the model's own out-of-sample rows: EWMA and HAR-RV.

Both forecast the per-bar RMS volatility of the next h bars (what the ``volatility@h`` task
predicts) from bars <= t only:

- EWMA (RiskMetrics, lambda = 0.94): sigma2[t+1] = lambda * sigma2[t] + (1 - lambda) * r[t]^2,
  flat over the h bars; seeded with the first 20 bars' mean r^2; no fitting.
- HAR-RV (Corsi 2009): OLS of the h-bar forward mean r^2 on the last bar's r^2, the last 5
  bars' and the last 22 bars' mean r^2, refitted per fold on the rows whose target ends
  before that fold's test window (pooled over symbols), so it never sees test bars.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.features import ops
from mtl_bt.tasks.targets import forward_realised_vol

LAMBDA = 0.94
HAR_WINDOWS = (1, 5, 22)


def log_returns(close: np.ndarray) -> np.ndarray:
    """1-bar log close returns (NaN at bar 0)."""
    return ops.diff(np.log(np.asarray(close, dtype=np.float64)))


def ewma_variance(returns: np.ndarray, lam: float = LAMBDA, seed_bars: int = 20) -> np.ndarray:
    """Forecast at bar t of the next bar's variance (uses r[..t]); NaN before ``seed_bars``."""
    r2 = np.asarray(returns, dtype=np.float64) ** 2
    out = np.full(r2.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(r2))
    if finite.size < seed_bars:
        return out
    start = finite[seed_bars - 1]
    var = float(np.nanmean(r2[finite[0] : start + 1]))
    out[start] = var
    for t in range(start + 1, r2.size):
        x = r2[t]
        if np.isfinite(x):
            var = lam * var + (1.0 - lam) * x
        out[t] = var
    return out


def har_features(returns: np.ndarray) -> np.ndarray:
    """(n, 3) trailing mean r^2 over 1, 5 and 22 bars, ending at t (NaN in the warm-up)."""
    r2 = np.asarray(returns, dtype=np.float64) ** 2
    return np.column_stack([ops.rolling_mean(r2, w) for w in HAR_WINDOWS])


def _fit_ols(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    if ok.sum() < 10:
        return None
    design = np.column_stack([np.ones(ok.sum()), x[ok]])
    coef, *_ = np.linalg.lstsq(design, y[ok], rcond=None)
    return coef


def add_baselines(
    predictions: pd.DataFrame,
    frames: Mapping[str, pd.DataFrame],
    folds: list[dict[str, Any]],
    floor: float = 1e-4,
) -> pd.DataFrame:
    """``predictions`` with ``ewma_<task>`` and ``har_<task>`` columns for every
    ``volatility@h`` task (per-bar RMS vol forecasts on the same rows)."""
    tasks = [c for c in predictions.columns if str(c).startswith("volatility@")]
    if predictions.empty or not tasks:
        return predictions
    out = predictions.copy()
    starts = {f.get("fold"): pd.Timestamp(f["test_start"]) for f in folds if f.get("test_start")}
    times = pd.to_datetime(out["datetime"], utc=True)
    # each fold's rows of each symbol, in row order, found once: comparing the whole symbol
    # column with every symbol in every fold grew with assets squared (500 assets: minutes)
    codes, names = pd.factorize(out["symbol"])
    rows: dict[Any, dict[Any, np.ndarray]] = {}
    for fold, positions in out.groupby("fold", sort=True).indices.items():
        by_code = np.argsort(codes[positions], kind="stable")
        bounds = np.flatnonzero(np.diff(codes[positions][by_code])) + 1
        rows[fold] = {
            names[codes[positions[part[0]]]]: positions[part]
            for part in np.split(by_code, bounds)
            if len(part) and codes[positions[part[0]]] >= 0
        }
    for task in tasks:
        h = int(task.split("@", 1)[1])
        ewma_col = np.full(len(out), np.nan)
        har_col = np.full(len(out), np.nan)
        per_symbol = {}
        for symbol, frame in frames.items():
            close = frame["close"].to_numpy(np.float64)
            r = log_returns(close)
            target = forward_realised_vol(frame["close"].astype("float64"), h).to_numpy() ** 2
            index = pd.DatetimeIndex(frame.index).tz_convert("UTC")
            per_symbol[symbol] = (index, ewma_variance(r), har_features(r), target)
        for fold, of_symbol in rows.items():
            start = starts.get(fold)
            xs, ys = [], []
            for index, _ewma, feats, target in per_symbol.values():
                # rows whose target window (t+1..t+h) ends before the fold's test start
                usable = len(index) if start is None else int(np.searchsorted(index, start))
                stop = max(0, usable - h)
                xs.append(feats[:stop])
                ys.append(target[:stop])
            coef = _fit_ols(np.vstack(xs), np.concatenate(ys)) if xs else None
            for symbol, (index, ewma, feats, _t) in per_symbol.items():
                mine = of_symbol.get(symbol)
                if mine is None:
                    continue
                where = index.get_indexer(pd.DatetimeIndex(times.iloc[mine]))
                ok = where >= 0
                sel = mine[ok]
                ewma_col[sel] = np.sqrt(np.maximum(ewma[where[ok]], floor**2))
                if coef is not None:
                    var = coef[0] + feats[where[ok]] @ coef[1:]
                    har_col[sel] = np.sqrt(np.maximum(var, floor**2))
        out[f"ewma_{task}"] = ewma_col
        out[f"har_{task}"] = har_col
    return out
