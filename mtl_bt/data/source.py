"""The source interface: every data plugin returns canonical frames."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from mtl_bt.data.timeframe import INDEX_NAME, parse_time

#: canonical OHLCV columns, in order, all float64
COLUMNS = ("open", "high", "low", "close", "volume")
__all__ = ["COLUMNS", "INDEX_NAME", "Source", "check_options", "clip", "clip_frames"]


class Source:
    """Fetches bars for symbols.

    ``fetch`` returns ``{symbol: frame}``; each frame is canonical (UTC
    ``DatetimeIndex`` named ``datetime``, float ``open, high, low, close,
    volume``, sorted, unique) with ``frame.attrs`` holding ``symbol``,
    ``timeframe`` and ``source``. A source that can tell which part of the request
    it answered whole sets ``attrs["verified"] = (start, end)`` (``None``: nothing);
    the cache records only that range as complete (the request range otherwise).
    """

    name: str = ""
    #: fetched over the network: the loader caches it on disk (local sources: False)
    cacheable: bool = False
    #: bar size used when the config leaves ``timeframe`` unset (None: the data's own)
    default_timeframe: str | None = None
    #: set by the loader when a progress bar is shown; call with the bars just fetched
    on_progress: Callable[[int], None] | None = None

    def cache_namespace(self, options: dict[str, Any]) -> str:
        """The "exchange" part of the cache key for these options (e.g. ``"bybit-spot"``)."""
        return "default"

    def fetch(
        self,
        symbols: list[str],
        *,
        timeframe: str | None = None,
        since: datetime | pd.Timestamp | None = None,
        until: datetime | pd.Timestamp | None = None,
        **options: Any,
    ) -> dict[str, pd.DataFrame]:
        raise NotImplementedError


def check_options(source: str, options: dict[str, Any], allowed: dict[str, str]) -> None:
    """Refuse options a source does not know (a typo must not be silently ignored).

    ``allowed`` maps option name -> one-line help, shown in the error.
    """
    from mtl_bt.errors import ConfigError

    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in allowed.items()) or "none"
        raise ConfigError(f"source {source!r} does not take option(s) {unknown}. Options: {known}")


def clip(frame: pd.DataFrame, since: Any = None, until: Any = None) -> pd.DataFrame:
    """Bars with ``since <= time < until`` (either bound may be None; naive means UTC).

    When nothing is left, ``attrs["covers"]`` holds the first and last time of ``frame``, so
    the error can say where the data is (not only where it is not)."""
    since, until = parse_time(since, "since"), parse_time(until, "until")
    whole = frame
    if since is not None:
        frame = frame[frame.index >= since]
    if until is not None:
        frame = frame[frame.index < until]
    if frame.empty and not whole.empty:
        frame = frame.copy()
        frame.attrs = {**whole.attrs, "covers": (whole.index[0], whole.index[-1])}
    return frame


def clip_frames(
    frames: Mapping[str, pd.DataFrame], start: pd.Timestamp | None
) -> dict[str, pd.DataFrame]:
    """Frames from ``start`` on (buy-and-hold must hold over the strategy's own bars)."""
    if start is None:
        return dict(frames)
    out = {}
    for symbol, frame in frames.items():
        clipped = frame[frame.index >= start]
        clipped.attrs.update(frame.attrs)
        if len(clipped) >= 2:
            out[symbol] = clipped
    return out
