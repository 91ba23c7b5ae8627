"""Helpers shared by the built-in signal rules: portfolio caps (head lookup: mtl_bt.signals)
and the volatility input that sizes ``agree_voltarget`` and ``vol_managed``.

``cap_weights`` is ``mtl_bt.signals.clip.clip_weights``: one clipping function for every
rule (the strategy applies it again to whatever any rule returns).
"""

from __future__ import annotations

import numpy as np

from mtl_bt.errors import PluginError
from mtl_bt.signals.clip import clip_weights as cap_weights

__all__ = ["VOLATILITY_INPUTS", "cap_weights", "check_volatility_input", "vol_target_size"]

#: where the per-bar volatility that sizes a position comes from
VOLATILITY_INPUTS = ("head", "trailing", "ewma")


def check_volatility_input(rule: str, value: object) -> str:
    """The ``volatility_input`` option, refused with one line naming the allowed values."""
    if value not in VOLATILITY_INPUTS:
        allowed = ", ".join(repr(v) for v in VOLATILITY_INPUTS)
        raise PluginError(
            f"signal {rule}: option volatility_input must be one of {allowed}, got {value!r}"
        )
    return str(value)


def sizing_vol(
    source: str,
    head: np.ndarray | None,
    realised_vol: np.ndarray | None,
    ewma_vol: np.ndarray | None,
    n: int,
) -> np.ndarray:
    """Per-bar vol per asset from the chosen input (``head``: the model's ``volatility@h``
    prediction, ``None`` when the rule reads no head; ``ewma``: the strategy's ``ewma_vol``);
    where it is missing or not > 0, the trailing realised vol; else NaN (equal weight)."""
    primary = head if source == "head" else ewma_vol if source == "ewma" else None
    if primary is not None:
        vol = np.asarray(primary, dtype=np.float64)
        if realised_vol is not None:
            vol = np.where(vol > 0, vol, realised_vol)  # NaN > 0 is False
        return vol
    if realised_vol is not None:
        return np.asarray(realised_vol, dtype=np.float64)
    return np.full(n, np.nan)


def vol_target_size(
    vol: np.ndarray,
    target_vol: float,
    periods_per_year: float | np.ndarray,
    max_weight: float,
    max_gross_leverage: float,
    n_assets: int | None,
) -> np.ndarray:
    """min(max_weight, target_vol / (vol sqrt(P))) per asset; equal weight where vol is
    not > 0. ``vol`` is per bar (the head's per-bar RMS vol over h bars, or a per-bar
    EWMA / trailing vol), annualised by sqrt(P) like the target."""
    n = vol.shape[0]
    equal = min(max_weight, max_gross_leverage / max(1, n_assets or n))
    # a subnormal vol overflows the quotient to inf, which the cap turns into max_weight
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        size = np.minimum(target_vol / (vol * np.sqrt(periods_per_year)), max_weight)
    return np.where(vol > 0, size, equal)
