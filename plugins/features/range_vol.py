"""Range-based volatility: the bar's high/low (and open/close) carry more
information about intrabar variance than close-to-close returns.

Both are per-bar volatilities (not annualised): a trailing window mean in
variance space, then the square root.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mtl_bt.features import ops
from mtl_bt.features.base import feature
from mtl_bt.features.base import window as int_window
from mtl_bt.features.streaming import TailStream


def _pk_warmup(window: int = 20) -> int:
    return int_window("parkinson", "window", window) - 1


def _pk_core(window: int):
    def core(high: np.ndarray, low: np.ndarray) -> list[np.ndarray]:
        hl = np.log(high / low)
        var = ops.rolling_mean(hl**2, window) / (4.0 * math.log(2.0))
        return [np.sqrt(np.maximum(var, 0.0))]

    return core


@feature(
    warmup=_pk_warmup,
    stream=lambda window=20: TailStream(_pk_core(_pk_warmup(window) + 1), ["high", "low"], window),
)
def parkinson(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """sqrt(mean_window(ln(H/L)^2) / (4 ln 2)) (Parkinson 1980)."""
    _pk_warmup(window)
    (out,) = _pk_core(window)(ops.column(frame, "high"), ops.column(frame, "low"))
    return pd.DataFrame({"parkinson": out}, index=frame.index)


def _gk_warmup(window: int = 20) -> int:
    return int_window("garman_klass", "window", window) - 1


def _gk_core(window: int):
    def core(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
        hl = np.log(h / lo)
        co = np.log(c / o)
        var = ops.rolling_mean(0.5 * hl**2 - (2.0 * math.log(2.0) - 1.0) * co**2, window)
        return [np.sqrt(np.maximum(var, 0.0))]

    return core


@feature(
    warmup=_gk_warmup,
    stream=lambda window=20: TailStream(
        _gk_core(_gk_warmup(window) + 1), ["open", "high", "low", "close"], window
    ),
)
def garman_klass(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """sqrt(mean_window(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2)) (Garman-Klass 1980).

    The per-bar estimator can be negative; the window mean is clipped at 0.
    """
    _gk_warmup(window)
    cols = [ops.column(frame, c) for c in ("open", "high", "low", "close")]
    (out,) = _gk_core(window)(*cols)
    return pd.DataFrame({"garman_klass": out}, index=frame.index)
