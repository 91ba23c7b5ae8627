"""Helpers shared by the built-in signal rules: head lookup and portfolio caps."""

from __future__ import annotations

import numpy as np

from mtl_bt.errors import PluginError


def task_horizons(predictions: dict[str, np.ndarray], kind: str) -> list[int]:
    out = []
    for name in predictions:
        k, _, h = name.partition("@")
        if k == kind and h.isdigit():
            out.append(int(h))
    return sorted(out)


def pick_horizon(predictions: dict[str, np.ndarray], horizon: int | None, rule: str) -> int:
    """The trading horizon: ``horizon`` if given, else the smallest return horizon."""
    available = task_horizons(predictions, "return")
    if not available:
        raise PluginError(
            f"signal {rule!r} needs a return head (return@h); the model predicts "
            f"{sorted(predictions)}"
        )
    if horizon is None:
        return available[0]
    if horizon not in available:
        raise PluginError(
            f"signal {rule!r}: horizon={horizon} has no return@{horizon} head; "
            f"available return horizons: {available}"
        )
    return int(horizon)


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
