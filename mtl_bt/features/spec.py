"""Which features to compute, with which parameters; computing them; dropping warm-up.

A ``FeatureSpec`` is plain data saved in every checkpoint: the resolved feature
names and their full parameters (defaults included), so a model reloaded after
a default changed still gets exactly the columns it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt import registry
from mtl_bt.errors import ConfigError, DataError, PluginError
from mtl_bt.features.base import (
    accepts_any,
    declared_columns,
    declared_warmup,
    defaults,
    plain,
    require_volume,
    symbol_of,
)

#: All built-in features in their fixed order (``names = None`` means these).
DEFAULT_FEATURES: tuple[str, ...] = (
    "log_return",
    "close_sma",
    "close_ema",
    "volatility",
    "momentum",
    "rsi",
    "macd",
    "bollinger",
    "volume_ratio",
    "volume_zscore",
    "parkinson",
    "garman_klass",
)
#: The reference ten columns: log_return_{1,5,10} + the next seven features.
REFERENCE_FEATURES: tuple[str, ...] = DEFAULT_FEATURES[:8]
#: Built-ins that need no volume (for sources without real volume).
PRICE_FEATURES: tuple[str, ...] = tuple(n for n in DEFAULT_FEATURES if not n.startswith("volume_"))

_PRICES = ("open", "high", "low", "close")


@dataclass(eq=False)
class FeatureSpec:
    """Feature names (``None``: all built-ins, ``DEFAULT_FEATURES`` order) and
    per-feature parameters ``{name: {param: value}}``. Validated on creation:
    unknown features, parameters or values are errors naming them."""

    names: list[str] | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    _resolved: dict[str, dict[str, Any]] = field(init=False, repr=False)
    _columns: list[str] = field(init=False, repr=False)
    _warmup: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = list(DEFAULT_FEATURES) if self.names is None else self.names
        if isinstance(names, str) or not isinstance(names, list | tuple) or not names:
            raise ConfigError(f"features.names = {self.names!r}: expected a non-empty list")
        names = [str(n) for n in names]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"features.names lists {dupes} more than once")
        params = self.params or {}
        unused = sorted(set(params) - set(names))
        if unused:
            raise ConfigError(
                f"features.params has parameters for {unused}, which are not in features.names "
                f"{names}; remove them or add the feature"
            )
        resolved: dict[str, dict[str, Any]] = {}
        columns: list[str] = []
        warmup = 0
        for name in names:
            fn = registry.get("feature", name)
            given = params.get(name) or {}
            if not isinstance(given, dict):
                raise ConfigError(f"features.params.{name} = {given!r}: expected a table")
            full = defaults(fn)
            unknown = sorted(set(given) - set(full))
            if unknown and not accepts_any(fn):
                raise ConfigError(
                    f"features.params.{name}: unknown parameter(s) {unknown}; "
                    f"{name} takes {sorted(full) or 'no parameters'}"
                )
            full.update(plain(given))
            resolved[name] = full
            columns.extend(declared_columns(name, fn, full))
            warmup = max(warmup, declared_warmup(name, fn, full))
        clash = sorted({c for c in columns if columns.count(c) > 1})
        if clash:
            raise PluginError(f"features produce the same column name(s) {clash}; rename one")
        self.names = names
        self.params = {k: plain(v) for k, v in params.items()}
        self._resolved, self._columns, self._warmup = resolved, columns, warmup

    # -- what the pipeline asks ------------------------------------------------
    def columns(self) -> list[str]:
        """Output columns in their stable order."""
        return list(self._columns)

    def warmup(self) -> int:
        """Leading bars that are NaN for at least one feature (dropped)."""
        return self._warmup

    def resolved_params(self) -> dict[str, dict[str, Any]]:
        """Full parameters (defaults merged) per feature."""
        return {k: dict(v) for k, v in self._resolved.items()}

    def uses_volume(self) -> list[str]:
        return [
            n for n in self._resolved if getattr(registry.get("feature", n), "uses_volume", False)
        ]

    # -- plain data ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain lists/dicts/numbers (TOML- and ``weights_only`` checkpoint-safe)."""
        return {"names": list(self._resolved), "params": plain(self._resolved)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(names=data.get("names"), params=data.get("params") or {})

    @classmethod
    def from_config(cls, config: Any) -> FeatureSpec:
        """From ``mtl_bt.config.FeaturesConfig`` (or anything with names/params)."""
        return cls(names=config.names, params=dict(config.params))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))


def _check_prices(frame: pd.DataFrame) -> None:
    symbol = symbol_of(frame)
    missing = [c for c in _PRICES if c not in frame.columns]
    if missing:
        raise DataError(f"{symbol}: frame lacks price column(s) {missing}; features need OHLC")
    values = frame[list(_PRICES)].to_numpy(dtype="float64")
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{symbol}: {_PRICES[col]} is {float(values[row, col])!r} at {frame.index[row]} "
            f"({int(bad.any(axis=1).sum())} bad bars); prices must be finite and > 0. "
            "Fix or re-fetch the data"
        )


def compute(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Raw (unscaled) features, columns ``spec.columns()``, NaN in warm-up rows."""
    _check_prices(frame)
    vol_features = spec.uses_volume()
    if vol_features:
        require_volume(frame, vol_features)
    parts = []
    for name, params in spec.resolved_params().items():
        fn = registry.get("feature", name)
        out = fn(frame, **params)
        expected = declared_columns(name, fn, params)
        if not isinstance(out, pd.DataFrame) or list(out.columns) != expected:
            got = list(out.columns) if isinstance(out, pd.DataFrame) else type(out).__name__
            raise PluginError(f"feature {name!r} returned {got}, declared columns {expected}")
        if len(out) != len(frame) or not out.index.equals(frame.index):
            raise PluginError(f"feature {name!r} returned rows not aligned to the frame's index")
        parts.append(out.to_numpy(dtype="float64"))
    result = pd.DataFrame(np.concatenate(parts, axis=1), index=frame.index, columns=spec.columns())
    result.attrs = dict(frame.attrs)
    return result


def drop_warmup(features: pd.DataFrame, spec: FeatureSpec, symbol: str) -> tuple[pd.DataFrame, int]:
    """Drop the first ``spec.warmup()`` rows; any NaN/inf after them is a DataError
    naming the column, the symbol and the first bad timestamp."""
    n = spec.warmup()
    if len(features) <= n:
        raise DataError(
            f"{symbol}: {len(features)} bars, but the features need {n} warm-up bars plus at "
            f"least one more; load more history (data.since) or use shorter feature windows"
        )
    kept = features.iloc[n:]
    values = kept.to_numpy(dtype="float64")
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        column, value = kept.columns[col], float(values[row, col])
        raise DataError(
            f"{symbol}: feature {column!r} is {value!r} at {kept.index[row]}, after the "
            f"{n}-bar warm-up ({int(bad[:, col].sum())} bad rows in that column). Usually a gap or "
            "bad value in the data near that time: fix the data, or drop the feature"
        )
    return kept, n


def min_bars(spec: FeatureSpec, horizon: int = 0) -> int:
    """Fewest bars for one usable (feature, target) row: warm-up + 1 + horizon."""
    return spec.warmup() + 1 + max(0, int(horizon))
