"""The ``csv`` source: a user's CSV or Parquet bar file (or a folder of them).

Time column: ``date``/``datetime``/``time``/``timestamp`` (any case), an
unnamed first column, or a Parquet datetime index; epoch s/ms/us/ns or ISO
strings; naive times are UTC unless ``tz`` says otherwise. OHLCV names match
case-insensitively. A ``symbol``/``ticker`` column selects rows per symbol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mtl_bt.data.io import (
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    bars_from_table,
    read_table,
    symbol_filename,
)
from mtl_bt.data.source import Source, check_options, clip
from mtl_bt.data.timeframe import normalise_timeframe
from mtl_bt.data.validate import infer_timeframe, normalise
from mtl_bt.errors import ConfigError, DataError

OPTIONS = {
    "path": "a .csv/.csv.gz/.parquet file, or a folder of <symbol>.csv/.parquet files",
    "tz": "time zone of naive times (default UTC), e.g. America/New_York",
    "time_column": "name of the time column when it is not auto-detected",
    "time_unit": "unit of epoch-number times: s, ms, us or ns (default: from their size)",
    "adjust": "true: scale OHLC by 'Adj Close'/'Close' (volume by the inverse)",
}
_SYMBOL_COLUMNS = ("symbol", "ticker")


def _file_for(folder: Path, symbol: str) -> Path:
    stem = symbol_filename(symbol)
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise DataError(
        f"source 'csv': no file for symbol {symbol!r} in {folder} (looked for {stem}.csv, "
        f"{stem}.csv.gz, {stem}.parquet)"
    )


def _adjust(table: pd.DataFrame, symbol: str, path: Path) -> pd.DataFrame:
    lowered = {str(c).strip().lower().replace("_", " "): c for c in table.columns}
    if "adj close" not in lowered or "close" not in lowered:
        raise DataError(
            f"symbol {symbol!r} (file {path}): adjust = true needs 'Adj Close' and 'Close'"
        )
    factor = pd.to_numeric(table[lowered["adj close"]], errors="coerce") / pd.to_numeric(
        table[lowered["close"]], errors="coerce"
    )
    out = table.drop(columns=[lowered["adj close"]]).copy()
    for name in ("open", "high", "low", "close"):
        if name in lowered:
            out[lowered[name]] = pd.to_numeric(out[lowered[name]], errors="coerce") * factor
    if "volume" in lowered:
        out[lowered["volume"]] = pd.to_numeric(out[lowered["volume"]], errors="coerce") / factor
    return out


class CsvSource(Source):
    """Bars from local files; never cached (the file is the cache)."""

    name = "csv"
    cacheable = False

    def fetch(
        self,
        symbols: list[str],
        *,
        timeframe: str | None = None,
        since: Any = None,
        until: Any = None,
        **options: Any,
    ) -> dict[str, pd.DataFrame]:
        check_options("csv", options, OPTIONS)
        if not options.get("path"):
            raise ConfigError(
                "source 'csv' needs option path = a .csv/.parquet file (or a folder of "
                '<symbol>.csv files); e.g. --path bars.csv or [data.options] path = "bars.csv"'
            )
        base = Path(str(options["path"])).expanduser()
        timeframe = normalise_timeframe(timeframe)
        tables: dict[Path, pd.DataFrame] = {}
        out = {}
        for symbol in symbols:
            path = _file_for(base, symbol) if base.is_dir() else base
            if path not in tables:
                tables[path] = read_table(path)
            table = self._rows_for(tables[path], symbol, symbols, path, base.is_dir())
            if options.get("adjust"):
                table = _adjust(table, symbol, path)
            bars = bars_from_table(
                table,
                symbol=symbol,
                tz=options.get("tz"),
                time_column=options.get("time_column"),
                path=path,
                time_unit=options.get("time_unit"),
            )
            frame = normalise(bars, symbol=symbol, source="csv", path=path)
            if timeframe is not None and len(frame) > 1:
                native = infer_timeframe(frame.index)
                if native != timeframe:
                    raise DataError(
                        f"source 'csv': {symbol!r} in {path} has {native} bars, not {timeframe} "
                        f'(no resampling); set data.timeframe = "{native}" or leave it unset'
                    )
                frame.attrs["timeframe"] = timeframe
            out[symbol] = clip(frame, since, until)
        return out

    @staticmethod
    def _rows_for(
        table: pd.DataFrame, symbol: str, symbols: list[str], path: Path, per_symbol: bool
    ) -> pd.DataFrame:
        """One symbol's rows of a long-format file (symbol/ticker column), else the whole file."""
        lowered = {str(c).strip().lower(): c for c in table.columns}
        column = next((lowered[n] for n in _SYMBOL_COLUMNS if n in lowered), None)
        if column is None:
            if len(symbols) > 1 and not per_symbol:
                raise DataError(
                    f"source 'csv': {path} holds one series but {len(symbols)} symbols were asked "
                    "for; add a symbol/ticker column, or point path at a folder of "
                    "<symbol>.csv files"
                )
            return table
        values = table[column].astype(str)
        rows = table[values == symbol]
        if rows.empty:
            available = sorted(values.unique())
            raise DataError(
                f"source 'csv': no rows for symbol {symbol!r} in {path} (column {column!r}); "
                f"symbols in the file: {available[:20]}"
            )
        return rows.drop(columns=[column])
