"""Volatility-forecast baselines on the model's own out-of-sample rows: EWMA and HAR-RV.

Both forecast the per-bar RMS volatility of the next h bars (what the ``volatility@h`` task
predicts) from bars <= t only:

- EWMA: sigma2[t+1] = lambda * sigma2[t] + (1 - lambda) * r[t]^2, flat over the h bars;
  seeded with the first 20 bars' mean r^2; no fitting. The baseline scored as ``qlike_ewma``
  sets lambda from the bar size (``ewma_lambda``): RiskMetrics' daily 0.94 is a half-life of
  11.2 days, and every bar size keeps that half-life in calendar time (hourly bars:
  lambda = 0.94^(1/24) = 0.99743; daily: 0.94). The backtest's sizing input
  ``volatility_input = "ewma"`` (``vol_managed`` / ``agree_voltarget``, bar by bar on the
  streaming path) runs the same recursion (``EwmaVariance``) with the same half-life, its
  lambda from the trained run's ``data.timeframe`` (``timeframe_lambda``).
- Mincer-Zarnowitz calibration (``mincer_zarnowitz``): realised = a + b predicted with
  Newey-West HAC standard errors, per fold in the report and ``mtl-bt compare``.
- HAR-RV (Corsi 2009): OLS of the h-bar forward mean r^2 on the last bar's r^2, the last 5
  bars' and the last 22 bars' mean r^2, refitted per fold on the rows whose target ends
  before that fold's test window (pooled over symbols), so it never sees test bars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.features import ops
from mtl_bt.tasks.targets import forward_realised_vol

LAMBDA = 0.94
#: RiskMetrics' 0.94 on daily bars as a half-life in calendar time: ln 0.5 / ln 0.94 days
HALF_LIFE = pd.Timedelta(days=math.log(0.5) / math.log(LAMBDA))
HAR_WINDOWS = (1, 5, 22)
#: per-bar vol floor of the forecasts (the volatility task's default ``floor``)
FLOOR = 1e-4


def log_returns(close: np.ndarray) -> np.ndarray:
    """1-bar log close returns (NaN at bar 0)."""
    return ops.diff(np.log(np.asarray(close, dtype=np.float64)))


class EwmaVariance:
    """The RiskMetrics recursion one return at a time: the one implementation behind
    ``ewma_variance`` (whole arrays) and a streaming backtest (bar by bar), so both give
    the same numbers bit for bit."""

    __slots__ = ("_finite", "_seed", "lam", "seed_bars", "var")

    def __init__(self, lam: float = LAMBDA, seed_bars: int = 20) -> None:
        self.lam = float(lam)
        self.seed_bars = int(seed_bars)
        self._seed: list[float] | None = []  # squares from the first finite one on
        self._finite = 0
        self.var = math.nan

    def push(self, r: float) -> float:
        """Add the return of bar t; the forecast made at t of bar t+1's variance (NaN until
        ``seed_bars`` finite returns were seen, then seeded with their mean square)."""
        x = float(r) * float(r)
        finite = math.isfinite(x)
        if self._seed is not None:
            if finite or self._seed:
                self._seed.append(x)
                self._finite += finite
                if self._finite == self.seed_bars:
                    self.var = float(np.nanmean(np.array(self._seed)))
                    self._seed = None
            return self.var
        if finite:
            self.var = self.lam * self.var + (1.0 - self.lam) * x
        return self.var


def ewma_variance(returns: np.ndarray, lam: float = LAMBDA, seed_bars: int = 20) -> np.ndarray:
    """Forecast at bar t of the next bar's variance (uses r[..t]); NaN before ``seed_bars``."""
    state = EwmaVariance(lam, seed_bars)
    r = np.asarray(returns, dtype=np.float64)
    return np.array([state.push(x) for x in r.tolist()], dtype=np.float64).reshape(r.shape)


def floored_vol(variance: np.ndarray | float, floor: float = FLOOR) -> np.ndarray:
    """Per-bar vol from a variance forecast, floored like the volatility task's target
    (NaN stays NaN)."""
    return np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), floor**2))


def ewma_lambda(bar: pd.Timedelta | None, half_life: pd.Timedelta = HALF_LIFE) -> float:
    """The EWMA decay for bars of duration ``bar`` with the same half-life in calendar time
    as RiskMetrics' 0.94 on daily bars: 0.5 ** (bar / half_life). None (unknown bar):
    ``LAMBDA``."""
    if bar is None or not bar > pd.Timedelta(0):
        return LAMBDA
    return float(0.5 ** (bar / half_life))


def bar_of(index: pd.Index) -> pd.Timedelta | None:
    """A frame's bar size: the median spacing of its timestamps (None below 2 bars). Daily
    stock bars give 1 day (weekends are gaps, not the bar)."""
    times = pd.DatetimeIndex(index)
    if len(times) < 2:
        return None
    return pd.Timedelta(float(np.median(np.diff(times.as_unit("ns").asi8))), unit="ns")


def timeframe_lambda(timeframe: str | None) -> float:
    """``ewma_lambda`` of a configured bar size such as ``"1h"`` (None: ``LAMBDA``): the one
    place the backtest's EWMA sizing input gets its decay, on the preloaded and the
    streaming path alike (both know the run's timeframe before the first bar)."""
    if timeframe is None:
        return LAMBDA
    from mtl_bt.data.timeframe import parse_timeframe

    return ewma_lambda(parse_timeframe(timeframe))


