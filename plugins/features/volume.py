"""Volume features: volume relative to its own trailing history.

Raw volume is in base units and trends with adoption, so both features are
relative to a trailing window ending at t (causal). They need a real volume
column: missing (NaN) or all-zero volume is a DataError naming the symbol.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

from mtl_bt.features import ops
from mtl_bt.features.base import feature, positive, require_volume
from mtl_bt.features.base import window as int_window
from mtl_bt.features.streaming import (
    BarBuffer,
    BatchBars,
    Windows,
    log,
    maximum,
    safe_div,
    window_std,
    window_stds,
    window_sum,
    window_sums,
)

NAN = float("nan")


def _ratio_warmup(window: int = 20, floor: float = 1e-3) -> int:
    positive("volume_ratio", "floor", floor)
    return int_window("volume_ratio", "window", window) - 1


def _ratio_core(window: int, floor: float):
    def core(volume: np.ndarray) -> list[np.ndarray]:
        ratio = ops.safe_div(volume, ops.rolling_mean(volume, window), 0.0, 1.0)
        return [np.log(np.maximum(ratio, floor))]

    return core


class _RatioStream:
    """volume_ratio bar by bar: the window's volumes added oldest first."""

    window = 0

    def __init__(self, window: int = 20, floor: float = 1e-3) -> None:
        _ratio_warmup(window, floor)
        self.w, self.floor = window, float(floor)
        self.volume: deque[float] = deque(maxlen=window)

    def update(self, bars: BarBuffer) -> tuple[float]:
        v = bars.bar[5]
        self.volume.append(v)
        if len(self.volume) < self.w:
            return (NAN,)
        ratio = safe_div(v, window_sum(self.volume) / self.w, 0.0, 1.0)
        return (log(maximum(ratio, self.floor)),)


def _ratio_stream(window: int = 20, floor: float = 1e-3) -> _RatioStream:
    return _RatioStream(window, floor)


class _ZStream:
    """volume_zscore bar by bar: the window's mean and std (ddof=1) as ``ops`` computes them."""

    window = 0

    def __init__(self, window: int = 20) -> None:
        self.w = _z_warmup(window) + 1
        self.volume: deque[float] = deque(maxlen=self.w)

    def update(self, bars: BarBuffer) -> tuple[float]:
        v = bars.bar[5]
        self.volume.append(v)
        if len(self.volume) < self.w:
            return (NAN,)
        mean = window_sum(self.volume) / self.w
        return (safe_div(v - mean, window_std(self.volume, 1), 1e-12 * abs(mean), 0.0),)


class _RatioBatch:
    def __init__(self, n: int, window: int = 20, floor: float = 1e-3) -> None:
        _ratio_warmup(window, floor)
        self.volume, self.floor = Windows(n, window), floor

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        v = bars.volume
        mean = window_sums(self.volume.push(bars, v)) / self.volume.w
        return [np.log(np.maximum(ops.safe_div(v, mean, 0.0, 1.0), self.floor))]


@feature(warmup=_ratio_warmup, uses_volume=True, stream=_ratio_stream, batch=_RatioBatch)
def volume_ratio(frame: pd.DataFrame, window: int = 20, floor: float = 1e-3) -> pd.DataFrame:
    """log(volume / SMA(volume, window)), the ratio floored at ``floor`` so a
    zero-volume bar stays finite; a window with no volume at all gives 0."""
    _ratio_warmup(window, floor)
    volume = require_volume(frame, ["volume_ratio"]).to_numpy()
    (out,) = _ratio_core(window, floor)(volume)
    return pd.DataFrame({"volume_ratio": out}, index=frame.index)


def _z_warmup(window: int = 20) -> int:
    return int_window("volume_zscore", "window", window, 2) - 1


def _z_core(window: int):
    def core(volume: np.ndarray) -> list[np.ndarray]:
        mean = ops.rolling_mean(volume, window)
        sd = ops.rolling_std(volume, window, ddof=1)
        return [ops.safe_div(volume - mean, sd, 1e-12 * np.abs(mean), 0.0)]

    return core


class _ZBatch:
    def __init__(self, n: int, window: int = 20) -> None:
        self.volume = Windows(n, _z_warmup(window) + 1)

    def update(self, bars: BatchBars) -> list[np.ndarray]:
        v = bars.volume
        x = self.volume.push(bars, v)
        mean = window_sums(x) / self.volume.w
        sd = window_stds(x, mean, 1)
        return [ops.safe_div(v - mean, sd, 1e-12 * np.abs(mean), 0.0)]


@feature(warmup=_z_warmup, uses_volume=True, stream=_ZStream, batch=_ZBatch)
def volume_zscore(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """(volume - SMA(volume, window)) / std(volume, window), ddof=1; a window of
    constant volume (std ~ 0) gives 0."""
    _z_warmup(window)
    volume = require_volume(frame, ["volume_zscore"]).to_numpy()
    (out,) = _z_core(window)(volume)
    return pd.DataFrame({"volume_zscore": out}, index=frame.index)
