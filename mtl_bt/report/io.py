"""Atomic artefact writes: a temp file in the target folder, then ``os.replace``.

Ctrl-C or a crash mid-write must never leave a half-written artefact behind, because re-runs
skip jobs whose artefacts exist; a truncated file would be trusted forever.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_bt.atomic import atomic_write, write_bytes, write_text

__all__ = ["atomic_write", "write_bytes", "write_csv", "write_json", "write_parquet", "write_text"]


def _jsonable(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame, **kwargs: Any) -> Path:
    kwargs.setdefault("index", False)
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, **kwargs))


def write_parquet(path: str | Path, frame: pd.DataFrame) -> Path:
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
