"""The one validation module every source uses: raw bars in, canonical frame out.

Hard errors (``DataError`` naming symbol, column, first offending timestamp and
file): missing OHLC column, non-numeric values, NaN in OHLC, non-positive
prices, ``high < max(open, close)`` or ``low > min(open, close)``, negative
volume, conflicting duplicate timestamps, bars closer together than the
declared timeframe.

Repaired and reported (``DataWarning``): unsorted rows (sorted), identical
duplicate rows (dropped), missing volume (a NaN column: tasks that need volume
refuse it themselves), high/low off by float noise (<= 1e-9 relative; snapped).
Gaps are reported by :func:`describe`, never filled.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mtl_bt.data.source import COLUMNS, INDEX_NAME
from mtl_bt.data.timeframe import format_timeframe, parse_timeframe, parse_times
from mtl_bt.errors import DataError

PRICES = ("open", "high", "low", "close")
#: relative tolerance for high/low consistency (float noise from adjustments)
_TOLERANCE = 1e-9


def _plain(value):
    """A numpy scalar as the Python number it holds: messages say ``-1.5``, not
    ``np.float64(-1.5)``."""
    return value.item() if isinstance(value, np.generic) else value


class DataWarning(UserWarning):
    """Data was repaired or is incomplete; the message says what and where."""


def _where(symbol: str, path: object | None) -> str:
    return f"symbol {symbol!r}" + (f" (file {path})" if path is not None else "")


def _ts(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _to_utc_index(index: pd.Index, symbol: str, path: object | None) -> pd.DatetimeIndex:
    if isinstance(index, pd.DatetimeIndex):
        out = index
        if out.hasnans:
            pos = int(np.argmax(out.isna()))
            raise DataError(f"{_where(symbol, path)}: missing timestamp in row {pos}")
        out = out.tz_localize("UTC") if out.tz is None else out.tz_convert("UTC")
    else:  # epoch numbers or strings, as in files
        out = parse_times(pd.Series(index), symbol=symbol, path=path)
    return pd.DatetimeIndex(out.as_unit("us"), name=INDEX_NAME)


def _columns(frame: pd.DataFrame, symbol: str, path: object | None) -> dict[str, object]:
    """Canonical name -> original column label, matched case-insensitively."""
    found: dict[str, object] = {}
    for label in frame.columns:
        key = str(label).strip().lower().replace("_", " ")
        if key in COLUMNS:
            if key in found:
                raise DataError(
                    f"{_where(symbol, path)}: columns {found[key]!r} and {label!r} both mean {key!r}"
                )
            found[key] = label
    missing = [c for c in PRICES if c not in found]
    if missing:
        raise DataError(
            f"{_where(symbol, path)}: missing column(s) {missing}; columns present: "
            f"{[str(c) for c in frame.columns]} (need open, high, low, close; volume optional)"
        )
    return found


def _numeric(values: pd.Series, column: str, symbol: str, path: object | None) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataError(f"{_where(symbol, path)}: column {column!r} holds booleans, not numbers")
    converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        pos = int(np.argmax(bad))
        raise DataError(
            f"{_where(symbol, path)}: column {column!r} has non-numeric value "
            f"{_plain(values.iloc[pos])!r} at {_ts(values.index[pos])}"
        )
    out = converted.to_numpy(dtype="float64", na_value=np.nan)
    infinite = np.isinf(out)
    if infinite.any():
        pos = int(np.argmax(infinite))
        raise DataError(
            f"{_where(symbol, path)}: column {column!r} is infinite at {_ts(values.index[pos])}"
        )
    return out


def _first(mask: np.ndarray, index: pd.Index) -> str:
    return _ts(index[int(np.argmax(mask))])


def normalise(
    frame: pd.DataFrame,
    *,
    symbol: str,
    source: str,
    timeframe: str | None = None,
    path: object | None = None,
) -> pd.DataFrame:
    """Validate ``frame`` (time index, OHLC[V] columns in any case) and return it canonical.

    The result has a UTC ``DatetimeIndex`` named ``datetime``, float64
    ``open, high, low, close, volume`` (volume NaN when the input has none),
    sorted, unique, and ``attrs`` symbol/timeframe/source. ``timeframe`` (when
    given) is checked: no two bars may be closer than it.
    """
    where = _where(symbol, path)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{where}: expected a DataFrame, got {type(frame).__name__}")
    names = _columns(frame, symbol, path)
    index = _to_utc_index(frame.index, symbol, path)
    data: dict[str, np.ndarray] = {}
    for column in COLUMNS:
        if column in names:
            series = pd.Series(frame[names[column]].to_numpy(), index=index)
            data[column] = _numeric(series, column, symbol, path)
    if "volume" not in data:
        warnings.warn(
            f"{where}: no volume column; volume is NaN (tasks that need volume will refuse it)",
            DataWarning,
            stacklevel=2,
        )
        data["volume"] = np.full(len(index), np.nan)
    out = pd.DataFrame(data, index=index, columns=list(COLUMNS))

    if not out.index.is_monotonic_increasing:
        warnings.warn(f"{where}: rows were not in time order; sorted", DataWarning, stacklevel=2)
        out = out.sort_index(kind="stable")
    if out.index.has_duplicates:
        dup = out.index.duplicated(keep=False)
        groups = out[dup].groupby(level=0, sort=True)
        for stamp, rows in groups:
            if len(rows.drop_duplicates()) > 1:
                raise DataError(
                    f"{where}: duplicate timestamp {_ts(stamp)} with different values "
                    f"({len(rows)} rows); remove the wrong rows"
                )
        dropped = int(out.index.duplicated(keep="first").sum())
        warnings.warn(
            f"{where}: {dropped} identical duplicate row(s) dropped (first at "
            f"{_ts(out.index[out.index.duplicated(keep='first')][0])})",
            DataWarning,
            stacklevel=2,
        )
        out = out[~out.index.duplicated(keep="first")]

    idx = out.index
    for column in PRICES:
        values = out[column].to_numpy()
        if np.isnan(values).any():
            raise DataError(
                f"{where}: column {column!r} is NaN (missing) at {_first(np.isnan(values), idx)}"
            )
        if (values <= 0).any():
            raise DataError(
                f"{where}: column {column!r} has non-positive price "
                f"{_plain(values[int(np.argmax(values <= 0))])} at {_first(values <= 0, idx)}"
            )
    o, h, lo, c = (out[col].to_numpy() for col in PRICES)
    top = np.maximum(o, c)
    bottom = np.minimum(o, c)
    for column, bad, noise in (
        ("high", h < top, h < top * (1 - _TOLERANCE)),
        ("low", lo > bottom, lo > bottom * (1 + _TOLERANCE)),
    ):
        if noise.any():
            pos = int(np.argmax(noise))
            rule = "below max(open, close)" if column == "high" else "above min(open, close)"
            raise DataError(
                f"{where}: column {column!r} is {rule} at {_ts(idx[pos])} "
                f"(open={_plain(o[pos])}, high={_plain(h[pos])}, low={_plain(lo[pos])}, "
                f"close={_plain(c[pos])})"
            )
        if bad.any():
            warnings.warn(
                f"{where}: {int(bad.sum())} {column} value(s) off by float noise "
                f"(first at {_first(bad, idx)}); snapped to the open/close envelope",
                DataWarning,
                stacklevel=2,
            )
            out[column] = np.maximum(h, top) if column == "high" else np.minimum(lo, bottom)
    volume = out["volume"].to_numpy()
    if (volume < 0).any():
        raise DataError(f"{where}: column 'volume' is negative at {_first(volume < 0, idx)}")
    missing_volume = np.isnan(volume)
    if missing_volume.any() and "volume" in names:
        warnings.warn(
            f"{where}: volume missing (NaN) in {int(missing_volume.sum())} bar(s), first at "
            f"{_first(missing_volume, idx)}",
            DataWarning,
            stacklevel=2,
        )

    if timeframe is not None:
        step = parse_timeframe(timeframe)
        if len(idx) > 1:
            diffs = np.diff(idx.as_unit("ns").asi8)
            close = diffs < step.value
            if close.any():
                pos = int(np.argmax(close)) + 1
                raise DataError(
                    f"{where}: bars at {_ts(idx[pos - 1])} and {_ts(idx[pos])} are closer than "
                    f"the timeframe {timeframe!r}; the data has a smaller bar size "
                    f"(inferred {infer_timeframe(idx)}) - pick the matching timeframe"
                )
        timeframe = format_timeframe(step)
    elif len(idx) > 1:
        timeframe = infer_timeframe(idx)
    if len(idx) > 1:
        _one_bar_size(idx, parse_timeframe(timeframe), where)
    out.index.freq = None
    out.attrs = {"symbol": symbol, "timeframe": timeframe, "source": source}
    return out


#: this many consecutive bars all spaced alike, but not by the bar size, are a second bar size
#: (a closed weekend breaks daily stock bars into runs of 5; hourly sessions hold 1h steps)
CHANGED_SIZE_RUN = 20


def _one_bar_size(idx: pd.DatetimeIndex, step: pd.Timedelta, where: str) -> None:
    """Refuse data whose bar size changes (e.g. daily bars, then 6-hourly ones): the bar size
    is the smallest spacing, so the daily part would silently be read as 6h bars with gaps -
    features, targets and annualisation all wrong."""
    diffs = np.diff(idx.as_unit("ns").asi8)
    other = diffs != step.value
    if other.sum() < CHANGED_SIZE_RUN:
        return
    # runs of equal spacing: where the spacing changes, a new run starts
    starts = np.flatnonzero(np.concatenate([[True], diffs[1:] != diffs[:-1]]))
    lengths = np.diff(np.concatenate([starts, [len(diffs)]]))
    long = (lengths >= CHANGED_SIZE_RUN) & other[starts]
    if not long.any():
        return
    run = int(np.argmax(long))
    first, last = int(starts[run]), int(starts[run] + lengths[run])  # rows first..last
    size = format_timeframe(pd.Timedelta(int(diffs[first]), unit="ns"))
    bar = format_timeframe(step)
    if first > 0:
        change, before, after = first, bar, size
    else:
        change, before, after = last, size, bar
    raise DataError(
        f"{where}: the bar size changes at row {change} ({_ts(idx[change])}): {size} bars "
        f"in rows {first}-{last} ({_ts(idx[first])} .. {_ts(idx[last])}), {bar} bars "
        f"{'after' if first == 0 else 'before'}; one series must hold one bar size "
        f"({before} then {after} here) - split the file or resample it to one timeframe"
    )


def infer_timeframe(index: pd.Index) -> str:
    """The bar size of ``index`` as a timeframe string ("1h", "1d", ...).

    Bars never overlap, so the bar size is the smallest spacing; weekends,
    holidays and outages only make spacings larger and do not change it.
    """
    stamps = pd.DatetimeIndex(index)
    if len(stamps) < 2:
        raise DataError(f"cannot infer a timeframe from {len(stamps)} bar(s); need at least 2")
    diffs = np.diff(stamps.sort_values().as_unit("ns").asi8)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise DataError("cannot infer a timeframe: all timestamps are equal")
    return format_timeframe(pd.Timedelta(int(diffs.min()), unit="ns"))


def _bars(n: int) -> str:
    return f"{n} bar" if n == 1 else f"{n} bars"


@dataclass
class Gap:
    """A run of missing bars: ``start`` is the first missing bar."""

    start: pd.Timestamp
    end: pd.Timestamp
    bars: int


@dataclass
class Summary:
    """What ``mtl-bt data info`` prints for one symbol."""

    symbol: str
    bars: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    timeframe: str | None
    weekends_closed: bool = False
    gaps: list[Gap] = field(default_factory=list)
    zero_volume: int = 0
    missing_volume: int = 0

    @property
    def missing_bars(self) -> int:
        return sum(g.bars for g in self.gaps)

    def lines(self) -> list[str]:
        """Human-readable report lines."""
        if self.bars == 0:
            return [f"{self.symbol}: no bars"]
        out = [
            f"{self.symbol}: {self.bars} bars, {self.start.isoformat()} .. {self.end.isoformat()}, "
            f"timeframe {self.timeframe or 'unknown'}"
            + (" (weekends closed)" if self.weekends_closed else ""),
            self._gap_line(),
        ]
        for gap in sorted(self.gaps, key=lambda g: -g.bars)[:5]:
            out.append(f"    {_bars(gap.bars)} missing from {gap.start.isoformat()}")
        out.append(f"  zero-volume bars: {self.zero_volume}")
        if self.missing_volume:
            out.append(f"  missing (NaN) volume bars: {self.missing_volume}")
        return out

    def _gap_line(self) -> str:
        """Gaps of a market that closes on weekends are mostly its holidays: said so, with
        the yearly rate to compare against an exchange's 9-10 holidays (not just "gaps")."""
        missing = self.missing_bars
        if not (self.weekends_closed and self.gaps and self.timeframe == "1d"):
            return f"  gaps: {len(self.gaps)} ({_bars(missing)} missing)"
        years = max((self.end - self.start) / pd.Timedelta("365.25D"), 1 / 365.25)
        return (
            f"  closed or missing weekdays: {_bars(missing)} in {len(self.gaps)} gap(s), "
            f"{missing / years:.1f} a year (exchange holidays are 9-10 a year; weekends are not "
            "counted)"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "bars": self.bars,
            "start": self.start.isoformat() if self.start is not None else None,
            "end": self.end.isoformat() if self.end is not None else None,
            "timeframe": self.timeframe,
            "weekends_closed": self.weekends_closed,
            "gaps": len(self.gaps),
            "missing_bars": self.missing_bars,
            "largest_gaps": [
                {"start": g.start.isoformat(), "bars": g.bars}
                for g in sorted(self.gaps, key=lambda g: -g.bars)[:5]
            ],
            "zero_volume": self.zero_volume,
            "missing_volume": self.missing_volume,
        }


