"""Volume features: volume relative to its own trailing history.

Raw volume is in base units and trends with adoption, so both features are
relative to a trailing window ending at t (causal). They need a real volume
column: missing (NaN) or all-zero volume is a DataError naming the symbol.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtl_bt.features import ops
from mtl_bt.features.base import feature, positive, require_volume
from mtl_bt.features.base import window as int_window
from mtl_bt.features.streaming import TailStream


def _ratio_warmup(window: int = 20, floor: float = 1e-3) -> int:
    positive("volume_ratio", "floor", floor)
    return int_window("volume_ratio", "window", window) - 1


def _ratio_core(window: int, floor: float):
    def core(volume: np.ndarray) -> list[np.ndarray]:
        ratio = ops.safe_div(volume, ops.rolling_mean(volume, window), 0.0, 1.0)
        return [np.log(np.maximum(ratio, floor))]

    return core


def _ratio_stream(window: int = 20, floor: float = 1e-3) -> TailStream:
    _ratio_warmup(window, floor)
    return TailStream(_ratio_core(window, floor), ["volume"], window)


@feature(warmup=_ratio_warmup, uses_volume=True, stream=_ratio_stream)
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


@feature(
    warmup=_z_warmup,
    uses_volume=True,
    stream=lambda window=20: TailStream(_z_core(_z_warmup(window) + 1), ["volume"], window),
)
def volume_zscore(frame: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """(volume - SMA(volume, window)) / std(volume, window), ddof=1; a window of
    constant volume (std ~ 0) gives 0."""
    _z_warmup(window)
    volume = require_volume(frame, ["volume_zscore"]).to_numpy()
    (out,) = _z_core(window)(volume)
    return pd.DataFrame({"volume_zscore": out}, index=frame.index)
