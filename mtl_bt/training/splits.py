"""Purged walk-forward splits on a shared time axis.

Positions index the sorted union of all symbols' (post-warm-up) timestamps, so
pooled symbols are split by time, never by row. One fold looks like::

    [train_start ....... fit_end) purge [val_start .. train_end) purge+embargo [test_start .. test_end)
    |<------------- train window (train_bars for the first/rolling fold) ---->|

``purge`` is the largest task horizon: a row at position t has a target built
from t+1..t+h, so the last ``h`` bars before a validation or test slice are
left out of the slice before it (their targets would peek into it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mtl_bt.errors import ConfigError, DataError


@dataclass(frozen=True)
class Split:
    """One walk-forward fold in axis positions (half-open intervals)."""

    fold: int
    train_start: int  # first bar of the train window
    fit_end: int  # end of the train-proper slice (exclusive)
    val_start: int  # first bar of the validation slice
    train_end: int  # end of the train window (exclusive) = end of the validation slice
    test_start: int
    test_end: int  # exclusive
    purge: int
    embargo: int

    @property
    def fit(self) -> range:
        return range(self.train_start, self.fit_end)

    @property
    def val(self) -> range:
        return range(self.val_start, self.train_end)

    @property
    def test(self) -> range:
        return range(self.test_start, self.test_end)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def walk_forward_splits(
    n_bars: int,
    *,
    train_bars: int,
    test_bars: int,
    step_bars: int | None = None,
    purge: int = 1,
    embargo: int = 0,
    val_fraction: float = 0.15,
    scheme: Literal["expanding", "rolling"] = "expanding",
    max_folds: int | None = None,
    warmup: int = 0,
) -> list[Split]:
    """Folds over ``n_bars`` axis positions.

    The first train window is ``train_bars`` long (every window, for
    ``rolling``); folds advance by ``step_bars`` (default ``test_bars``); the
    last test window may be shorter than ``test_bars`` so that every bar after
    the first train window is predicted. ``warmup`` is only used to report how
    many raw bars were needed.
    """
    step = test_bars if step_bars is None else step_bars
    if step < test_bars:
        raise ConfigError(
            f"walk_forward.step_bars = {step} is smaller than test_bars = {test_bars}: "
            "test windows would overlap; use step_bars >= test_bars"
        )
    if purge < 0 or embargo < 0:
        raise ConfigError("purge and embargo must be >= 0")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"training.val_fraction = {val_fraction} must be in (0, 1)")
    val_bars = max(1, math.ceil(val_fraction * train_bars))
    fit_bars = train_bars - val_bars - purge
    if fit_bars < 1:
        raise ConfigError(
            f"walk_forward.train_bars = {train_bars} leaves no training rows: the validation "
            f"slice takes {val_bars} bars (val_fraction {val_fraction}) and the purge {purge} bars "
            f"(largest task horizon); use train_bars >= {val_bars + purge + 1}"
        )
    gap = purge + embargo
    needed = train_bars + gap + test_bars
    if n_bars < needed:
        raise DataError(
            f"too little history for one walk-forward fold: need {needed + warmup} bars "
            f"(warm-up {warmup} + train {train_bars} + purge {purge} + embargo {embargo} + "
            f"test {test_bars}), found {n_bars + warmup} (of which {n_bars} after warm-up). "
            "Load more data or lower walk_forward.train_bars/test_bars"
        )
    splits: list[Split] = []
    train_end = train_bars
    while True:
        test_start = train_end + gap
        if test_start >= n_bars or (max_folds is not None and len(splits) >= max_folds):
            break
        test_end = min(test_start + test_bars, n_bars)
        train_start = 0 if scheme == "expanding" else train_end - train_bars
        window = train_end - train_start
        val = max(1, math.ceil(val_fraction * window))
        val_start = train_end - val
        splits.append(
            Split(
                fold=len(splits),
                train_start=train_start,
                fit_end=val_start - purge,
                val_start=val_start,
                train_end=train_end,
                test_start=test_start,
                test_end=test_end,
                purge=purge,
                embargo=embargo,
            )
        )
        train_end += step
    return splits
