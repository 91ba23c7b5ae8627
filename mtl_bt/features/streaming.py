"""Feature rows computed as bars arrive: the streaming path for feeds that are not preloaded.

Replay, live feeds and ``Cerebro(preload=False)`` deliver one bar at a time, so
there is no whole frame to compute features on. Two engines compute the new bar's row,
both equal to the vectorised ``compute`` bit for bit:

- ``FeatureStream``: one asset, feature by feature. A feature with a ``stream``
  updater (``@feature(stream=...)``) updates its state from the newest bar: the
  built-ins keep their last ``window`` values as Python floats and redo each window's
  arithmetic in the order ``mtl_bt.features.ops`` does (recursive averages: pandas'
  ``ewm(adjust=False)`` recursion, ``Ewm``). Any other feature is recomputed over the
  last ``window`` bars (declared with ``@feature(window=...)``, default ``warmup + 1``)
  and its last row kept (``_Recompute``): exact for a feature whose row t reads bars
  t-warmup..t only.
- ``BatchStream``: many assets, a step's bars at once; a feature with a ``batch``
  updater (every built-in) is updated for all the step's assets in one vectorised pass
  over a (window, assets) matrix; others run their per-asset updater asset by asset.

``check_stream(spec, frame)`` says whether a spec (a third-party feature
included) streams to the same rows as the vectorised ``compute`` on a frame;
``batch_frames`` runs frames through ``BatchStream``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import reduce
from operator import add
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt import registry
from mtl_bt.errors import DataError, PluginError
from mtl_bt.features.base import declared_columns, declared_warmup
from mtl_bt.features.spec import FeatureSpec, compute, feature_fn, plugin_name
from mtl_bt.plugin_calls import calling, feature_named

_FIELDS = ("open", "high", "low", "close", "volume")


def _index(micros: np.ndarray) -> pd.DatetimeIndex:
    """UTC index of epoch microseconds, in the unit and name of a preloaded feed's frame
    (``backtesting.bars.preloaded_frame``), so a feature sees the same index on both paths."""
    index = pd.to_datetime(np.asarray(micros).astype(np.int64), unit="us", utc=True)
    return pd.DatetimeIndex(index.as_unit("us"), name="datetime")


class BarBuffer:
    """The newest ``size`` bars of one asset (UTC epoch microseconds + OHLCV), oldest first.

    Stored in arrays of twice the size, shifted down when full: O(1) amortised
    per bar and ``tail(k)`` is a view, not a copy. ``bar`` is the newest bar as a
    tuple of Python floats and ``memo`` a dict emptied at every bar (updaters of one
    asset share per-bar values there, e.g. the log of the close). With ``size=0``
    no arrays are kept: only ``bar``, ``memo`` and ``count`` (every updater of the
    stream reads the newest bar only and keeps its own history).
    """

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self._data = np.empty((6, 2 * self.size), dtype=np.float64)
        self._n = 0  # bars held in _data
        self.count = 0  # bars seen since the start
        self.bar: tuple[float, ...] = ()
        self.memo: dict[str, float] = {}

    def append(self, bar: Sequence[float]) -> None:
        self.bar = bar if type(bar) is tuple else tuple(bar)
        self.memo = {}
        self.count += 1
        if not self.size:
            return
        if self._n == self._data.shape[1]:
            keep = self.size - 1
            self._data[:, :keep] = self._data[:, self._n - keep : self._n]
            self._n = keep
        self._data[:, self._n] = bar
        self._n += 1

    def __len__(self) -> int:
        return min(self._n, self.size)

    def tail(self, k: int) -> np.ndarray:
        """(6, min(k, held)) view: rows time (epoch us), open, high, low, close, volume."""
        k = min(int(k), len(self))
        return self._data[:, self._n - k : self._n]

    def column(self, name: str, k: int) -> np.ndarray:
        return self.tail(k)[1 + _FIELDS.index(name)]

    def last(self, name: str) -> float:
        return self.bar[1 + _FIELDS.index(name)]

    def frame(self, k: int, symbol: str) -> pd.DataFrame:
        """The last ``k`` bars as a canonical frame (what a feature function receives):
        indexed by the bars' real UTC times, as the preloaded frame of the same bars is."""
        t = self.tail(k)
        frame = pd.DataFrame({c: t[1 + i] for i, c in enumerate(_FIELDS)}, index=_index(t[0]))
        frame.attrs = {"symbol": symbol}
        return frame


