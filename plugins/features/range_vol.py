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


def _pk_warmup(window: int = 20) -> int:
    return int_window("parkinson", "window", window) - 1


@feature(warmup=_pk_warmup)
def parkinson(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """sqrt(mean_window(ln(H/L)^2) / (4 ln 2)) (Parkinson 1980)."""
    _pk_warmup(window)
    hl = np.log(ops.column(frame, "high") / ops.column(frame, "low"))
    var = ops.rolling_mean(hl**2, window) / (4.0 * math.log(2.0))
    return pd.DataFrame({"parkinson": np.sqrt(np.maximum(var, 0.0))}, index=frame.index)


def _gk_warmup(window: int = 20) -> int:
    return int_window("garman_klass", "window", window) - 1


@feature(warmup=_gk_warmup)
def garman_klass(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """sqrt(mean_window(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2)) (Garman-Klass 1980).

    The per-bar estimator can be negative; the window mean is clipped at 0.
    """
    _gk_warmup(window)
    hl = np.log(ops.column(frame, "high") / ops.column(frame, "low"))
    co = np.log(ops.column(frame, "close") / ops.column(frame, "open"))
    var = ops.rolling_mean(0.5 * hl**2 - (2.0 * math.log(2.0) - 1.0) * co**2, window)
    return pd.DataFrame({"garman_klass": np.sqrt(np.maximum(var, 0.0))}, index=frame.index)
