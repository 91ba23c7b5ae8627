"""Features that read other frames: other symbols of the run, and higher-timeframe bars.

A cross-frame feature is an ordinary feature function that runs on a *source* frame (another
symbol's bars, a symbol's bars aggregated to a higher timeframe, or every symbol's bars) plus a
declaration of that source, ``@feature(..., reads=lambda **params: Reads(...))``. The plugin
never sees the target's timeline: this module puts the source's rows on the target's bars, so
a causal function stays causal across frames by construction. At the target's bar t it uses the
last source row that is *available* at t:

- another symbol's bar j is available at t when its label (the bar's open time, as every
  canonical frame is indexed) is <= t's label. Symbols of one run share the bar size, so that is
  "its end time <= t's end time": the last closed bar, never one that closes later. A symbol
  with no bar at t contributes its last closed bar (forward-filled from closed bars only);
  ``Reads(staleness=...)`` adds a column counting the target's bars since that bar arrived.
- a higher-timeframe bar (one period of the source's lower bars, e.g. a UTC day, or an
  exchange-local day with ``tz``) is available from the first lower bar of a later period on:
  only then is the period known to be over, in a backtest as live. So the daily bar enters at
  the first lower bar after the day closed, and a stock's day closes with its session (its
  last bar), not at midnight. The period still open is never used.

Each source's first ``warmup`` rows (declared in the source's own bars) are NaN, so the
target's rows are NaN until every frame it reads has warmed up (``drop_warmup`` drops them).
``mtl_bt.features.cross_stream`` computes the same rows bar by bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from mtl_bt.errors import ConfigError, DataError, PluginError
from mtl_bt.plugin_calls import call_feature

#: Monday 1970-01-05 minus the epoch (weeks start on Monday), in microseconds
_MONDAY_US = 4 * 86_400_000_000
_WEEK_US = 7 * 86_400_000_000
#: availability of a period that has not closed within the data
NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Reads:
    """Which frame a cross-frame feature's function runs on.

    ``symbol``: another symbol of the run (``None``: the target's own bars); ``all_symbols``:
    every symbol of the run, the results averaged with equal weights over the symbols that
    have a value; ``timeframe`` (e.g. ``"1d"``, ``"1w"``, ``"4h"``): the bars aggregated to
    that bar size first (periods of the calendar in ``tz``: an exchange's time zone makes a
    day one session of intraday bars); ``staleness``: the name of an extra column, the
    target's bars since the source row in use arrived (not with ``all_symbols``).
    """

    symbol: str | None = None
    all_symbols: bool = False
    timeframe: str | None = None
    tz: str = "UTC"
    staleness: str | None = None

    def check(self, name: str) -> Reads:
        where = f"feature {name!r}"
        if self.all_symbols and self.symbol is not None:
            raise PluginError(f"{where} reads both one symbol and all symbols; choose one")
        if self.symbol is not None and (not isinstance(self.symbol, str) or not self.symbol):
            raise ConfigError(f"{where}: the symbol to read is {self.symbol!r}; give a symbol")
        if self.symbol is None and not self.all_symbols and self.timeframe is None:
            raise PluginError(
                f"{where} declares reads= but reads only its own bars; drop reads= (a plain "
                "feature) or name a symbol, all_symbols=True or a timeframe"
            )
        if self.all_symbols and self.staleness:
            raise PluginError(f"{where}: staleness is per source symbol, not with all_symbols")
        if self.timeframe is not None:
            period_us(self.timeframe, name)
            zone(self.tz, name)
        return self


def reads_of(name: str, fn: Any, params: dict[str, Any]) -> Reads | None:
    """The frame a feature reads (``None``: a single-frame feature)."""
    hook = getattr(fn, "reads", None)
    if hook is None:
        return None
    value = hook(**params) if callable(hook) else hook
    if not isinstance(value, Reads):
        raise PluginError(f"feature {name!r}: reads returned {value!r}; expected a Reads(...)")
    return value.check(name)


def period_us(timeframe: str, name: str = "") -> int:
    """The higher timeframe's period in microseconds (``ConfigError`` naming the feature)."""
    from mtl_bt.data.timeframe import parse_timeframe

    try:
        delta = parse_timeframe(timeframe)
    except ConfigError as exc:
        raise ConfigError(f"features.params.{name}.timeframe: {exc}") from None
    return int(delta / pd.Timedelta(1, "us"))


@lru_cache(maxsize=32)
def zone(tz: str, name: str = "") -> ZoneInfo | None:
    """The ``ZoneInfo`` of ``tz`` (``None`` for UTC)."""
    if tz in ("UTC", "utc", "Etc/UTC"):
        return None
    try:
        return ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"features.params.{name}.tz = {tz!r} is not a time zone; use an IANA name such as "
            "'America/New_York' (the exchange's), or 'UTC'"
        ) from None