def pandas_alpha(alpha: float) -> float:
    """The smoothing factor pandas really uses for ``ewm(alpha=alpha)``: it converts alpha
    to a centre of mass and back, ``1 / (1 + (1 - alpha) / alpha)``, which differs from
    alpha in the last bit for some values (1/6, 1/3, ...)."""
    alpha = float(alpha)
    return 1.0 / (1.0 + (1.0 - alpha) / alpha)


class Ewm:
    """``pd.Series.ewm(alpha, adjust=False).mean()`` one value at a time, bit for bit
    (seeded at the first non-NaN value; a NaN input keeps the average and decays the
    weight of the old average, as pandas does with ``ignore_na=False``)."""

    __slots__ = ("_factor", "_old", "alpha", "value")

    def __init__(self, alpha: float) -> None:
        self.alpha = pandas_alpha(alpha)
        self._factor = 1.0 - self.alpha
        self._old = 1.0
        self.value = float("nan")

    def update(self, x: float) -> float:
        w = self.value
        if w == w:
            self._old *= self._factor
            if x == x:
                if w != x:
                    self.value = (self._old * w + self.alpha * x) / (self._old + self.alpha)
                self._old = 1.0
        elif x == x:
            self.value = x
        return self.value


# -- scalar window arithmetic: the operations of ``mtl_bt.features.ops`` on one window --------


def window_sum(values: Iterable[float]) -> float:
    """The window's values added one at a time, oldest first: ``ops._window_sum``'s
    additions on Python floats (not ``sum()``, which compensates since Python 3.12)."""
    return reduce(add, values)


def window_std(values: Sequence[float], ddof: int) -> float:
    """``ops.rolling_std`` of one full window: two passes, squares added oldest first."""
    mu = reduce(add, values) / len(values)
    return math.sqrt(reduce(add, [(v - mu) * (v - mu) for v in values]) / (len(values) - ddof))


def maximum(x: float, floor: float) -> float:
    """``np.maximum(x, floor)`` for one value (NaN propagates)."""
    return x if x >= floor or x != x else floor


def safe_div(num: float, den: float, tiny: float, fill: float) -> float:
    """``ops.safe_div`` for one value: ``fill`` where |den| <= tiny (NaN stays NaN)."""
    return fill if abs(den) <= tiny else num / den


def log(x: float) -> float:
    """numpy's log of one value (``math.log`` may differ from numpy's in the last bit)."""
    return float(np.log(x))


def log_close(bars: BarBuffer) -> float:
    """log of the newest close, computed once per bar for all updaters of the asset."""
    memo = bars.memo
    value = memo.get("log_close")
    if value is None:
        value = memo["log_close"] = float(np.log(bars.bar[4]))
    return value


class TailStream:
    """Updater for a window feature written as a numpy core over columns: the core runs
    on the last ``window`` bars and the last value of each output is the new row.

    ``core(*columns) -> sequence of arrays``; the columns are ``fields`` of the bars.
    The built-in rolling features use it with the same core as their vectorised
    function, so both paths run the same arithmetic on the same window.
    """

    def __init__(self, core: Any, fields: Sequence[str], window: int) -> None:
        self.core, self.fields, self.window = core, tuple(fields), int(window)

    def update(self, bars: BarBuffer) -> list[float]:
        cols = [bars.column(f, self.window) for f in self.fields]
        return [float(out[-1]) for out in self.core(*cols)]


def feature_window(name: str, fn: Any, params: dict[str, Any]) -> int:
    """Bars the streaming path recomputes a feature over (its newest row is exact)."""
    hook = getattr(fn, "window", None)
    if hook is None:
        return declared_warmup(name, fn, params) + 1
    value = hook(**params) if callable(hook) else hook
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PluginError(f"feature {name!r} declared window {value!r}; expected an int >= 1")
    return value


class _Recompute:
    """Fallback updater: the feature function over the last ``window`` bars."""

    def __init__(self, name: str, fn: Any, params: dict[str, Any], window: int, symbol: str):
        self.name, self.fn, self.params, self.window, self.symbol = name, fn, params, window, symbol
        self.columns = declared_columns(name, fn, params)
        self.plugin = plugin_name(name)
        #: a third-party plugin's exception names it (plugin_calls), as compute's does
        self.builtin = registry.is_builtin("feature", self.plugin)

    def update(self, bars: BarBuffer) -> Sequence[float]:
        frame = bars.frame(self.window, self.symbol)
        if self.builtin:
            out = self.fn(frame, **self.params)
        else:
            out = calling(
                lambda: feature_named(self.name),
                str(frame.attrs.get("symbol", self.symbol)),
                lambda: self.fn(frame, **self.params),
            )
        if not isinstance(out, pd.DataFrame) or list(out.columns) != self.columns:
            raise PluginError(f"feature {self.name!r} returned columns other than {self.columns}")
        return out.to_numpy(dtype=np.float64)[-1]


