"""The one function that holds every signal rule to the portfolio limits.

Whatever a rule returns (built-in or plugin), the strategy passes it through
``clip_weights`` before any order: non-finite weights become 0, shorts become 0
unless allowed, each weight is capped at ``max_weight`` and the book is scaled
down to ``max_gross_leverage``. ``violations`` says which limit a raw output broke
(the strategy counts and warns; ``check_signal`` fails on it).
"""

from __future__ import annotations

import math

import numpy as np

#: slack for float rounding when deciding a limit was broken
EPS = 1e-9
#: batches up to this size are checked and clipped in Python floats (a decision's few
#: assets: numpy's per-call overhead is most of the cost there), with the same results
SMALL = 8


def violations(
    weights: np.ndarray, max_weight: float, max_gross_leverage: float, allow_short: bool
) -> list[str]:
    """Names of the limits ``weights`` break (empty: within every limit)."""
    if type(weights) is np.ndarray and weights.dtype == np.float64 and weights.ndim == 1:
        if weights.shape[0] <= SMALL:
            return _violations_floats(weights.tolist(), max_weight, max_gross_leverage, allow_short)
    return _violations_numpy(weights, max_weight, max_gross_leverage, allow_short)


def _violations_numpy(
    weights: np.ndarray, max_weight: float, max_gross_leverage: float, allow_short: bool
) -> list[str]:
    w = np.asarray(weights, dtype=np.float64)
    out = []
    if not np.isfinite(w).all():
        out.append("finiteness")
    finite = np.where(np.isfinite(w), w, 0.0)
    if not allow_short and (finite < -EPS).any():
        out.append("allow_short=False")
    if (np.abs(finite) > max_weight + EPS).any():
        out.append(f"max_weight={max_weight}")
    if float(np.abs(finite).sum()) > max_gross_leverage + EPS:
        out.append(f"max_gross_leverage={max_gross_leverage}")
    return out


def _violations_floats(
    w: list[float], max_weight: float, max_gross_leverage: float, allow_short: bool
) -> list[str]:
    """``violations`` of a few weights in Python floats (the same names, in the same order).
    The gross sum is Python's where it is clearly on one side of the limit, else numpy's
    (their orders of addition differ by a few ulp)."""
    out = []
    finite = [x if math.isfinite(x) else 0.0 for x in w]
    if len(finite) != sum(math.isfinite(x) for x in w):
        out.append("finiteness")
    if not allow_short and any(x < -EPS for x in finite):
        out.append("allow_short=False")
    limit = max_weight + EPS
    if any(abs(x) > limit for x in finite):
        out.append(f"max_weight={max_weight}")
    gross, cap = sum(abs(x) for x in finite), max_gross_leverage + EPS
    if not abs(gross - cap) > 1e-12 * max(1.0, abs(cap), gross):
        gross = float(np.abs(np.array(finite, dtype=np.float64)).sum())
    if gross > cap:
        out.append(f"max_gross_leverage={max_gross_leverage}")
    return out


def clip_weights(
    weights: np.ndarray, max_weight: float, max_gross_leverage: float, allow_short: bool
) -> np.ndarray:
    """Per-asset cap, no shorts unless allowed, then scale all down to the gross cap."""
    return scale_to_gross(clip_each(weights, max_weight, allow_short), max_gross_leverage)


def clip_each(weights: np.ndarray, max_weight: float, allow_short: bool) -> np.ndarray:
    """``clip_weights``' per-asset part: non-finite -> 0, no shorts unless allowed, the cap.
    Elementwise, so it can run on every bar of a run at once (precomputed mode)."""
    w = np.asarray(weights, dtype=np.float64)
    w = np.where(np.isfinite(w), w, 0.0)
    return np.minimum(np.maximum(w, -max_weight if allow_short else 0.0), max_weight)


def clip_each_floats(w: list[float], max_weight: float, allow_short: bool) -> list[float]:
    """``clip_each`` on a list of floats, equal bit for bit (numpy's maximum and minimum
    return their second argument on a tie, so signed zeros come out the same)."""
    lo = -max_weight if allow_short else 0.0
    out = []
    for x in w:
        x = x if math.isfinite(x) else 0.0
        x = x if x > lo else lo
        out.append(x if x < max_weight else max_weight)
    return out


def scale_to_gross(w: np.ndarray, max_gross_leverage: float) -> np.ndarray:
    """``clip_weights``' cross-sectional part: scale the book down to the gross cap."""
    gross = float(np.abs(w).sum())
    if gross > max_gross_leverage:
        w = w * (max_gross_leverage / gross)
    return w


def gross_of(w: list[float]) -> float:
    """``float(np.abs(w).sum())`` of a list of floats: one value in Python (a one-element
    numpy sum is that value: bit for bit, without three numpy calls), more through numpy
    (its pairwise sum is not Python's left-to-right one)."""
    if len(w) == 1:
        return abs(w[0])
    return float(np.abs(np.array(w, dtype=np.float64)).sum())


def scale_floats_to_gross(w: list[float], max_gross_leverage: float) -> list[float]:
    """``scale_to_gross`` on a list of floats (the per-bar path), equal bit for bit. A
    Python sum clearly under the cap decides "no scaling" without numpy: numpy's pairwise
    sum and Python's left-to-right one differ by a few ulp, far inside the 1e-12 margin."""
    if sum(abs(x) for x in w) < max_gross_leverage * (1.0 - 1e-12):
        return w
    gross = gross_of(w)
    if gross > max_gross_leverage:
        f = max_gross_leverage / gross
        return [x * f for x in w]
    return w
