"""Cross-frame feature rows computed as bars arrive, equal to ``compute`` bit for bit.

``CrossStream`` keeps, per source (a symbol's bars, or its higher-timeframe bars being built),
the feature function's updater and the last few rows with the time each became available;
a target's row takes, per source, the newest row available at the target bar's label, as
``mtl_bt.features.frames.cross_values`` does on whole frames. Every feed's bars must reach it
(``push``) before the rows that may read them are asked for (``row``): a step's bars first,
then its rows. ``CrossRows`` combines it with ``BatchStream`` for the single-frame features
and has ``BatchStream.push``'s signature, so the streaming book uses either.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import DataError, PluginError
from mtl_bt.features.base import declared_columns, declared_warmup
from mtl_bt.features.frames import (
    Reads,
    micros_of,
    period_key,
    period_us,
    refuse_bar_sizes,
    zone,
)
from mtl_bt.features.spec import FeatureSpec, feature_fn
from mtl_bt.features.streaming import (
    _FIELDS,
    BarBuffer,
    BatchStream,
    FeatureStream,
    _Recompute,
    feature_window,
    picked_columns,
)


class _Source:
    """One source's rows as its bars close (a higher timeframe: as its periods close)."""

    def __init__(self, name: str, fn: Any, params: dict[str, Any], reads: Reads, symbol: str):
        factory = getattr(fn, "stream", None)
        if factory is not None:
            self.updater = factory(**params)
        else:
            self.updater = _Recompute(name, fn, params, feature_window(name, fn, params), symbol)
        self.width = len(declared_columns(name, fn, params))
        self.bars = BarBuffer(int(getattr(self.updater, "window", 1)))
        self.warmup = declared_warmup(name, fn, params)
        self.size = period_us(reads.timeframe, name) if reads.timeframe else None
        self.tz = zone(reads.tz, name) if reads.timeframe else None
        self.key: int | None = None
        self.period: list[Any] = []  # label, open, high, low, close, volume so far
        self.end = -1  # label of the source's newest bar (rows come in time order)
        #: (available from, row number, values as Python floats), newest last
        self.history: deque[tuple[int, int, list[float]]] = deque(maxlen=8)
        self.rows = 0
        self.nan = [math.nan] * self.width

    def push(self, bar: tuple[float, ...]) -> None:
        us = int(bar[0])
        if us <= self.end:
            raise DataError(
                f"a source bar at {pd.Timestamp(us, unit='us', tz='UTC')} came out of order"
            )
        self.end = us
        if self.size is None:
            self._emit(bar, us)
            return
        key = period_key(us, self.size, self.tz)
        p = self.period
        if self.key is not None and key != self.key:  # the period before closed: emit it
            self._emit((p[0], p[1], p[2], p[3], p[4], p[5]), us)
            p = []
        if not p:
            self.period = [bar[0], bar[1], bar[2], bar[3], bar[4], 0.0 + bar[5]]
        else:
            p[2] = p[2] if p[2] >= bar[2] else bar[2]
            p[3] = p[3] if p[3] <= bar[3] else bar[3]
            p[4] = bar[4]
            p[5] += bar[5]
        self.key = key

    def _emit(self, bar: tuple[float, ...], available: int) -> None:
        self.bars.append(bar)
        values = np.asarray(self.updater.update(self.bars), dtype=np.float64).tolist()
        if len(values) != self.width:
            raise PluginError(f"a feature updater returned {len(values)} values, not {self.width}")
        if self.rows < self.warmup:
            values = self.nan
        self.history.append((available, self.rows, values))
        self.rows += 1

    def at(self, us: int) -> tuple[int, list[float]]:
        """(row number, values) of the newest row available at ``us`` ((-1, NaN): none)."""
        for available, row, values in reversed(self.history):
            if available <= us:
                return row, values
        if self.history and len(self.history) == self.history.maxlen:
            raise DataError(
                "cross-frame rows were asked for out of order; push a step's bars first"
            )
        return -1, self.nan