class _PluginUpdater:
    """A third-party feature's own updater (``stream=`` or ``batch=``), called as compute
    calls its function: an exception names the feature, its plugin and the symbol(s), and
    an update of the wrong width is refused naming them (a built-in's updater is not
    wrapped: its failure is mtl-bt's bug, seen with its traceback)."""

    def __init__(self, updater: Any, name: str, width: int, where: Callable[[Any], str]):
        self.inner, self.name, self.width, self._where = updater, name, width, where
        self.window = getattr(updater, "window", 1)

    def named(self) -> str:
        return feature_named(self.name)

    def update(self, bars: Any) -> Any:
        out = calling(self.named, lambda: self._where(bars), lambda: self.inner.update(bars))
        try:
            width = len(out)
        except TypeError:
            width = -1
        if width != self.width:
            raise PluginError(
                f"{self.named()}: its streaming updater returned "
                f"{'a ' + type(out).__name__ if width < 0 else width} values on "
                f"{self._where(bars)}, not one per column ({self.width}); fix the plugin"
            )
        if isinstance(bars, BatchBars):  # a batch updater: a column is one value per asset
            n = len(bars.idx)
            for col in out:
                if np.shape(col) != (n,):
                    raise PluginError(
                        f"{self.named()}: its batch updater returned a column of shape "
                        f"{np.shape(col)} on {self._where(bars)}, not one value per asset "
                        f"({n},); fix the plugin"
                    )
        return out


def _updater(
    name: str,
    factory: Callable[..., Any],
    args: Sequence[Any],
    params: dict[str, Any],
    width: int,
    where: Callable[[Any], str],
    symbols: str,
) -> Any:
    """``factory(*args, **params)``: a built-in's updater as it is, a third-party one wrapped
    (``_PluginUpdater``), its construction's exception naming it as well."""
    if registry.is_builtin("feature", plugin_name(name)):
        return factory(*args, **params)
    made = calling(lambda: feature_named(name), symbols, lambda: factory(*args, **params))
    return _PluginUpdater(made, name, width, where)


def picked_columns(
    all_columns: list[str], columns: Sequence[str] | None
) -> tuple[list[str], np.ndarray]:
    """The columns a stream returns (default: all the spec computes) and their positions
    among ``all_columns``; a column the spec does not compute is an error."""
    picked = list(columns) if columns is not None else all_columns
    missing = [c for c in picked if c not in all_columns]
    if missing:
        raise PluginError(f"feature spec does not compute columns {missing}")
    return picked, np.array([all_columns.index(c) for c in picked], dtype=np.int64)


class FeatureStream:
    """One asset's causal feature rows, computed bar by bar (see the module docstring)."""

    def __init__(
        self,
        spec: FeatureSpec,
        columns: Sequence[str] | None = None,
        symbol: str = "",
        factories: Mapping[str, Callable[..., Any] | None] | None = None,
    ) -> None:
        self.spec = spec
        self.symbol = symbol
        all_columns = spec.columns()
        self.columns, self._pick = picked_columns(all_columns, columns)
        self._updaters: list[Any] = []
        self._widths: list[int] = []
        window = 0
        for name, params in spec.resolved_params().items():
            fn = feature_fn(name)
            if factories is not None and name in factories:
                factory = factories[name]  # benchmarks: another updater for this feature
            else:
                factory = getattr(fn, "stream", None)
            width = len(declared_columns(name, fn, params))
            if factory is not None:
                updater = _updater(
                    name, factory, (), params, width, lambda bars, s=symbol: s, symbol
                )
            else:
                updater = _Recompute(name, fn, params, feature_window(name, fn, params), symbol)
            # an updater reads at most its ``window`` newest bars from the buffer's arrays
            # (default 1: the new bar; 0: only ``bars.bar``, it keeps its own history)
            window = max(window, int(getattr(updater, "window", 1)))
            self._updaters.append(updater)
            self._widths.append(width)
        self.volume = bool(spec.uses_volume())
        #: bars the stream keeps (the longest window an updater reads)
        self.window = window
        self.bars = BarBuffer(window)
        self._all = self.columns == all_columns
        self._width = len(all_columns)
        self._updates = [u.update for u in self._updaters]

    def push(self, bar: Sequence[float]) -> np.ndarray:
        """Add one bar ``(utc_epoch_us, open, high, low, close, volume)``; its feature row."""
        bar = tuple(map(float, bar))
        self._check(bar)
        bars = self.bars
        bars.append(bar)
        values: list[float] = []
        for update in self._updates:
            values.extend(update(bars))
        row = np.array(values, dtype=np.float64)
        if len(row) != self._width:
            raise PluginError(
                f"feature updaters returned {len(row)} values for {self._width} columns"
            )
        return row if self._all else row[self._pick]

    def _check(self, bar: Sequence[float]) -> None:
        check_bar(bar, self.symbol, self.bars.count, self.volume)


