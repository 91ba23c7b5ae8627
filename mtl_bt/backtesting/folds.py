"""Which walk-forward fold model may decide a bar (the fold schedule).

A model is usable on bar t iff t > train_end and test_start <= t <= test_end
(checkpoint metadata, inclusive ISO timestamps). A single model ignores its
test_end, so it can run on data newer than its test window. Where windows
overlap, the later-trained model wins. A bar outside every window is held flat.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: fold index of a bar no model may decide
NO_FOLD = -1


def utc_ts(value: Any) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def fold_window(predictor: Any, single: bool) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """(train_end, test_end) of a model's fold metadata; test_end is None for a single model."""
    fold = dict(getattr(predictor, "fold", None) or {})
    upper = None if single else utc_ts(fold.get("test_end"))
    return utc_ts(fold.get("train_end")), upper


def model_timeframe(predictor: Any) -> str | None:
    """The bar size a model was trained on ('1d', '1h', ...): a ``timeframe`` attribute, else
    the training config in its checkpoint; None when the model does not say."""
    given = getattr(predictor, "timeframe", None)
    if given:
        return str(given)
    config = getattr(getattr(predictor, "checkpoint", None), "config", None) or {}
    data = config.get("data") if isinstance(config, dict) else None
    found = data.get("timeframe") if isinstance(data, dict) else None
    return str(found) if found else None


def model_bar_seconds(predictor: Any) -> float | None:
    """Seconds per bar of the model's training data, or None when unknown."""
    from mtl_bt.backtesting.calendar import timeframe_seconds

    tf = model_timeframe(predictor)
    if tf is None:
        return None
    try:
        return timeframe_seconds(tf)
    except ValueError:
        return None


def _num(ts: pd.Timestamp | None, default: float) -> float:
    if ts is None:
        return default
    from mtl_bt.backtesting.feeds import bt_datenums

    return float(bt_datenums(pd.DatetimeIndex([ts]))[0])


class FoldSchedule:
    """Per bar (a Backtrader date number): the index of the fold model allowed on it."""

    def __init__(self, predictors: Sequence[Any], by_date: bool | None = None) -> None:
        single = len(predictors) == 1
        if by_date is None:  # daily and longer models: compare by the bar's session date
            seconds = model_bar_seconds(predictors[0]) if predictors else None
            by_date = seconds is not None and seconds >= 86400.0
        #: compare bars by their date (floor of the date number), not their time
        self.by_date = bool(by_date)
        windows = []
        for k, p in enumerate(predictors):
            fold = dict(getattr(p, "fold", None) or {})
            train_end, upper = fold_window(p, single)
            start = utc_ts(fold.get("test_start"))
            windows.append(
                (
                    k,
                    _num(train_end, -np.inf),
                    _num(start, -np.inf),
                    _num(upper, np.inf),
                )
            )
        # a later-trained model wins where windows overlap: apply in train_end order
        self._windows = sorted(windows, key=lambda w: w[1])
        #: train_end date number of each model (-inf when unknown)
        self.train_end = np.array([w[1] for w in windows], dtype=np.float64)
        # every window edge: strictly between two consecutive edges `at` is constant
        self._edges = sorted({e for w in windows for e in w[1:] if np.isfinite(e)})
        self._span = (np.inf, -np.inf, NO_FOLD)  # (lo, hi, fold): `at` on lo < t < hi

    def rows(self, datenums: np.ndarray) -> np.ndarray:
        """Fold index of every bar (NO_FOLD where no model may decide it)."""
        nums = np.asarray(datenums, dtype=np.float64)
        if self.by_date:
            nums = np.floor(nums)
        out = np.full(len(nums), NO_FOLD, dtype=np.int64)
        for k, train_end, start, upper in self._windows:
            out[(nums > train_end) & (nums >= start) & (nums <= upper)] = k
        return out

    def at(self, datenum: float) -> int:
        """Fold index of one bar (the per-bar lookup): from the span of the last lookup
        while ``datenum`` stays strictly between the same two window edges."""
        if self.by_date:
            datenum = float(math.floor(datenum))
        lo, hi, fold = self._span
        if lo < datenum < hi:
            return fold
        fold = self._at(datenum)
        i = bisect.bisect_right(self._edges, datenum)
        lo = self._edges[i - 1] if i else -np.inf
        if lo != datenum:  # on an edge itself the answer may differ from either side
            self._span = (lo, self._edges[i] if i < len(self._edges) else np.inf, fold)
        return fold

    def _at(self, datenum: float) -> int:
        fold = NO_FOLD
        for k, train_end, start, upper in self._windows:
            if train_end < datenum and start <= datenum <= upper:
                fold = k
        return fold
