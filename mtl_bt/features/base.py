"""How a feature function declares its warm-up and its columns.

A feature plugin is a plain function ``fn(frame, **params) -> DataFrame``. The
pipeline must know, *before* computing anything, how many leading bars a
feature needs (to drop them and to check there is enough history) and which
columns it produces (for a stable, checkpointable column order). The
``@feature`` decorator attaches both as attributes; third-party plugins use it
exactly like the built-ins do.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import ConfigError, DataError, PluginError

FeatureFn = Callable[..., pd.DataFrame]


def feature(
    *,
    warmup: Callable[..., int] | int,
    columns: Callable[..., Sequence[str]] | Sequence[str] | None = None,
    uses_volume: bool = False,
    window: Callable[..., int] | int | None = None,
    stream: Callable[..., Any] | None = None,
    batch: Callable[..., Any] | None = None,
    reads: Callable[..., Any] | Any | None = None,
) -> Callable[[FeatureFn], FeatureFn]:
    """Declare a feature's warm-up and columns.

    ``warmup(**params) -> int`` (or a plain int): leading rows that may be NaN (bars needed
    before the first valid value). ``columns(**params) -> list[str]``: output
    column names (default: the registered name, one column). Both receive the
    full parameter set (defaults merged with user values), so they can also
    validate parameter values and raise ``ConfigError``. ``uses_volume`` marks
    features that need a real volume column.

    Streaming (feeds that are not preloaded, see ``mtl_bt.features.streaming``):
    the newest row is recomputed from the last ``window(**params)`` bars (default
    ``warmup + 1``, exact for a feature whose row t reads bars t-warmup..t only).
    A feature with longer memory (a recursive average) declares a longer
    ``window``, or ``stream(**params)``: a factory of an incremental updater
    with ``update(bars) -> sequence of its column values`` for the newest bar.
    ``batch(n_assets, **params)``: optionally, an updater for many assets at once, whose
    ``update(bars: BatchBars)`` returns one array per column over a step's assets
    (``mtl_bt.features.streaming.BatchStream``, used by backtests with many feeds).

    Cross-frame: ``reads(**params) -> mtl_bt.features.frames.Reads`` (or a ``Reads``) makes
    the function run on another frame (another symbol of the run, every symbol, or the bars
    aggregated to a higher timeframe); the engine puts its rows on the target's bars from
    closed bars only. ``warmup`` then counts the source frame's bars, and ``stream`` gets
    the source's bars (``mtl_bt.features.frames`` says exactly which bar sees what).
    """

    def wrap(fn: FeatureFn) -> FeatureFn:
        fn.warmup = warmup  # type: ignore[attr-defined]
        fn.columns = columns  # type: ignore[attr-defined]
        fn.uses_volume = uses_volume  # type: ignore[attr-defined]
        fn.window = window  # type: ignore[attr-defined]
        fn.stream = stream  # type: ignore[attr-defined]
        fn.batch = batch  # type: ignore[attr-defined]
        fn.reads = reads  # type: ignore[attr-defined]
        return fn

    return wrap


def defaults(fn: FeatureFn) -> dict[str, Any]:
    """The keyword parameters of a feature function with their defaults."""
    out: dict[str, Any] = {}
    for i, (name, p) in enumerate(inspect.signature(fn).parameters.items()):
        if i == 0 or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue  # the frame, *args, **kwargs
        out[name] = plain(p.default) if p.default is not p.empty else None
    return out


def accepts_any(fn: FeatureFn) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def plain(value: Any) -> Any:
    """Tuples -> lists, numpy scalars -> Python: params must be TOML/checkpoint plain data."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def declared_warmup(name: str, fn: FeatureFn, params: dict[str, Any]) -> int:
    hook = getattr(fn, "warmup", None)
    if hook is None:
        raise PluginError(
            f"feature {name!r} does not declare its warm-up; decorate it with "
            "@mtl_bt.features.feature(warmup=...)"
        )
    value = hook(**params) if callable(hook) else hook
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PluginError(f"feature {name!r} declared warm-up {value!r}; expected an int >= 0")
    return value


def declared_columns(name: str, fn: FeatureFn, params: dict[str, Any]) -> list[str]:
    hook = getattr(fn, "columns", None)
    if hook is None:
        return [name]
    cols = list(hook(**params) if callable(hook) else hook)
    if not cols or not all(isinstance(c, str) and c for c in cols):
        raise PluginError(f"feature {name!r} declared columns {cols!r}; expected non-empty strings")
    return cols


# -- parameter validators used by the built-ins' warmup/columns hooks --------


def window(feature_name: str, key: str, value: Any, minimum: int = 1) -> int:
    """An integer window >= ``minimum`` or a ConfigError naming feature and key."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"features.params.{feature_name}.{key} = {value!r}: expected an integer >= {minimum}"
        )
    return value


def windows(feature_name: str, key: str, value: Any) -> list[int]:
    """A non-empty list of distinct integer windows >= 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(
            f"features.params.{feature_name}.{key} = {value!r}: expected a non-empty list of "
            "integers >= 1, e.g. [1, 5, 10]"
        )
    out = [window(feature_name, key, v) for v in value]
    if len(set(out)) != len(out):
        raise ConfigError(f"features.params.{feature_name}.{key} = {value!r}: duplicate windows")
    return out


def positive(feature_name: str, key: str, value: Any) -> float:
    """A finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"features.params.{feature_name}.{key} = {value!r}: expected a number > 0"
        )
    if value <= 0:
        raise ConfigError(
            f"features.params.{feature_name}.{key} = {value!r}: expected a number > 0"
        )
    return float(value)


def symbol_of(frame: pd.DataFrame) -> str:
    return str(frame.attrs.get("symbol", "(unknown symbol)"))


def require_volume(frame: pd.DataFrame, names: Sequence[str]) -> pd.Series:
    """The volume column, or a DataError if it is missing, has NaN, or is all zero.

    Sources without real volume (some FX/index feeds) deliver NaN or zeros;
    volume features computed from those would be NaN or constant noise.
    """
    what = ", ".join(names)
    symbol = symbol_of(frame)
    fix = (
        f"drop the volume feature(s) ({what}) from features.names, or use a source with real volume"
    )
    if "volume" not in frame.columns:
        raise DataError(f"{symbol}: no volume column, but feature(s) {what} need volume; {fix}")
    volume = frame["volume"]
    values = volume.to_numpy(dtype="float64")
    bad = ~np.isfinite(values)
    if bad.any():
        first = frame.index[int(np.argmax(bad))]
        raise DataError(
            f"{symbol}: volume is missing (NaN/inf) in {int(bad.sum())} of {len(values)} bars "
            f"(first at {first}), but feature(s) {what} need volume; {fix}"
        )
    if (values < 0).any():
        first = frame.index[int(np.argmax(values < 0))]
        raise DataError(f"{symbol}: negative volume at {first}; fix the data")
    if len(values) and not (values > 0).any():
        raise DataError(
            f"{symbol}: volume is zero in every bar (the source has no volume), but feature(s) "
            f"{what} need volume; {fix}"
        )
    return volume.astype("float64")