def check_bar(bar: Sequence[float], symbol: str, count: int, volume: bool) -> None:
    """DataError unless the prices are finite and > 0 (and the volume, if used, >= 0).
    ``count``: bars of the asset before this one (named in the message)."""
    _, o, h, lo, c, v = bar
    if not (
        0.0 < o < math.inf and 0.0 < h < math.inf and 0.0 < lo < math.inf and 0.0 < c < math.inf
    ):
        prices = bar[1:5]
        when = _index(np.array([bar[0]]))[0]
        col, value = next(
            (c, p) for c, p in zip(_FIELDS, prices, strict=False) if not (np.isfinite(p) and p > 0)
        )
        raise DataError(
            f"{symbol}: {col} is {value} at {when} (bar {count}); prices must "
            "be finite and > 0. Fix or drop that bar"
        )
    if volume and not (0.0 <= v < math.inf):
        raise DataError(
            f"{symbol}: volume is {bar[5]} at bar {count}, but the volume features need a real volume"
        )


# -- many assets at once: one vectorised update per feature over the assets of a step ------


class BatchBars:
    """One step's new bars for a subset of the assets, as arrays over that subset.

    ``idx``: the assets (ints, ascending or in arrival order); ``all``: True when ``idx`` is
    every asset in order (updaters may then use slices instead of fancy indexing);
    ``open`` ... ``volume``: the new bars' values; ``count``: bars of each asset so far,
    this one included; ``memo``: per-step values shared between updaters (``log_close``).
    """

    __slots__ = ("all", "close", "count", "high", "idx", "low", "memo", "open", "volume")

    def __init__(self, idx: np.ndarray, values: np.ndarray, count: np.ndarray, all_: bool):
        self.idx, self.count, self.all = idx, count, all_
        self.open, self.high, self.low, self.close, self.volume = values[1:]
        self.memo: dict[str, np.ndarray] = {}

    def sel(self) -> slice | np.ndarray:
        """Index of these assets into per-asset state arrays."""
        return slice(None) if self.all else self.idx


def batch_log_close(bars: BatchBars) -> np.ndarray:
    """np.log of the new closes, once per step for every updater that needs it."""
    value = bars.memo.get("log_close")
    if value is None:
        value = bars.memo["log_close"] = np.log(bars.close)
    return value


class Windows:
    """The last ``w`` values of a per-bar series for every asset, oldest first: a (w, n)
    matrix shifted by one row when a bar arrives (NaN before ``w`` values came)."""

    def __init__(self, n: int, w: int) -> None:
        self.w = int(w)
        self.m = np.full((self.w, n), np.nan)

    def push(self, bars: BatchBars, values: np.ndarray) -> np.ndarray:
        """Append the step's values; the (w, len(idx)) windows of those assets."""
        m = self.m
        if bars.all:
            m[:-1] = m[1:]
            m[-1] = values
            return m
        x = m[:, bars.idx]
        x[:-1] = x[1:]
        x[-1] = values
        m[:, bars.idx] = x
        return x


def window_sums(x: np.ndarray) -> np.ndarray:
    """Column sums of (w, k) windows, rows added oldest first: ``ops._window_sum``'s order.

    ``np.add.accumulate`` along the rows is that order by definition (row i is row i-1
    plus x[i]); ``x.sum(axis=0)`` is not guaranteed to be (numpy may sum pairwise)."""
    return np.add.accumulate(x, axis=0)[-1]