def local_us(micros: int, tz: ZoneInfo | None) -> int:
    """Wall-clock microseconds in ``tz`` of a UTC epoch-microsecond time (one bar)."""
    if tz is None:
        return micros
    when = datetime.fromtimestamp(micros // 1_000_000, tz=UTC).astimezone(tz)
    offset = when.utcoffset()
    return micros + (int(offset.total_seconds()) * 1_000_000 if offset else 0)


def period_key(micros: int, size: int, tz: ZoneInfo | None) -> int:
    """The period (of ``size`` microseconds, in ``tz``'s calendar) a bar opening at ``micros``
    belongs to. Weeks start on Monday; days at local midnight."""
    local = local_us(int(micros), tz)
    if size % _WEEK_US == 0:
        return (local - _MONDAY_US) // size
    return local // size


def period_keys(micros: np.ndarray, size: int, tz: ZoneInfo | None) -> np.ndarray:
    """``period_key`` of many bars (the same arithmetic)."""
    micros = np.asarray(micros, dtype=np.int64)
    if tz is None:
        local = micros
    else:
        local = np.array([local_us(int(m), tz) for m in micros.tolist()], dtype=np.int64)
    if size % _WEEK_US == 0:
        return (local - _MONDAY_US) // size
    return local // size


def micros_of(index: pd.Index) -> np.ndarray:
    """UTC epoch microseconds of a frame's index."""
    return pd.DatetimeIndex(index).tz_convert("UTC").as_unit("us").asi8.astype(np.int64)


def sequential_sum(values: Sequence[float]) -> float:
    """Values added one at a time, oldest first (the streaming aggregator's additions)."""
    total = 0.0
    for v in values:
        total += v
    return total


def aggregate(
    frame: pd.DataFrame, timeframe: str, tz: str = "UTC"
) -> tuple[pd.DataFrame, np.ndarray]:
    """The closed higher-timeframe bars of ``frame`` and when each became available.

    A period's bar: first open, highest high, lowest low, last close, summed volume, labelled
    with its first lower bar's time. It is available at the label of the first lower bar of a
    later period; the last period (still open at the end of the data) is left out, so a
    prefix of the lower bars gives a prefix of these bars.
    """
    size = period_us(timeframe)
    us = micros_of(frame.index)
    if not len(us):
        return frame.iloc[:0], np.zeros(0, dtype=np.int64)
    keys = period_keys(us, size, zone(tz))
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    closed = starts[1:]  # each period ends where the next begins: all but the last are closed
    first = starts[:-1]
    if not len(first):
        return frame.iloc[:0], np.zeros(0, dtype=np.int64)
    o = frame["open"].to_numpy(np.float64)
    h = frame["high"].to_numpy(np.float64)
    lo = frame["low"].to_numpy(np.float64)
    c = frame["close"].to_numpy(np.float64)
    data = {
        "open": o[first],
        "high": np.maximum.reduceat(h, starts)[:-1],
        "low": np.minimum.reduceat(lo, starts)[:-1],
        "close": c[closed - 1],
    }
    if "volume" in frame.columns:
        v = frame["volume"].to_numpy(np.float64).tolist()
        data["volume"] = np.array(
            [sequential_sum(v[s:e]) for s, e in zip(first.tolist(), closed.tolist(), strict=True)]
        )
    out = pd.DataFrame(data, index=frame.index[first])
    out.attrs = dict(frame.attrs)
    return out, us[closed]


def _source_values(
    name: str,
    fn: Any,
    params: dict[str, Any],
    columns: list[str],
    warmup: int,
    source: pd.DataFrame,
) -> np.ndarray:
    out = call_feature(name, fn, source, params)
    if not isinstance(out, pd.DataFrame) or list(out.columns) != columns:
        got = list(out.columns) if isinstance(out, pd.DataFrame) else type(out).__name__
        raise PluginError(f"feature {name!r} returned {got}, declared columns {columns}")
    if len(out) != len(source) or not out.index.equals(source.index):
        raise PluginError(f"feature {name!r} returned rows not aligned to the source frame's index")
    values = out.to_numpy(dtype=np.float64).copy()
    values[:warmup] = np.nan  # the source's own warm-up, counted in its own bars
    return values


def cross_values(
    name: str,
    fn: Any,
    params: dict[str, Any],
    reads: Reads,
    columns: list[str],
    warmup: int,
    frame: pd.DataFrame,
    context: Mapping[str, pd.DataFrame] | None,
) -> np.ndarray:
    """The feature's columns on ``frame``'s bars (see the module docstring): ``columns`` are
    the function's own columns (without the staleness column, which is appended)."""
    symbol = frame.attrs.get("symbol")
    if reads.all_symbols or reads.symbol is not None:
        if context is None:
            raise PluginError(
                f"feature {name!r} reads other symbols; compute it with the run's frames "
                "(compute(frame, spec, context={symbol: frame, ...}))"
            )
        wanted = list(context) if reads.all_symbols else [reads.symbol]
        missing = [s for s in wanted if s not in context]
        if missing:
            raise ConfigError(
                f"feature {name!r} reads symbol {missing[0]!r}, which is not a symbol of this run "
                f"{list(context)}; add it to data.symbols or change features.params.{name}"
            )
    else:
        wanted = [symbol]
    target_us = micros_of(frame.index)
    n = len(frame)
    total = np.zeros((n, len(columns)))
    count = np.zeros((n, len(columns)))
    result = None
    pos = None
    for s in wanted:
        source = frame if s == symbol or s is None else context[s]  # type: ignore[index]
        if s != symbol and s is not None:
            source = source.copy(deep=False)
            source.attrs = {**source.attrs, "symbol": s}
        if reads.timeframe is not None:
            source, avail = aggregate(source, reads.timeframe, reads.tz)
        else:
            avail = micros_of(source.index)
            if s != symbol:
                same_bar_size(name, s, avail, symbol, target_us)
        values = _source_values(name, fn, params, columns, warmup, source)
        pos = np.searchsorted(avail, target_us, side="right") - 1
        aligned = np.full((n, len(columns)), np.nan)
        seen = pos >= 0
        aligned[seen] = values[pos[seen]]
        if not reads.all_symbols:
            result = aligned
            break
        ok = np.isfinite(aligned)
        total = total + np.where(ok, aligned, 0.0)
        count = count + ok
    if reads.all_symbols:
        with np.errstate(invalid="ignore", divide="ignore"):
            result = np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)
    assert result is not None and pos is not None
    if reads.staleness:
        result = np.column_stack([result, staleness(pos)])
    return result


