"""Causal features from OHLCV bars.

Others call: ``FeatureSpec``, ``compute(frame, spec)``, ``drop_warmup(features,
spec, symbol)``, ``Scaler``. Feature plugins are functions decorated with
``@feature(warmup=..., columns=...)``; one that reads other symbols or a higher
timeframe adds ``reads=Reads(...)`` (``mtl_bt.features.frames``); see docs/features.md.
"""

from mtl_bt.features.base import feature, require_volume
from mtl_bt.features.frames import Reads
from mtl_bt.features.scaler import Scaler
from mtl_bt.features.spec import (
    DEFAULT_FEATURES,
    PRICE_FEATURES,
    REFERENCE_FEATURES,
    FeatureSpec,
    compute,
    drop_warmup,
    min_bars,
)

__all__ = [
    "DEFAULT_FEATURES",
    "PRICE_FEATURES",
    "REFERENCE_FEATURES",
    "FeatureSpec",
    "Reads",
    "Scaler",
    "compute",
    "drop_warmup",
    "feature",
    "min_bars",
    "require_volume",
]
