"""Causal numpy primitives for feature functions.

Each output element i depends on inputs [..i] only, and is computed the same
way whatever comes after i, so features built from these are prefix-invariant
(the property test in tests/features checks it). Rolling statistics are
computed window by window (w vectorised passes), not by running sums: exact
per window, no drift over long series, a value does not depend on bars outside
its window, and a flat window has a spread of (numerically) zero. Recursive
averages use pandas' C ``ewm(adjust=False)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def column(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype="float64")


def lag(x: np.ndarray, k: int) -> np.ndarray:
    """x[t-k] (NaN for t < k)."""
    out = np.full_like(x, np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def diff(x: np.ndarray) -> np.ndarray:
    """x[t] - x[t-1] (NaN at t = 0)."""
    return x - lag(x, 1)


def _window_sum(x: np.ndarray, w: int) -> np.ndarray:
    """sum(x[t-w+1..t]) for t >= w-1, each window added up in the same fixed
    order (w vectorised passes): exact per window, no running-sum drift."""
    m = len(x) - w + 1
    if m == 1:  # one window (the streaming path): the same additions on Python floats
        total = float(x[0])
        for v in x[1:w].tolist():
            total += v
        return np.array([total])
    acc = x[:m].copy()
    for k in range(1, w):
        acc += x[k : k + m]
    return acc


def rolling_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean of x[t-w+1..t] (NaN for t < w-1 or if the window holds a NaN)."""
    out = np.full_like(x, np.nan)
    if len(x) >= w:
        out[w - 1 :] = _window_sum(x, w) / w
    return out


def rolling_std(x: np.ndarray, w: int, ddof: int = 1) -> np.ndarray:
    """Std of x[t-w+1..t], two-pass per window (NaN before a full window)."""
    out = np.full_like(x, np.nan)
    if len(x) >= w and w > ddof:
        m = len(x) - w + 1
        mean = _window_sum(x, w) / w
        if m == 1:  # one window: the same arithmetic on Python floats
            mu = float(mean[0])
            total = 0.0
            for k, v in enumerate(x[:w].tolist()):
                d = v - mu
                total = d * d if k == 0 else total + d * d
            out[w - 1 :] = np.sqrt(np.array([total]) / (w - ddof))
            return out
        ss = (x[:m] - mean) ** 2
        for k in range(1, w):
            ss += (x[k : k + m] - mean) ** 2
        out[w - 1 :] = np.sqrt(ss / (w - ddof))
    return out


def ewm_mean(x: np.ndarray, alpha: float) -> np.ndarray:
    """Recursive EMA y[t] = alpha x[t] + (1 - alpha) y[t-1], seeded at the first
    non-NaN value (pandas ``ewm(adjust=False)``): prefix-invariant."""
    return pd.Series(x).ewm(alpha=alpha, adjust=False).mean().to_numpy()


def mask_head(x: np.ndarray, n: int) -> np.ndarray:
    """Set the first n values to NaN (warm-up of recursive filters)."""
    x = x.copy()
    x[:n] = np.nan
    return x


def safe_div(num: np.ndarray, den: np.ndarray, tiny: np.ndarray | float, fill: float) -> np.ndarray:
    """num / den, with ``fill`` where |den| <= tiny (NaN den stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    small = np.abs(den) <= tiny
    out[small] = fill
    return out
