"""Range-based volatility: the bar's high/low (and open/close) carry more
information about intrabar variance than close-to-close returns.

Both are per-bar volatilities (not annualised): a trailing window mean in
variance space, then the square root.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pandas as pd

from mtl_bt.features import ops
from mtl_bt.features.base import feature
from mtl_bt.features.base import window as int_window
from mtl_bt.features.streaming import (
    BarBuffer,
    BatchBars,
    Windows,
    log,
    maximum,
    window_sum,
    window_sums,
)

NAN = float("nan")
#: the constants of the vectorised cores, computed by the same expressions
_PK_DEN = 4.0 * math.log(2.0)
_GK_CO = 2.0 * math.log(2.0) - 1.0


def _log_hl(bars: BarBuffer) -> float:
    """log(high / low) of the newest bar, once per bar for both range features."""
    memo = bars.memo
    value = memo.get("log_hl")
    if value is None:
        _, _, h, lo, _, _ = bars.bar
        value = memo["log_hl"] = log(h / lo)
    return value


class _RangeStream:
    """A per-bar variance term kept for the last ``window`` bars; the row is
    sqrt(max(mean of the window, 0)) / ``den`` as the vectorised core computes it."""

    window = 0

    def __init__(self, window: int) -> None:
        self.w = window
        self.terms: deque[float] = deque(maxlen=window)

    def term(self, bars: BarBuffer) -> float:
        raise NotImplementedError

    def variance(self) -> float:
        return window_sum(self.terms) / self.w

    def update(self, bars: BarBuffer) -> tuple[float]:
        self.terms.append(self.term(bars))
        if len(self.terms) < self.w:
            return (NAN,)
        return (math.sqrt(maximum(self.variance(), 0.0)),)


def _batch_log_hl(bars: BatchBars) -> np.ndarray:
    value = bars.memo.get("log_hl")
    if value is None:
        value = bars.memo["log_hl"] = np.log(bars.high / bars.low)
    return value


class _ParkinsonBatch:
    def __init__(self, n: int, window: int = 20) -> None:
        self.terms = Windows(n, _pk_warmup(window) + 1)

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        x = self.terms.push(bars, _batch_log_hl(bars) ** 2)
        var = window_sums(x) / self.terms.w / _PK_DEN
        return [np.sqrt(np.maximum(var, 0.0))]


class _GarmanKlassBatch:
    def __init__(self, n: int, window: int = 20) -> None:
        self.terms = Windows(n, _gk_warmup(window) + 1)

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        hl = _batch_log_hl(bars)
        co = np.log(bars.close / bars.open)
        x = self.terms.push(bars, 0.5 * hl**2 - _GK_CO * co**2)
        return [np.sqrt(np.maximum(window_sums(x) / self.terms.w, 0.0))]


class _ParkinsonStream(_RangeStream):
    def __init__(self, window: int = 20) -> None:
        super().__init__(_pk_warmup(window) + 1)

    def term(self, bars: BarBuffer) -> float:
        hl = _log_hl(bars)
        return hl * hl

    def variance(self) -> float:
        return window_sum(self.terms) / self.w / _PK_DEN


class _GarmanKlassStream(_RangeStream):
    def __init__(self, window: int = 20) -> None:
        super().__init__(_gk_warmup(window) + 1)

    def term(self, bars: BarBuffer) -> float:
        hl = _log_hl(bars)
        _, o, _, _, c, _ = bars.bar
        co = log(c / o)
        return 0.5 * (hl * hl) - _GK_CO * (co * co)


def _pk_warmup(window: int = 20) -> int:
    return int_window("parkinson", "window", window) - 1


def _pk_core(window: int):
    def core(high: np.ndarray, low: np.ndarray) -> list[np.ndarray]:
        hl = np.log(high / low)
        var = ops.rolling_mean(hl**2, window) / _PK_DEN
        return [np.sqrt(np.maximum(var, 0.0))]

    return core


@feature(warmup=_pk_warmup, stream=_ParkinsonStream, batch=_ParkinsonBatch)
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
        var = ops.rolling_mean(0.5 * hl**2 - _GK_CO * co**2, window)
        return [np.sqrt(np.maximum(var, 0.0))]

    return core


@feature(warmup=_gk_warmup, stream=_GarmanKlassStream, batch=_GarmanKlassBatch)
def garman_klass(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """sqrt(mean_window(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2)) (Garman-Klass 1980).

    The per-bar estimator can be negative; the window mean is clipped at 0.
    """
    _gk_warmup(window)
    cols = [ops.column(frame, c) for c in ("open", "high", "low", "close")]
    (out,) = _gk_core(window)(*cols)
    return pd.DataFrame({"garman_klass": out}, index=frame.index)