def ewma_vol(close: np.ndarray, floor: float = FLOOR, lam: float = LAMBDA) -> np.ndarray:
    """The EWMA per-bar vol forecast at every bar from the closes up to it: the
    ``ewma_<task>`` baseline column and the backtest's EWMA sizing input. Flat over the
    h bars, so it is the per-bar RMS vol of the next h bars that ``volatility@h`` predicts
    at any h."""
    return floored_vol(ewma_variance(log_returns(close), lam), floor)


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


#: prediction columns that hold a per-bar volatility level (the baselines are added to them)
LEVEL_TASKS = ("volatility@", "volatility_anchored@")


def add_anchored(
    predictions: pd.DataFrame, frames: Mapping[str, pd.DataFrame], tasks: Mapping[str, Any]
) -> pd.DataFrame:
    """For every ``volatility_ratio@h`` task (a ratio to a causal trailing vol), the volatility
    level it implies: ``volatility_anchored@h`` = prediction x anchor and its target
    ``target_volatility_anchored@h`` = target x anchor (the realised vol, floored), the
    anchor being the task's own ``anchor(frame)`` at each row's bar (bars <= t only)."""
    ratio = [n for n, t in tasks.items() if hasattr(t, "anchor") and n in predictions]
    if predictions.empty or not ratio:
        return predictions
    out = predictions.copy()
    times = pd.DatetimeIndex(pd.to_datetime(out["datetime"], utc=True))
    rows = out.groupby("symbol", sort=False).indices  # once: not rows x symbols comparisons
    for name in ratio:
        anchor = np.full(len(out), np.nan)
        for symbol, mine in rows.items():
            frame = frames.get(symbol)
            if frame is None:
                continue
            values = tasks[name].anchor(frame).to_numpy(np.float64)
            where = pd.DatetimeIndex(frame.index).tz_convert("UTC").get_indexer(times[mine])
            ok = where >= 0
            anchor[mine[ok]] = values[where[ok]]
        level = "volatility_anchored@" + name.split("@", 1)[1]
        out[level] = out[name].to_numpy(np.float64) * anchor
        out[f"target_{level}"] = out[f"target_{name}"].to_numpy(np.float64) * anchor
    return out


def add_baselines(
    predictions: pd.DataFrame,
    frames: Mapping[str, pd.DataFrame],
    folds: list[dict[str, Any]],
    floor: float = FLOOR,
) -> pd.DataFrame:
    """``predictions`` with ``ewma_<task>`` and ``har_<task>`` columns for every
    ``volatility@h`` task (per-bar RMS vol forecasts on the same rows)."""
    tasks = [c for c in predictions.columns if str(c).startswith(LEVEL_TASKS)]
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
            lam = ewma_lambda(bar_of(index))
            per_symbol[symbol] = (index, ewma_variance(r, lam), har_features(r), target)
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
                ewma_col[sel] = floored_vol(ewma[where[ok]], floor)
                if coef is not None:
                    var = coef[0] + feats[where[ok]] @ coef[1:]
                    har_col[sel] = np.sqrt(np.maximum(var, floor**2))
        out[f"ewma_{task}"] = ewma_col
        out[f"har_{task}"] = har_col
    return out


def newey_west_ols(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray] | None:
    """OLS of ``y`` on [1, x] with Newey-West (Bartlett kernel, ``lag`` lags) HAC standard
    errors: (coefficients, standard errors), each [intercept, slope]; None below 3 rows or
    with a constant ``x``. Rows must be in time order. The same numbers as statsmodels'
    ``OLS(...).fit(cov_type="HAC", cov_kwds={"maxlags": lag, "use_correction": False})``
    (tested against it), without the dependency at run time."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if n < 3 or not np.std(x) > 0:
        return None
    design = np.column_stack([np.ones(n), x])
    bread = np.linalg.inv(design.T @ design)
    coef = bread @ design.T @ y
    scores = design * (y - design @ coef)[:, None]
    meat = scores.T @ scores
    for k in range(1, min(int(lag), n - 1) + 1):
        w = 1.0 - k / (lag + 1.0)
        gamma = scores[k:].T @ scores[:-k]
        meat += w * (gamma + gamma.T)
    cov = bread @ meat @ bread
    return coef, np.sqrt(np.maximum(np.diag(cov), 0.0))


def mincer_zarnowitz(predicted: np.ndarray, realised: np.ndarray, lag: int) -> dict[str, float]:
    """Mincer-Zarnowitz regression realised = a + b predicted (volatility levels): an
    unbiased forecast has a = 0 and b = 1; b < 1 means the forecast moves too much (its
    high forecasts are too high), b > 1 too little. HAC (Newey-West, ``lag``) standard
    errors, because overlapping h-bar targets are autocorrelated for ~h bars."""
    nan = float("nan")
    fit = newey_west_ols(predicted, realised, lag)
    if fit is None:
        return {"mz_intercept": nan, "mz_slope": nan, "mz_intercept_se": nan, "mz_slope_se": nan}
    (a, b), (sa, sb) = fit
    return {
        "mz_intercept": float(a),
        "mz_slope": float(b),
        "mz_intercept_se": float(sa),
        "mz_slope_se": float(sb),
    }