class CrossStream:
    """The cross-frame columns (``spec.cross_columns()``) of every symbol, bar by bar."""

    def __init__(self, spec: FeatureSpec, symbols: Sequence[str]) -> None:
        self.symbols = list(symbols)
        index = {s: i for i, s in enumerate(self.symbols)}
        self.columns = spec.cross_columns()
        self._feeds: list[list[_Source]] = [[] for _ in self.symbols]
        #: (sources by target, or one shared list; all_symbols; staleness)
        self._parts: list[tuple[Any, bool, bool]] = []
        params = spec.resolved_params()
        for name, reads in spec.reads().items():
            fn = feature_fn(name)

            def source(s: str, name: str = name, fn: Any = fn, reads: Reads = reads) -> _Source:
                if s not in index:
                    raise DataError(
                        f"feature {name!r} reads {s!r}, which has no feed in this run "
                        f"{self.symbols}; add a feed named {s!r}"
                    )
                made = _Source(name, fn, params[name], reads, s)
                self._feeds[index[s]].append(made)
                return made

            if reads.all_symbols:
                self._parts.append(([source(s) for s in self.symbols], True, False))
            elif reads.symbol is not None:
                one = source(reads.symbol)
                self._parts.append(([one] * len(self.symbols), False, bool(reads.staleness)))
            else:
                own = [source(s) for s in self.symbols]
                self._parts.append((own, False, bool(reads.staleness)))
        n = len(self._parts)
        self._last = [[-1] * len(self.symbols) for _ in range(n)]
        self._stale = [[0.0] * len(self.symbols) for _ in range(n)]
        # another symbol's bars are read as they are only at the target's bar size (see
        # frames.same_bar_size): (feature, source, target) pairs, in the order compute
        # meets them (target, then feature, then source), checked as the sizes become known
        self._pairs: list[tuple[str, int, int]] = []
        for t in range(len(self.symbols)):
            for name, reads in spec.reads().items():
                if reads.timeframe is not None:
                    continue  # a higher timeframe: causal at any bar size
                if reads.all_symbols:
                    read = list(range(len(self.symbols)))
                elif reads.symbol is not None:
                    read = [index[reads.symbol]]
                else:
                    read = []
                self._pairs.extend((name, s, t) for s in read if s != t)
        feeds = len(self.symbols)
        #: per feed: bars so far, the last bar's time, the smallest positive spacing so far
        #: (its bar size once 3 bars are in, as frames.bar_size), the feed's stated size
        self._count = [0] * feeds
        self._prev = [0] * feeds
        self._step: list[int | None] = [None] * feeds
        self._stated: list[int | None] = [None] * feeds

    def declare(self, a: int, size_us: int | None) -> None:
        """Symbol ``a``'s feed states its bar size (``None``: it does not): two symbols that
        read each other with stated sizes that differ are refused before their first bar."""
        self._stated[a] = None if size_us is None else int(size_us)
        self._check_sizes(self._stated)

    def _check_sizes(self, sizes: Sequence[int | None]) -> None:
        for name, s, t in self._pairs:
            refuse_bar_sizes(name, self.symbols[s], sizes[s], self.symbols[t], sizes[t])

    def _bar_sizes(self) -> list[int | None]:
        return [step if n >= 3 else None for step, n in zip(self._step, self._count, strict=True)]

    def push(self, a: int, bar: tuple[float, ...]) -> None:
        """A bar of symbol ``a`` closed ``(utc_epoch_us, open, high, low, close, volume)``."""
        if self._pairs:  # its bar size so far; refused as soon as it differs (as compute does)
            us = int(bar[0])
            n = self._count[a] = self._count[a] + 1
            step, self._prev[a] = us - self._prev[a], us
            smallest = self._step[a]
            smaller = n > 1 and step > 0 and (smallest is None or step < smallest)
            if smaller:
                self._step[a] = step
            if n >= 3 and (smaller or n == 3):
                self._check_sizes(self._bar_sizes())
        for src in self._feeds[a]:
            src.push(bar)

    def row(self, a: int, us: int) -> list[float]:
        """The cross-frame columns of symbol ``a``'s bar labelled ``us`` (Python floats: the
        same IEEE operations as ``cross_values``' numpy ones, without a numpy call each)."""
        out: list[float] = []
        last, ages = self._last, self._stale
        for k, (sources, mean, stale) in enumerate(self._parts):
            if mean:
                width = sources[0].width
                total = [0.0] * width
                count = [0] * width
                for src in sources:
                    for j, x in enumerate(src.at(us)[1]):
                        if -math.inf < x < math.inf:  # finite: added, in the symbols' order
                            total[j] += x
                            count[j] += 1
                out.extend(t / c if c else math.nan for t, c in zip(total, count, strict=True))
                continue
            row, values = sources[a].at(us)
            out.extend(values)
            if stale:
                if row < 0:
                    age = math.nan
                elif row != last[k][a]:
                    age = 0.0
                else:
                    age = ages[k][a] + 1.0
                last[k][a] = row
                ages[k][a] = age
                out.append(age)
        return out