def window_stds(x: np.ndarray, mean: np.ndarray, ddof: int) -> np.ndarray:
    """``ops.rolling_std`` of (w, k) windows with their ``mean`` (two-pass, same order)."""
    d = x - mean
    d *= d  # numpy's ``** 2`` on float64 is this product
    return np.sqrt(np.add.accumulate(d, axis=0)[-1] / (len(x) - ddof))


class EwmBatch:
    """``Ewm`` for many assets: the same recursion, elementwise over the step's assets."""

    def __init__(self, n: int, alpha: float) -> None:
        self.alpha = pandas_alpha(alpha)
        self._factor = 1.0 - self.alpha
        self.value = np.full(n, np.nan)
        self.old = np.ones(n)

    def update(self, bars: BatchBars, x: np.ndarray) -> np.ndarray:
        sel = bars.sel()
        w, old = self.value[sel], self.old[sel]
        has, seen = w == w, x == x
        # old + alpha > 0, and NaN arithmetic does not warn: no errstate needed
        if has.all() and seen.all():  # the usual step: every average seeded, every x a number
            old = old * self._factor
            value = np.where(w != x, (old * w + self.alpha * x) / (old + self.alpha), w)
            self.value[sel] = value
            self.old[sel] = 1.0
            return value
        old = np.where(has, old * self._factor, old)
        mixed = (old * w + self.alpha * x) / (old + self.alpha)
        value = np.where(has, np.where(seen & (w != x), mixed, w), np.where(seen, x, w))
        self.value[sel] = value
        self.old[sel] = np.where(has & seen, 1.0, old)
        return value


class BatchStream:
    """Feature rows of many assets, a step's new bars at once (``push(idx, bars)``).

    A feature with a ``batch`` updater (``@feature(batch=...)``: ``factory(n_assets,
    **params)`` whose ``update(bars: BatchBars)`` returns one array per column over the
    step's assets) is updated once per step for all its assets; every built-in has one, with
    the arithmetic of its vectorised function, so rows are bit-identical. Any other
    feature runs its per-asset updater (``stream`` or the recompute fallback) asset by
    asset. Assets may get their bars at different steps (different calendars, live feeds):
    each step updates only the assets in ``idx``.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        symbols: Sequence[str],
        columns: Sequence[str] | None = None,
        factories: Mapping[str, Callable[..., Any] | None] | None = None,
    ) -> None:
        self.symbols = list(symbols)
        n = len(self.symbols)
        all_columns = spec.columns()
        self.columns, self._pick = picked_columns(all_columns, columns)
        self._all = self.columns == all_columns
        self.volume = bool(spec.uses_volume())
        #: (column offset, width, batch updater or None, per-asset updaters or None)
        self._parts: list[tuple[int, int, Any, list[Any] | None]] = []
        window, j = 0, 0
        for name, params in spec.resolved_params().items():
            fn = feature_fn(name)
            width = len(declared_columns(name, fn, params))
            batch = getattr(fn, "batch", None)
            if batch is not None and not (factories is not None and name in factories):
                symbols_of = self._symbols_of
                made = _updater(name, batch, (n,), params, width, symbols_of, str(self.symbols))
                self._parts.append((j, width, made, None))
            else:
                factory = (
                    factories[name]
                    if factories is not None and name in factories
                    else getattr(fn, "stream", None)
                )
                per = [
                    _updater(name, factory, (), params, width, lambda bars, s=s: s, s)
                    if factory is not None
                    else _Recompute(name, fn, params, feature_window(name, fn, params), s)
                    for s in self.symbols
                ]
                window = max([window, *(int(getattr(u, "window", 1)) for u in per)])
                self._parts.append((j, width, None, per))
            j += width
        self.width = j
        self.count = np.zeros(n, dtype=np.int64)
        self._per_asset = any(per is not None for *_, per in self._parts)
        self.buffers = [BarBuffer(window) for _ in self.symbols] if self._per_asset else []
        self._every = np.arange(n)

    def push(self, idx: Sequence[int], bars: Sequence[Sequence[float]]) -> np.ndarray:
        """The new bars ``(utc_epoch_us, open, high, low, close, volume)`` of assets ``idx``
        (each at most once); their feature rows, (len(idx), columns)."""
        ids = np.asarray(idx, dtype=np.int64)
        values = np.array(bars, dtype=np.float64).reshape(len(ids), 6).T.copy()
        checked = values[1:6] if self.volume else values[1:5]
        bad_volume = self.volume and bool((values[5] < 0).any())
        if not (checked < math.inf).all() or not (values[1:5] > 0).all() or bad_volume:
            self._refuse(ids, values)
        every = len(ids) == len(self.symbols) and bool((ids == self._every).all())
        if not every and len(np.unique(ids)) != len(ids):
            raise ValueError("an asset got two bars in one step; push them one step at a time")
        self.count[ids] += 1
        step = BatchBars(ids, values, self.count[ids], every)
        out = np.empty((len(ids), self.width), dtype=np.float64)
        if self._per_asset:
            for i, a in enumerate(ids.tolist()):
                self.buffers[a].append(tuple(values[:, i].tolist()))
        for j, width, batch, per in self._parts:
            if batch is not None:
                cols = batch.update(step)
                if len(cols) != width:
                    raise PluginError(f"a batch updater returned {len(cols)} columns, not {width}")
                for k, col in enumerate(cols):
                    out[:, j + k] = col
            else:
                for i, a in enumerate(ids.tolist()):
                    out[i, j : j + width] = per[a].update(self.buffers[a])
        return out if self._all else out[:, self._pick]

    def _symbols_of(self, step: BatchBars) -> str:
        """The symbols of a step's assets, for a message."""
        return ", ".join(self.symbols[a] for a in np.asarray(step.idx).tolist())

    def _refuse(self, ids: np.ndarray, values: np.ndarray) -> None:
        for i, a in enumerate(ids.tolist()):
            check_bar(
                tuple(values[:, i].tolist()), self.symbols[a], int(self.count[a]), self.volume
            )