def describe(frame: pd.DataFrame, timeframe: str | None = None) -> Summary:
    """Range, bar count, timeframe, gaps and zero-volume bars of a canonical frame.

    A gap is a run of expected bar times with no bar. When the data has no bar
    on any Saturday/Sunday (stocks), weekends are not expected; holidays and
    intraday session breaks still count as gaps - they are reported, never filled.
    Daily bars are compared as trading days, not UTC instants: local midnights that
    move by an hour with daylight saving are the same days (no fake summer gaps), and
    a weekday with no bar in two weeks or more of data is a closed day.
    """
    symbol = str(frame.attrs.get("symbol", "?"))
    index = pd.DatetimeIndex(frame.index)
    volume = frame["volume"].to_numpy(dtype="float64")
    summary = Summary(
        symbol=symbol,
        bars=len(index),
        start=index[0] if len(index) else None,
        end=index[-1] if len(index) else None,
        timeframe=timeframe or frame.attrs.get("timeframe"),
        zero_volume=int((volume == 0).sum()),
        missing_volume=int(np.isnan(volume).sum()),
    )
    if len(index) < 2:
        return summary
    if summary.timeframe is None:
        summary.timeframe = infer_timeframe(index)
    step = parse_timeframe(summary.timeframe)
    day = pd.Timedelta("1D")
    if step % day == pd.Timedelta(0) and step < pd.Timedelta("7D"):
        # daily bars are trading days: a bar at local midnight moves by an hour in UTC with
        # daylight saving, so each bar is keyed by its day (half a day around its usual time)
        usual = pd.TimedeltaIndex(index - index.normalize()).median()
        keys = (index - usual + day / 2).floor("1D")
        expected = pd.date_range(keys[0], keys[-1], freq=step)
        closed = sorted(set(range(7)) - set(keys.day_of_week)) if len(expected) >= 14 else []
        summary.weekends_closed = bool(closed)
        expected = expected[~expected.day_of_week.isin(closed)]
        shown = expected + usual  # gaps are reported at the bars' usual time of day
        missing = ~expected.isin(keys)
    else:
        expected = pd.date_range(index[0], index[-1], freq=step)
        summary.weekends_closed = (
            step < pd.Timedelta("7D")
            and bool((expected.day_of_week >= 5).any())
            and not bool((index.day_of_week >= 5).any())
        )
        if summary.weekends_closed:
            expected = expected[expected.day_of_week < 5]
        shown = expected
        missing = ~expected.isin(index)
    if missing.any():
        positions = np.flatnonzero(missing)
        breaks = np.flatnonzero(np.diff(positions) > 1)
        starts = np.concatenate([[0], breaks + 1])
        ends = np.concatenate([breaks, [len(positions) - 1]])
        for s, e in zip(starts, ends, strict=True):
            summary.gaps.append(Gap(shown[positions[s]], shown[positions[e]], int(e - s + 1)))
    return summary


#: a gap of more than this many expected bars is worth a warning before training on it
LARGE_GAP_BARS = 10


def warn_large_gaps(frames, limit: int = LARGE_GAP_BARS) -> list[str]:
    """A ``DataWarning`` per symbol whose bars have a gap of more than ``limit`` expected
    bars (an outage, a missing month of a file): features and targets then span the gap.
    Returns the messages (``mtl-bt data info`` lists every gap)."""
    messages = []
    for symbol, frame in frames.items():
        if len(frame) < 2:
            continue
        big = [g for g in describe(frame).gaps if g.bars > limit]
        if big:
            worst = max(big, key=lambda g: g.bars)
            messages.append(
                f"{symbol}: {len(big)} large gap(s) inside the data, the largest "
                f"{worst.bars} missing bars from {worst.start.isoformat()}; features and targets "
                "span it. Check it with `mtl-bt data info`, or narrow data.since/data.until"
            )
    for message in messages:
        warnings.warn(message, DataWarning, stacklevel=2)
    return messages
