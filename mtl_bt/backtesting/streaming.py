"""The streaming feature book: model inputs for feeds that are not preloaded.

``Cerebro(preload=False)``, ``replaydata``/``resampledata`` and live feeds
(``islive()``) hand the strategy one bar at a time. Per asset this book keeps a
bounded buffer of the bars delivered so far (``FeatureStream``), computes the
new bar's feature row when it arrives, and keeps the last ``lookback`` rows and
the closes the sizing volatility needs. Nothing grows with the length of the
run, so a live feed can run for months.

It answers the same questions as ``PreloadedBook`` (``advance``, ``ready``,
``inputs``, ``vol``), and on the same bars gives the same numbers: the tests run
both paths on the bundled data and compare every prediction and order.

With many assets (``batch``, default from ``BATCH_MIN_ASSETS`` feeds on) the rows of a
step are computed together: ``advance`` only reads the bar, and the first question about
a row (``ready``/``inputs``, or a second bar of an asset) runs one ``BatchStream.push``
over every asset that got a bar since, one vectorised update per feature. With few
assets each bar's row is computed on arrival by the asset's ``FeatureStream`` (scalar
updaters: cheaper than a numpy call per feature for one asset).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtl_bt.backtesting.bars import _EPOCH_NUM
from mtl_bt.backtesting.calendar import auto_calendar, seconds_per_year, stated_seconds
from mtl_bt.backtesting.feature_book import feature_engine, realised_vol, require_feeds
from mtl_bt.backtesting.inputs import sizing_lambda
from mtl_bt.errors import DataError
from mtl_bt.features.streaming import FeatureStream
from mtl_bt.metrics.volatility import LAMBDA, EwmaVariance, floored_vol

_DAY_US = 86_400_000_000
#: from this many feeds on, a step's feature rows are computed in one batch (see the module
#: docstring; ``python -m benchmarks.bench_streaming`` measures both engines vs assets)
BATCH_MIN_ASSETS = 8


def bar_micros(num: float) -> int:
    """``bars.datenum_micros`` of one Backtrader date number, on Python numbers (the same
    arithmetic: day and time of day apart, round half to even, snap within 10 us)."""
    days = float(math.floor(num))
    micros = int(days - _EPOCH_NUM) * _DAY_US + round((num - days) * 86_400_000_000.0)
    sub = micros % 1_000_000
    if sub < 10:
        return micros - sub
    if sub > 999_990:
        return micros + (1_000_000 - sub)
    return micros


def read_bar(data: Any) -> tuple[float, float, float, float, float, float]:
    """``bars.current_bar`` without a numpy call per bar: (UTC epoch us, OHLCV)."""
    return (
        float(bar_micros(float(data.datetime[0]))),
        float(data.open[0]),
        float(data.high[0]),
        float(data.low[0]),
        float(data.close[0]),
        float(data.volume[0]),
    )


def is_weekend(micros: int) -> bool:
    """Saturday or Sunday (UTC) of an epoch-microsecond time (1970-01-01 was a Thursday)."""
    return (micros // _DAY_US + 3) % 7 >= 5


class _Asset:
    __slots__ = (
        "closes",
        "days",
        "ewma",
        "ewma_vol",
        "finite",
        "last_close",
        "first_us",
        "last_us",
        "ppy",
        "rows",
        "spacings",
        "stream",
        "weekend",
    )

    def __init__(
        self,
        stream: FeatureStream | None,
        lookback: int,
        vol_window: int,
        ewma: bool = False,
        lam: float = LAMBDA,
    ) -> None:
        self.stream = stream
        # the EWMA recursion carried bar by bar (O(1) memory), as ewma_vol over the whole past
        self.ewma = EwmaVariance(lam) if ewma else None
        self.ewma_vol = float("nan")
        self.last_close = float("nan")
        self.rows: deque[np.ndarray] = deque(maxlen=lookback)
        self.finite: deque[bool] = deque(maxlen=lookback)  # row i has no NaN/inf
        self.closes: deque[float] = deque(maxlen=vol_window + 1)
        self.spacings: deque[int] = deque(maxlen=64)
        self.days: deque[list[int]] = deque(maxlen=64)  # [UTC day, bars that day]
        self.first_us: int | None = None
        self.last_us: int | None = None
        self.weekend = False
        self.ppy: float | None = None


class StreamingBook:
    """Feature rows computed bar by bar from each feed's delivered bars."""

    streaming = True

    def __init__(
        self,
        predictor: Any,
        symbols: Sequence[str],
        lookback: int,
        vol_window: int,
        keep_rows: bool = False,
        ewma: bool = False,
        batch: bool | None = None,
    ) -> None:
        self.lookback = lookback
        self._kept: list[list[np.ndarray]] | None = [[] for _ in symbols] if keep_rows else None
        self.vol_window = int(vol_window)
        self.symbols = list(symbols)
        spec, columns = predictor.feature_spec, predictor.feature_columns
        lam = sizing_lambda(predictor) if ewma else LAMBDA
        self.batch = len(self.symbols) >= BATCH_MIN_ASSETS if batch is None else bool(batch)
        engine = self.batch
        if spec.reads():  # cross-frame features: a step's rows once all its bars are read
            require_feeds(spec, self.symbols, getattr(predictor, "symbols", ()) or ())
            self.batch = True
        self.features = feature_engine(spec, self.symbols, columns, engine) if self.batch else None
        self.assets = [
            _Asset(
                None if self.batch else FeatureStream(spec, columns, s),
                lookback,
                self.vol_window,
                ewma,
                lam,
            )
            for s in self.symbols
        ]
        self.count = [0] * len(self.symbols)
        self._pending: dict[int, tuple[float, ...]] = {}

    @property
    def kept(self) -> list[list[np.ndarray]] | None:
        """With keep_rows, every computed feature row per asset (tests compare them)."""
        self.flush()
        return self._kept

    def flush(self) -> None:
        """Compute the rows of the bars read since the last flush (batch mode), one batch."""
        pending = self._pending
        if not pending:
            return
        self._pending = {}
        rows = self.features.push(list(pending), list(pending.values())).astype(np.float32)
        finite = np.isfinite(rows).all(axis=1).tolist()
        for i, a in enumerate(pending):
            self.assets[a].rows.append(rows[i])
            self.assets[a].finite.append(finite[i])
            if self._kept is not None:
                self._kept[a].append(rows[i])

    def advance(self, a: int, data: Any) -> int:
        """Read the feed's current bar and its feature row (batch mode: when first needed);
        its bar number."""
        bar = read_bar(data)
        asset = self.assets[a]
        us = int(bar[0])
        if asset.last_us is not None:
            if us <= asset.last_us:
                raise DataError(
                    f"feed {self.symbols[a]!r}: bar {self.count[a]} is not after the bar before "
                    "(zero spacing); for an intraday source give the feed timeframe= and "
                    "compression="
                )
            asset.spacings.append(us - asset.last_us)
        if asset.first_us is None:
            asset.first_us = us
            declare = getattr(self.features, "declare", None)
            if declare is not None:  # cross-frame features: the feed's stated bar size
                seconds = stated_seconds(data)
                declare(a, None if seconds is None else round(seconds * 1_000_000))
        asset.last_us = us
        asset.weekend = asset.weekend or is_weekend(us)
        day = us // _DAY_US
        if asset.days and asset.days[-1][0] == day:
            asset.days[-1][1] += 1
        else:
            asset.days.append([day, 1])
        if self.batch:
            if a in self._pending:
                self.flush()
            self._pending[a] = bar
        else:
            row = asset.stream.push(bar).astype(np.float32)
            asset.rows.append(row)
            asset.finite.append(bool(np.isfinite(row).all()))
            if self._kept is not None:
                self._kept[a].append(asset.rows[-1])
        asset.closes.append(bar[4])
        if asset.ewma is not None:
            # log return as log_returns computes it (NaN on the first bar), then one step
            logs = np.log(np.array([asset.last_close, bar[4]], dtype=np.float64))
            var = asset.ewma.push(float(logs[1] - logs[0]))
            asset.ewma_vol = float(floored_vol(var))
            asset.last_close = float(bar[4])
        self.count[a] += 1
        return self.count[a] - 1

    def ready(self, a: int, row: int) -> bool:
        if self._pending:
            self.flush()
        asset = self.assets[a]
        return len(asset.rows) == self.lookback and all(asset.finite)

    def inputs(self, a: int, row: int) -> np.ndarray:
        if self._pending:
            self.flush()
        rows = self.assets[a].rows
        return rows[-1] if self.lookback == 1 else np.stack(rows)

    def vol(self, a: int, row: int) -> float:
        closes = self.assets[a].closes
        if len(closes) <= self.vol_window:
            return float("nan")
        return float(realised_vol(np.fromiter(closes, np.float64), self.vol_window)[-1])

    def ewma_vol(self, a: int, row: int) -> float:
        """The EWMA per-bar vol forecast from the bars delivered so far (ewma=True only)."""
        return self.assets[a].ewma_vol

    def periods_per_year(self, a: int, data: Any, calendar: str) -> float:
        """Bars per year of asset ``a``, fixed at its first decision: the feed's stated bar
        size, else the most common spacing of the bars so far; ``calendar="auto"``: 24/7
        once a weekend bar was seen."""
        asset = self.assets[a]
        if asset.ppy is None:
            seconds = stated_seconds(data)
            if seconds is None:
                if not asset.spacings:
                    raise DataError(
                        f"feed {self.symbols[a]!r}: 1 bar so far, so its bar size cannot be "
                        "told; give the feed timeframe= and compression="
                    )
                values, counts = np.unique(np.asarray(asset.spacings), return_counts=True)
                seconds = float(values[np.argmax(counts)]) / 1e6
            warn_short = False
            if calendar == "auto":
                days = np.array([d for d, _ in asset.days])
                calendar = auto_calendar(days, np.array([n for _, n in asset.days]), seconds)
                seen = (asset.last_us or 0) - (asset.first_us or 0)
                warn_short = not asset.weekend and seen < 7 * _DAY_US
            # intraday exchange bars: bars per session counted per UTC day, as the preloaded
            # path counts them (over the days seen so far)
            per_session = None
            if seconds < 86400 and len(asset.days) > 1:
                per_session = max(1, int(round(float(np.median([n for _, n in asset.days])))))
            asset.ppy = seconds_per_year(seconds, calendar, per_session)  # type: ignore[arg-type]
            if warn_short:
                # no weekend bar in less than a week of bars proves nothing: a 24/7 market
                # would be annualised with more bars (vol targeting sizes by it)
                always = seconds_per_year(seconds, "24/7", None)
                warnings.warn(
                    f"feed {self.symbols[a]!r}: calendar='auto' chose 'exchange' "
                    f"({asset.ppy:g} bars a year) from {seen / _DAY_US:.1f} days of bars with no "
                    f"weekend bar; if the market trades 24/7 ({always:g} bars a year), set "
                    "calendar='24/7' (backtest.calendar, or MTLStrategy's calendar=)",
                    stacklevel=2,
                )
        return asset.ppy