def stream_frame(
    spec: FeatureSpec, frame: pd.DataFrame, columns: Sequence[str] | None = None
) -> np.ndarray:
    """Every row of ``frame`` computed by the streaming path (bar by bar)."""
    stream = FeatureStream(spec, columns, str(frame.attrs.get("symbol", "")))
    nums = pd.DatetimeIndex(frame.index).tz_convert("UTC").as_unit("us").asi8.astype(np.float64)
    values = frame[list(_FIELDS)].to_numpy(np.float64)
    return np.array([stream.push((nums[i], *values[i])) for i in range(len(frame))])


def batch_frames(
    spec: FeatureSpec, frames: Sequence[pd.DataFrame], columns: Sequence[str] | None = None
) -> list[np.ndarray]:
    """Every row of each frame computed by ``BatchStream``, the assets' bars merged by time:
    a step delivers the bars of the assets that have one at that time (frames may have
    different calendars)."""
    stream = BatchStream(
        spec, [str(f.attrs.get("symbol", i)) for i, f in enumerate(frames)], columns
    )
    times = [pd.DatetimeIndex(f.index).tz_convert("UTC").as_unit("us").asi8 for f in frames]
    values = [f[list(_FIELDS)].to_numpy(np.float64) for f in frames]
    pos = [0] * len(frames)
    rows: list[list[np.ndarray]] = [[] for _ in frames]
    for now in np.unique(np.concatenate(times)) if frames else []:
        idx = [a for a in range(len(frames)) if pos[a] < len(times[a]) and times[a][pos[a]] == now]
        out = stream.push(idx, [(float(now), *values[a][pos[a]]) for a in idx])
        for i, a in enumerate(idx):
            rows[a].append(out[i])
            pos[a] += 1
    return [np.array(r).reshape(len(r), len(stream.columns)) for r in rows]


def check_stream(spec: FeatureSpec, frame: pd.DataFrame, atol: float = 0.0) -> float:
    """Largest |streamed - vectorised| over ``frame``; PluginError when above ``atol``."""
    want = compute(frame, spec).to_numpy(np.float64)
    got = stream_frame(spec, frame)
    both_nan = np.isnan(want) & np.isnan(got)
    diff = np.where(both_nan, 0.0, np.abs(got - want))
    worst = float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))) if diff.size else 0.0
    if worst > atol:
        row, col = np.unravel_index(
            int(np.argmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape
        )
        raise PluginError(
            f"feature column {spec.columns()[col]!r} streams to {got[row, col]!r} but computes "
            f"{want[row, col]!r} at row {row}: its row reads bars beyond its window; declare "
            "@feature(window=...) or a stream updater"
        )
    return worst
