"""Market data: sources, validation, cache.

Public API: :func:`load_frames` (config -> validated frames per symbol),
:func:`read_frame`/:func:`write_frame` (CSV/Parquet bar files),
:func:`symbol_filename`, and the :mod:`mtl_bt.data.validate` module.
"""

from mtl_bt.data.io import read_frame, symbol_filename, write_frame
from mtl_bt.data.loader import load_frames, make_source
from mtl_bt.data.source import COLUMNS, INDEX_NAME, Source
from mtl_bt.data.validate import DataWarning, describe, infer_timeframe, normalise

__all__ = [
    "COLUMNS",
    "INDEX_NAME",
    "DataWarning",
    "Source",
    "describe",
    "infer_timeframe",
    "load_frames",
    "make_source",
    "normalise",
    "read_frame",
    "symbol_filename",
    "write_frame",
]