def bar_size(micros: np.ndarray) -> int | None:
    """The smallest spacing of a frame's bars (its bar size; gaps only widen spacings)."""
    if len(micros) < 3:
        return None
    steps = np.diff(micros)
    steps = steps[steps > 0]
    return int(steps.min()) if len(steps) else None


def same_bar_size(
    name: str, source: str, src_us: np.ndarray, target: Any, tgt_us: np.ndarray
) -> None:
    """A ``ConfigError`` when another symbol's bars are another size than the target's: "label
    <= t's label" is "closed by t's close" only for bars of one size (an hourly target would
    see a daily bar labelled at its start hours before it closes)."""
    refuse_bar_sizes(name, source, bar_size(src_us), target, bar_size(tgt_us))


def refuse_bar_sizes(name: str, source: str, a: int | None, target: Any, b: int | None) -> None:
    """``same_bar_size`` on two bar sizes in microseconds (``None``: not known yet); the
    streaming engine (``cross_stream``) asks it as the sizes become known."""
    if a is not None and b is not None and a != b:
        raise ConfigError(
            f"feature {name!r} reads {source!r} ({pd.Timedelta(a, 'us')} bars) for {target!r} "
            f"({pd.Timedelta(b, 'us')} bars): another symbol's bars must be the target's size; "
            f"read it through higher_tf (of = {source!r}, timeframe = its bar size) instead"
        )


def staleness(pos: np.ndarray) -> np.ndarray:
    """Target bars since the source row in use (``pos``, -1: none yet) arrived."""
    n = len(pos)
    changed = np.r_[True, pos[1:] != pos[:-1]] if n else np.zeros(0, dtype=bool)
    rows = np.arange(n)
    last = np.maximum.accumulate(np.where(changed, rows, 0)) if n else rows
    out = (rows - last).astype(np.float64)
    out[pos < 0] = np.nan
    return out


def leading_rows(values: np.ndarray) -> int:
    """Rows before the first row with every value finite (the frames' warm-up)."""
    if not values.size:
        return 0
    ok = np.isfinite(values).all(axis=1)
    return int(np.argmax(ok)) if ok.any() else len(values)


def safe_name(symbol: str) -> str:
    """A symbol as a column-name prefix: ``"BTC/USDT"`` -> ``"btc_usdt"``."""
    out = "".join(ch.lower() if ch.isalnum() else "_" for ch in str(symbol)).strip("_")
    return out or "symbol"


def check_frames(context: Mapping[str, pd.DataFrame]) -> None:
    """Context frames must be time-sorted with unique labels (the as-of alignment needs it)."""
    for s, f in context.items():
        index = pd.DatetimeIndex(f.index)
        if not index.is_monotonic_increasing or not index.is_unique:
            raise DataError(f"{s}: bars are not in strictly increasing time order; fix the data")


def named_frames(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The frames with ``attrs["symbol"]`` set to their key: how ``compute`` tells a
    cross-frame feature's own symbol from the run's others (shallow copies where needed)."""
    out = {}
    for symbol, frame in frames.items():
        if frame.attrs.get("symbol") != symbol:
            frame = frame.copy(deep=False)
            frame.attrs = {**frame.attrs, "symbol": symbol}
        out[symbol] = frame
    return out