class CrossRows:
    """``BatchStream`` for a spec with cross-frame features: the same ``push(idx, bars)``, every
    bar also reaching the cross-frame sources before any row of the step is computed."""

    def __init__(
        self,
        spec: FeatureSpec,
        symbols: Sequence[str],
        columns: Sequence[str] | None = None,
        batch: bool = True,
    ) -> None:
        self.symbols = list(symbols)
        all_columns = spec.columns()
        self.columns, pick = picked_columns(all_columns, columns)
        local = spec.local()
        #: the single-frame part: one BatchStream, or (batch=False, few assets: cheaper) one
        #: FeatureStream per asset
        self.local: Any = None
        self.scalar: list[FeatureStream] | None = None
        if local is not None and batch:
            self.local = BatchStream(local, self.symbols)
        elif local is not None:
            self.scalar = [FeatureStream(local, symbol=s) for s in self.symbols]
        local_cols = local.columns() if local is not None else []
        self.cross = CrossStream(spec, self.symbols)
        order = local_cols + self.cross.columns  # the row before reordering to all_columns
        where = np.array([order.index(c) for c in all_columns], dtype=np.int64)
        self._take = where[pick]
        self.width = len(self.columns)

    def declare(self, a: int, size_us: int | None) -> None:
        """Feed ``a``'s stated bar size (``CrossStream.declare``)."""
        self.cross.declare(a, size_us)

    def push(self, idx: Sequence[int], bars: Sequence[Sequence[float]]) -> np.ndarray:
        bars = [tuple(map(float, b)) for b in bars]
        ids = [int(i) for i in idx]
        if self.local is not None:
            local = self.local.push(ids, bars)
        elif self.scalar is not None:
            local = np.array([self.scalar[a].push(bar) for a, bar in zip(ids, bars, strict=True)])
        else:
            local = np.zeros((len(ids), 0))
        for a, bar in zip(ids, bars, strict=True):
            self.cross.push(a, bar)
        cross = [self.cross.row(a, int(bar[0])) for a, bar in zip(ids, bars, strict=True)]
        full = np.concatenate([local, np.array(cross).reshape(len(ids), -1)], axis=1)
        return full[:, self._take]


def cross_frames(
    spec: FeatureSpec,
    frames: Mapping[str, pd.DataFrame],
    columns: Sequence[str] | None = None,
    batch: bool = True,
) -> dict[str, np.ndarray]:
    """Every row of each frame computed bar by bar (``CrossRows``), the symbols' bars merged
    by time: a step delivers the bars of the symbols that have one then (their calendars
    may differ). Equal to ``compute(frame, spec, frames)`` per symbol."""
    symbols = list(frames)
    stream = CrossRows(spec, symbols, columns, batch)
    times = [micros_of(f.index) for f in frames.values()]
    values = [f[list(_FIELDS)].to_numpy(np.float64) for f in frames.values()]
    pos = [0] * len(symbols)
    rows: list[list[np.ndarray]] = [[] for _ in symbols]
    for now in np.unique(np.concatenate(times)) if symbols else []:
        idx = [a for a in range(len(symbols)) if pos[a] < len(times[a]) and times[a][pos[a]] == now]
        out = stream.push(idx, [(float(now), *values[a][pos[a]]) for a in idx])
        for i, a in enumerate(idx):
            rows[a].append(out[i])
            pos[a] += 1
    return {
        s: np.array(r).reshape(len(r), stream.width) for s, r in zip(symbols, rows, strict=True)
    }
