"""On-disk Parquet cache of fetched bars, keyed by (source, exchange, symbol, timeframe).

Each file stores the bars plus the time range the source *verified* (answered
whole: ``start`` .. ``end``, end exclusive) in the Parquet schema metadata, so a
later request fetches only what lies outside that range - real gaps inside it
(exchange outages) are not refetched forever, and anything a source could not
vouch for (a trailing empty page) is topped up next time. Writes are atomic; a file
that cannot be read or fails validation is reported, deleted and refetched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import platformdirs
import pyarrow as pa
import pyarrow.parquet as pq

from mtl_bt.data.io import atomic_write, symbol_filename
from mtl_bt.data.source import COLUMNS
from mtl_bt.data.validate import DataWarning, normalise
from mtl_bt.errors import DataError

ENV_VAR = "MTL_BT_CACHE_DIR"
#: sub-folder of the cache dir that mtl-bt owns (clear-cache deletes only this)
BARS_DIR = "bars"
_META_KEY = b"mtl_bt_cache"
#: 2: the range is what the source *verified* (version 1 files may hold a gap; refetched)
_VERSION = 2


def cache_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``option``, else ``$MTL_BT_CACHE_DIR``, else the user cache dir."""
    if option:
        return Path(option).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("mtl-bt"))


def _safe(part: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in part) or "_"


@dataclass(frozen=True)
class CacheKey:
    """What identifies cached bars. ``exchange`` is the source's namespace (e.g. "bybit-spot")."""

    source: str
    exchange: str
    symbol: str
    timeframe: str

    def relpath(self) -> Path:
        name = symbol_filename(self.symbol)
        if name != self.symbol:  # keep BTC/USDT and BTC_USDT apart
            name += "-" + hashlib.sha1(self.symbol.encode()).hexdigest()[:8]
        return (
            Path(BARS_DIR)
            / _safe(self.source)
            / _safe(self.exchange)
            / _safe(self.timeframe)
            / f"{_safe(name)}.parquet"
        )


@dataclass
class Entry:
    """Cached bars and the range they cover completely (``end`` exclusive)."""

    frame: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp


class Cache:
    """Load/store/clear cached bars under one root directory."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = cache_dir(root)

    def path(self, key: CacheKey) -> Path:
        return self.root / key.relpath()

    def load(self, key: CacheKey) -> Entry | None:
        """The cached entry, or ``None`` when absent; a corrupt file is reported and removed."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {})[_META_KEY])
            if isinstance(meta.get("version"), int) and meta["version"] < _VERSION:
                path.unlink(missing_ok=True)  # an older layout: fetched again, not "corrupt"
                return None
            if meta.get("version") != _VERSION or meta.get("symbol") != key.symbol:
                raise DataError(f"metadata does not match {key}")
            frame = table.to_pandas()
            if list(frame.columns) != list(COLUMNS):
                raise DataError(f"columns {list(frame.columns)}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)
                frame = normalise(
                    frame, symbol=key.symbol, source=key.source, timeframe=key.timeframe, path=path
                )
            start, end = pd.Timestamp(meta["start"]), pd.Timestamp(meta["end"])
            if len(frame) and (frame.index[0] < start or frame.index[-1] >= end):
                raise DataError("bars outside the recorded range")
        except Exception as exc:  # truncated, garbage, wrong schema, invalid bars
            warnings.warn(
                f"cache file {path} is corrupt ({type(exc).__name__}: {exc}); deleted, refetching",
                DataWarning,
                stacklevel=2,
            )
            path.unlink(missing_ok=True)
            return None
        return Entry(frame, start, end)

    def store(self, key: CacheKey, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp):
        """Atomically write ``frame`` as covering ``[start, end)``."""
        meta = {
            "version": _VERSION,
            "source": key.source,
            "exchange": key.exchange,
            "symbol": key.symbol,
            "timeframe": key.timeframe,
            "start": pd.Timestamp(start).isoformat(),
            "end": pd.Timestamp(end).isoformat(),
        }
        data = frame.loc[:, list(COLUMNS)]
        data.attrs = {}  # the range lives in our own metadata key
        table = pa.Table.from_pandas(data, preserve_index=True)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()}
        )
        return atomic_write(self.path(key), lambda tmp: pq.write_table(table, tmp))

    def files(self) -> list[Path]:
        base = self.root / BARS_DIR
        return sorted(base.rglob("*.parquet")) if base.exists() else []

    def clear(self) -> tuple[int, int, list[tuple[Path, str]]]:
        """Delete every cached bar file (only mtl-bt's ``bars`` folder): (files removed,
        their bytes, [(file, error)] of those that could not be removed). Counts only what
        is really gone."""
        removed, size, failed = 0, 0, []
        for path in self.files():
            try:
                n = path.stat().st_size
                path.unlink()
            except OSError as exc:
                failed.append((path, exc.strerror or str(exc)))
            else:
                removed, size = removed + 1, size + n
        if not failed:
            shutil.rmtree(self.root / BARS_DIR, ignore_errors=True)
        return removed, size, failed
