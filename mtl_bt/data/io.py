"""Reading and writing bar files (CSV or Parquet): flexible on input, exact and atomic on output."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mtl_bt.atomic import atomic_write
from mtl_bt.data.source import COLUMNS, INDEX_NAME
from mtl_bt.data.timeframe import parse_times
from mtl_bt.data.validate import normalise
from mtl_bt.errors import DataError

#: time-column names recognised (case-insensitive), in order of preference
TIME_COLUMNS = ("datetime", "date", "time", "timestamp")
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")


def symbol_filename(symbol: str) -> str:
    """File-system name of a symbol: ``"BTC/USDT"`` -> ``"BTC_USDT"`` (``:`` too)."""
    name = str(symbol).replace("/", "_").replace(":", "_").replace("\\", "_")
    if not name or name in {".", ".."}:
        raise DataError(f"symbol {symbol!r} cannot be used as a file name")
    return name


def file_format(path: str | os.PathLike[str]) -> str:
    """``"csv"`` or ``"parquet"`` from the file name; clear error otherwise."""
    name = str(path).lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise DataError(f"file {path}: unknown format; use a .csv, .csv.gz or .parquet file")


#: what ``write_frame`` writes (``.txt`` is read as CSV, never written: say what you get)
OUTPUT_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def output_format(path: str | os.PathLike[str]) -> str:
    """``"csv"`` or ``"parquet"`` for a file to write; clear error for any other name."""
    if not str(path).lower().endswith(OUTPUT_SUFFIXES):
        raise DataError(
            f"output file {path}: unknown format; name it .csv, .csv.gz or .parquet (or give "
            "a folder)"
        )
    return file_format(path)


def write_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a canonical frame to ``.csv``/``.csv.gz`` (ISO UTC times) or ``.parquet``, atomically."""
    fmt = output_format(path)
    out = frame.loc[:, list(COLUMNS)]
    if fmt == "csv":
        compression = "gzip" if str(path).lower().endswith(".gz") else None

        def write(tmp: Path) -> None:
            text = out.copy()
            text.index = _iso_times(text.index)
            text.to_csv(tmp, index_label=INDEX_NAME, compression=compression)

    else:

        def write(tmp: Path) -> None:
            keep = out.copy()
            keep.attrs = {k: v for k, v in frame.attrs.items() if isinstance(v, str | None)}
            keep.to_parquet(tmp, engine="pyarrow")

    return atomic_write(path, write)


def _iso_times(index: pd.DatetimeIndex) -> pd.Index:
    """ISO strings in UTC, as short as the data's precision allows (exact round trip)."""
    ns = pd.DatetimeIndex(index).tz_convert("UTC").as_unit("ns")
    ticks = ns.asi8
    if (ticks % 1000 != 0).any():
        return pd.Index([stamp.isoformat() for stamp in ns])
    if (ticks % 1_000_000_000 != 0).any():
        return pd.Index(ns.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"))
    return pd.Index(ns.strftime("%Y-%m-%dT%H:%M:%S+00:00"))


def _time_column(table: pd.DataFrame) -> object | None:
    lowered = {str(c).strip().lower(): c for c in table.columns}
    for name in TIME_COLUMNS:
        if name in lowered:
            return lowered[name]
    first = table.columns[0] if len(table.columns) else None
    if first is not None and (str(first).startswith("Unnamed") or str(first).strip() == ""):
        return first
    return None


def bars_from_table(
    table: pd.DataFrame,
    *,
    symbol: str,
    tz: str | None = None,
    time_column: str | None = None,
    path: object = None,
    time_unit: str | None = None,
) -> pd.DataFrame:
    """Put the time column (``date``/``datetime``/``time``/``timestamp``, an unnamed first
    column, or a datetime index) into the index; other columns stay as they are."""
    where = f"symbol {symbol!r}" + (f" (file {path})" if path is not None else "")
    if time_column is not None:
        matches = [c for c in table.columns if str(c).lower() == time_column.lower()]
        if not matches:
            raise DataError(
                f"{where}: time column {time_column!r} not found; columns: "
                f"{[str(c) for c in table.columns]}"
            )
        column = matches[0]
    else:
        column = _time_column(table)
    if column is not None:
        index = parse_times(
            table[column], symbol=symbol, tz=tz, path=path, unit=time_unit, column=column
        )
        body = table.drop(columns=[column])
    elif isinstance(table.index, pd.DatetimeIndex) or (
        table.index.name is not None and str(table.index.name).lower() in TIME_COLUMNS
    ):
        index = parse_times(
            table.index.to_series(), symbol=symbol, tz=tz, path=path, unit=time_unit
        )
        body = table
    else:
        raise DataError(
            f"{where}: no time column; name it date, datetime, time or timestamp (or leave the "
            f"first column unnamed); columns: {[str(c) for c in table.columns]}"
        )
    body = body.copy()
    body.index = index
    return body


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The raw table in a CSV/Parquet file, clear errors for missing/unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} not found")
    fmt = file_format(path)
    try:
        if fmt == "csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"data file {path} cannot be read as {fmt}: {exc}") from None


def read_frame(
    path: str | os.PathLike[str],
    symbol: str | None = None,
    *,
    tz: str | None = None,
    timeframe: str | None = None,
) -> pd.DataFrame:
    """A canonical, validated frame from a CSV/Parquet bar file (any supported header layout).

    ``symbol`` defaults to the symbol stored in a Parquet file, else the file stem.
    """
    path = Path(path)
    table = read_table(path)
    stored = table.attrs.get("symbol") if isinstance(table.attrs, dict) else None
    if symbol is None:
        symbol = stored or path.name.split(".")[0]
    bars = bars_from_table(table, symbol=symbol, tz=tz, path=path)
    return normalise(bars, symbol=symbol, source="file", timeframe=timeframe, path=path)
