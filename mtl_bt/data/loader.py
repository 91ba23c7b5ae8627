"""``load_frames``: config in, validated canonical frames out (through the source plugin and cache)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from mtl_bt import registry
from mtl_bt.data.cache import Cache, CacheKey
from mtl_bt.data.source import Source, clip
from mtl_bt.data.timeframe import (
    drop_forming,
    normalise_timeframe,
    parse_time,
    parse_timeframe,
    utc_now,
)
from mtl_bt.data.validate import normalise
from mtl_bt.errors import ConfigError, DataError

if TYPE_CHECKING:
    from mtl_bt.config import DataConfig


def make_source(name: str) -> Source:
    """Build the source plugin ``name`` (clear error listing the sources if unknown)."""
    source = registry.create("source", name)
    if not callable(getattr(source, "fetch", None)):
        raise DataError(f"source plugin {name!r} returned {source!r}, which has no fetch() method")
    return source


def _progress_bar(enabled: bool, symbol: str, since, until, timeframe: str | None):
    """A tqdm bar (bars fetched) when asked (only when stderr is a terminal); else None."""
    if not enabled:
        return None
    from tqdm import tqdm

    total = None
    if since is not None and timeframe is not None:
        end = until if until is not None else utc_now()
        total = max(0, int((end - since) / parse_timeframe(timeframe)))
    return tqdm(total=total, desc=symbol, unit="bar", leave=False, file=sys.stderr)


class _Fetcher:
    """Fetches one symbol through a source, with or without the cache."""

    def __init__(
        self,
        source: Source,
        name: str,
        options: dict[str, Any],
        cache: Cache | None,
        now: Callable[[], pd.Timestamp],
    ) -> None:
        self.source, self.name, self.options, self.cache, self.now = (
            source,
            name,
            options,
            cache,
            now,
        )

        #: frames fetched ahead in one batched call, keyed by (symbol, since, until)
        self._ahead: dict[tuple[str, Any, Any], pd.DataFrame] = {}
        #: cache entries read ahead (None: nothing cached), so each file is read once
        self._entries: dict[str, Any] = {}

    def _key(self, symbol: str, timeframe: str) -> CacheKey:
        return CacheKey(self.name, self.source.cache_namespace(self.options), symbol, timeframe)

    def fetch_cold(self, symbols: list[str], timeframe: str, since, until) -> None:
        """Fetch every symbol with nothing cached in ONE source call (yfinance batches
        tickers into one download); ``cached`` then uses these frames."""
        assert self.cache is not None
        cold = []
        for symbol in symbols:
            self._entries[symbol] = self.cache.load(self._key(symbol, timeframe))
            if self._entries[symbol] is None:
                cold.append(symbol)
        if len(cold) < 2:
            return
        frames = self.source.fetch(
            cold, timeframe=timeframe, since=since, until=until, **self.options
        )
        if not isinstance(frames, dict):
            raise DataError(f"source {self.name!r} returned {type(frames).__name__}, not a dict")
        for symbol in cold:
            if symbol in frames:
                self._ahead[(symbol, since, until)] = frames[symbol]

    def fetch(self, symbol: str, timeframe: str | None, since, until) -> pd.DataFrame:
        ahead = self._ahead.pop((symbol, since, until), None)
        if ahead is not None:
            return ahead
        frames = self.source.fetch(
            [symbol], timeframe=timeframe, since=since, until=until, **self.options
        )
        if not isinstance(frames, dict) or symbol not in frames:
            raise DataError(f"source {self.name!r} returned no frame for symbol {symbol!r}")
        return frames[symbol]

    def cached(self, symbol: str, timeframe: str, since, until) -> pd.DataFrame:
        """Serve from the cache; fetch only what lies outside the covered range, then merge."""
        assert self.cache is not None
        key = self._key(symbol, timeframe)
        now = self.now()
        entry = self._entries.pop(symbol) if symbol in self._entries else self.cache.load(key)
        # bars starting before the horizon have closed (start + timeframe <= now)
        horizon = now - parse_timeframe(timeframe) + pd.Timedelta(1, "us")
        want_end = horizon if until is None else min(until, horizon)
        if entry is None:
            raw = self.fetch(symbol, timeframe, since, until)
            verified = _verified(raw, since, want_end)
            fresh = clip(drop_forming(raw, timeframe, now), since, until)
            if verified is not None and (len(fresh) or since is not None):
                lo, hi = verified
                start = lo if lo is not None else fresh.index[0]
                end = hi
                if "verified" not in raw.attrs and len(fresh):
                    end = max(end, fresh.index[-1] + pd.Timedelta(1, "us"))
                if end > start:
                    self.cache.store(key, fresh, start, end)
            return fresh
        start, end = entry.start, entry.end
        want_start = since if since is not None else start
        parts = [entry.frame]
        new_start, new_end = start, end
        if want_start < start:
            head = self.fetch(symbol, timeframe, want_start, start)
            verified = _verified(head, want_start, start)
            if verified is not None and verified[1] >= start:  # contiguous: the range grows
                new_start = verified[0]
            parts.append(head)
        if want_end > end:
            tail = self.fetch(symbol, timeframe, end, until)
            verified = _verified(tail, end, want_end)
            if verified is not None and verified[0] <= end:
                new_end = max(end, verified[1])
            parts.append(drop_forming(tail, timeframe, now))
        if len(parts) > 1:
            served = pd.concat(parts)
            served = served[~served.index.duplicated(keep="last")].sort_index()
            served = normalise(served, symbol=symbol, source=self.name, timeframe=timeframe)
            # only bars inside the verified range are cached: the rest is asked for again
            keep = (served.index >= new_start) & (served.index < new_end)
            self.cache.store(key, served[keep], new_start, new_end)
        else:
            served = entry.frame
        return clip(served, want_start, until)


def _verified(frame: pd.DataFrame, lo, hi) -> tuple[Any, Any] | None:
    """The ``[start, end)`` a source vouches for: its ``attrs["verified"]`` (ccxt reports
    which windows were answered whole), else the whole request ``[lo, hi)``."""
    attrs = getattr(frame, "attrs", {})
    if "verified" not in attrs:
        return lo, hi
    verified = attrs["verified"]
    if verified is None:  # the source vouches for nothing (e.g. no bars at all)
        return None
    start, end = (pd.Timestamp(t) for t in verified)
    if lo is not None:
        start = max(start, lo)
    if hi is not None:
        end = min(end, hi)
    return start, end


def _window(since, until, covers: tuple[Any, Any] | None) -> str:
    """`` from X until Y; the data covers A .. B`` for a requested window with no bars."""
    if since is None and until is None:
        return ""
    asked = (f" from {since}" if since is not None else "") + (
        f" until {until}" if until is not None else ""
    )
    if covers is None:
        return asked
    return (
        f"{asked}; the data covers {covers[0]} .. {covers[-1]}: move data.since / "
        "data.until into that range"
    )


def load_frames(
    cfg: DataConfig,
    *,
    no_cache: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    now: Callable[[], pd.Timestamp] | None = None,
) -> dict[str, pd.DataFrame]:
    """Fetch ``cfg.symbols`` through the source plugin ``cfg.source``: cached, validated,
    canonical frames keyed by symbol in ``cfg.symbols`` order.

    ``since`` is inclusive, ``until`` exclusive. Network sources are cached unless
    ``no_cache`` or ``cfg.cache`` is false; local sources (sample, csv) never are.
    """
    symbols = list(cfg.symbols)
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        raise ConfigError(f"data.symbols lists {duplicates} more than once")
    since = parse_time(cfg.since, "data.since")
    until = parse_time(cfg.until, "data.until")
    if since is not None and until is not None and since >= until:
        raise ConfigError(f"data.since ({since}) must be before data.until ({until})")
    source = make_source(cfg.source)
    timeframe = normalise_timeframe(cfg.timeframe or getattr(source, "default_timeframe", None))
    options = dict(cfg.options)
    remote = bool(getattr(source, "cacheable", False))  # fetched over the network
    use_cache = cfg.cache and not no_cache and remote
    if use_cache and timeframe is None:
        use_cache = False
    cache = Cache(cache_dir) if use_cache else None
    if cache is not None:  # before the download, not after it
        from mtl_bt.rundir import check_writable

        check_writable(cache.root, "cache folder")
    fetcher = _Fetcher(source, cfg.source, options, cache, now or utc_now)

    out: dict[str, pd.DataFrame] = {}
    progress = progress and remote and sys.stderr.isatty()
    if not use_cache and not progress:  # one call for all symbols (yfinance batches them)
        raw = source.fetch(symbols, timeframe=timeframe, since=since, until=until, **options)
        missing = [s for s in symbols if s not in raw]
        if missing:
            raise DataError(f"source {cfg.source!r} returned no data for {missing}")
    else:
        raw = {}
        if use_cache and not progress:
            fetcher.fetch_cold(symbols, timeframe, since, until)
        for symbol in symbols:
            bar = _progress_bar(progress, symbol, since, until, timeframe)
            if bar is not None:
                source.on_progress = bar.update
            try:
                if use_cache:
                    raw[symbol] = fetcher.cached(symbol, timeframe, since, until)
                else:
                    raw[symbol] = fetcher.fetch(symbol, timeframe, since, until)
            finally:
                if bar is not None:
                    bar.close()
                    source.on_progress = None
    for symbol in symbols:
        frame = raw[symbol]
        covers = frame.attrs.get("covers")  # a source that clipped everything away says where
        frame = normalise(frame, symbol=symbol, source=cfg.source, timeframe=timeframe)
        if remote:  # a bar that has not closed yet would change under the model's feet
            frame = drop_forming(frame, frame.attrs.get("timeframe"), fetcher.now())
        whole = frame
        frame = clip(frame, since, until)
        if frame.empty:
            if not whole.empty:
                covers = (whole.index[0], whole.index[-1])
            raise DataError(
                f"source {cfg.source!r}: no bars for symbol {symbol!r}"
                + _window(since, until, covers)
            )
        frame.attrs = {
            "symbol": symbol,
            "timeframe": frame.attrs.get("timeframe") or timeframe,
            "source": cfg.source,
        }
        out[symbol] = frame
    return out
