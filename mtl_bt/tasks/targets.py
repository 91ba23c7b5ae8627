"""Target math shared by the built-in tasks (vectorised, look-ahead by design).

Every function returns a Series aligned to the input whose value at bar t uses
bars t+1..t+h (plus bar t itself as the reference price, and for the volume
target a trailing window ending at t). The last h rows are NaN: their future
is unknown. Windows are summed one by one (``mtl_bt.features.ops``), so a
target is bit-for-bit unaffected by bars outside its window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mtl_bt.errors import DataError
from mtl_bt.features import ops


def symbol_of(frame: pd.DataFrame) -> str:
    return str(frame.attrs.get("symbol", "(unknown symbol)"))


def close_of(frame: pd.DataFrame, task: str) -> pd.Series:
    if "close" not in frame.columns:
        raise DataError(f"{symbol_of(frame)}: task {task} needs a close column")
    return frame["close"].astype("float64")


def _series(values: np.ndarray, like: pd.Series) -> pd.Series:
    return pd.Series(values, index=like.index)


def forward_log_return(close: pd.Series, h: int) -> pd.Series:
    """log(close[t+h] / close[t])."""
    lc = np.log(close.to_numpy(dtype="float64"))
    return _series(lead(lc, h) - lc, close)


def forward_realised_vol(close: pd.Series, h: int) -> pd.Series:
    """sqrt(mean_{i=1..h} r[t+i]^2), r the 1-bar log close return."""
    r2 = ops.diff(np.log(close.to_numpy(dtype="float64"))) ** 2
    return _series(np.sqrt(lead(ops.rolling_mean(r2, h), h)), close)


def forward_mean(values: pd.Series, h: int) -> pd.Series:
    """mean(values[t+1..t+h])."""
    return _series(lead(ops.rolling_mean(values.to_numpy(dtype="float64"), h), h), values)


def trailing_mean(values: pd.Series, w: int) -> pd.Series:
    """mean(values[t-w+1..t]), each window summed on its own (exact, no running sums)."""
    return _series(ops.rolling_mean(values.to_numpy(dtype="float64"), w), values)


def lead(x: np.ndarray, k: int) -> np.ndarray:
    """x[t+k] (NaN for the last k rows): the look-ahead that makes a target."""
    out = np.full_like(x, np.nan)
    if k < len(x):
        out[: len(x) - k] = x[k:]
    return out


def as_target(output: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """Check the batch the trainer passes: finite targets, one output per row.

    The trainer keeps only rows whose targets are all finite; a NaN here would
    silently poison the loss (NaN gradients), so it is an error, not a skip.
    """
    if output.numel() != target.numel():
        raise ValueError(f"{task}: {output.numel()} outputs for {target.numel()} targets")
    if not bool(torch.isfinite(target).all()):
        raise ValueError(
            f"{task}: loss got non-finite targets; pass only rows with finite targets "
            "(the last h rows of every symbol have none)"
        )
    return target.reshape(output.shape).to(output.dtype)


def trailing_ewma_vol(close: pd.Series, half_life: float, window: int) -> pd.Series:
    """sqrt of the EWMA of r^2 over the last ``window`` bars ending at t, weights
    0.5 ** (k / half_life) for the return k bars back, normalised to sum 1.

    A causal anchor with a finite lookback: each row is its own dot product over its own
    window (``np.convolve``), so the value at t depends on r[t-window+1..t] only (NaN
    while the window holds a NaN, i.e. the first ``window`` rows)."""
    r2 = ops.diff(np.log(close.to_numpy(dtype="float64"))) ** 2
    weights = 0.5 ** (np.arange(window, dtype=np.float64) / float(half_life))
    weights /= weights.sum()
    out = np.full(len(r2), np.nan)
    if len(r2) >= window:
        out[window - 1 :] = np.convolve(r2, weights, mode="valid")
    return _series(np.sqrt(out), close)
