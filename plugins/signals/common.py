"""Helpers shared by the built-in signal rules: portfolio caps (head lookup: mtl_bt.signals)."""

from __future__ import annotations

import numpy as np


def cap_weights(
    weights: np.ndarray, max_weight: float, max_gross_leverage: float, allow_short: bool
) -> np.ndarray:
    """Per-asset cap, no shorts unless allowed, then scale all down to the gross cap."""
    w = np.where(np.isfinite(weights), weights, 0.0)
    w = np.minimum(np.maximum(w, 0.0 if not allow_short else -max_weight), max_weight)
    gross = float(np.abs(w).sum())
    if gross > max_gross_leverage:
        w = w * (max_gross_leverage / gross)
    return w
