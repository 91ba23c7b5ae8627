"""Which features to compute, with which parameters; computing them; dropping warm-up.

A ``FeatureSpec`` is plain data saved in every checkpoint: the resolved feature
names and their full parameters (defaults included), so a model reloaded after
a default changed still gets exactly the columns it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from mtl_bt.features.frames import Reads, check_frames, cross_values, leading_rows, reads_of
from mtl_bt.plugin_calls import call_feature

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
#: separates a feature plugin's name from an instance label: ``"cross_asset@eth"``
INSTANCE = "@"


def plugin_name(name: str) -> str:
    """The plugin an instance name runs: ``"cross_asset@eth"`` -> ``"cross_asset"``."""
    return str(name).split(INSTANCE, 1)[0]


def feature_fn(name: str) -> Any:
    """The feature function of a name or an instance name (``plugin@label``)."""
    base, sep, label = str(name).partition(INSTANCE)
    if sep and (not base or not label):
        raise ConfigError(
            f"features.names entry {name!r}: an instance is named plugin{INSTANCE}label, "
            f"e.g. 'cross_asset{INSTANCE}eth'"
        )
    return registry.get("feature", base)


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
    _reads: dict[str, Reads] = field(init=False, repr=False)

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
        reads: dict[str, Reads] = {}
        for name in names:
            fn = feature_fn(name)
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
            own = declared_warmup(name, fn, full)
            read = reads_of(name, fn, full)
            if read is None:
                warmup = max(warmup, own)
            else:  # its warm-up counts the source's bars: the rows it leaves NaN are dropped
                reads[name] = read
                if read.staleness:
                    columns.append(read.staleness)
        clash = sorted({c for c in columns if columns.count(c) > 1})
        if clash:
            raise PluginError(f"features produce the same column name(s) {clash}; rename one")
        self.names = names
        self.params = {k: plain(v) for k, v in params.items()}
        self._resolved, self._columns, self._warmup = resolved, columns, warmup
        self._reads = reads

    # -- what the pipeline asks ------------------------------------------------
    def columns(self) -> list[str]:
        """Output columns in their stable order."""
        return list(self._columns)

    def warmup(self) -> int:
        """Leading bars that are NaN for at least one single-frame feature (dropped). The
        cross-frame features' warm-up counts other frames' bars: ``drop_warmup`` also drops
        the leading rows they leave NaN."""
        return self._warmup

    def reads(self) -> dict[str, Reads]:
        """The cross-frame features and the frame each reads (``mtl_bt.features.frames``)."""
        return dict(self._reads)

    def symbols_read(self) -> list[str]:
        """Other symbols the features read by name (a market mean reads every symbol)."""
        return list(dict.fromkeys(r.symbol for r in self._reads.values() if r.symbol))

    def reads_all_symbols(self) -> bool:
        return any(r.all_symbols for r in self._reads.values())

    def cross_columns(self) -> list[str]:
        """Columns of the cross-frame features, in the spec's column order."""
        out: list[str] = []
        for name, params in self._resolved.items():
            if name in self._reads:
                out.extend(feature_columns(name, params, self._reads[name]))
        return out

    def local(self) -> FeatureSpec | None:
        """The single-frame part of the spec (``None`` if every feature reads other frames)."""
        names = [n for n in self._resolved if n not in self._reads]
        if not names:
            return None
        if len(names) == len(self._resolved):
            return self
        return FeatureSpec(names=names, params={n: self._resolved[n] for n in names})

    def resolved_params(self) -> dict[str, dict[str, Any]]:
        """Full parameters (defaults merged) per feature."""
        return {k: dict(v) for k, v in self._resolved.items()}

    def uses_volume(self) -> list[str]:
        return [n for n in self._resolved if getattr(feature_fn(n), "uses_volume", False)]

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


def feature_columns(name: str, params: dict[str, Any], reads: Reads | None = None) -> list[str]:
    """A feature's output columns (a cross-frame feature's staleness column last)."""
    cols = declared_columns(name, feature_fn(name), params)
    return cols + [reads.staleness] if reads is not None and reads.staleness else cols


def compute(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    context: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Raw (unscaled) features, columns ``spec.columns()``, NaN in warm-up rows.

    ``context``: every symbol's frame of the run, ``{symbol: frame}`` (``frame`` is the one
    named by ``frame.attrs["symbol"]``), for features that read other symbols.
    """
    _check_prices(frame)
    vol_features = spec.uses_volume()
    if vol_features:
        require_volume(frame, vol_features)
    reads = spec.reads()
    if context is not None and reads:
        check_frames(context)
        for s, f in context.items():
            if f is not frame:
                _check_prices(_named(f, s))
    parts = []
    for name, params in spec.resolved_params().items():
        fn = feature_fn(name)
        if name in reads:
            cols = declared_columns(name, fn, params)
            values = cross_values(
                name,
                fn,
                params,
                reads[name],
                cols,
                declared_warmup(name, fn, params),
                frame,
                context,
            )
            parts.append(values)
            continue
        out = call_feature(name, fn, frame, params)
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


def _named(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    out = frame.copy(deep=False)
    out.attrs = {**frame.attrs, "symbol": symbol}
    return out


def drop_warmup(features: pd.DataFrame, spec: FeatureSpec, symbol: str) -> tuple[pd.DataFrame, int]:
    """Drop the first ``spec.warmup()`` rows (and the leading rows a cross-frame feature
    leaves NaN while the frames it reads warm up); any NaN/inf after them is a DataError
    naming the column, the symbol and the first bad timestamp."""
    n = spec.warmup()
    cross = spec.cross_columns()
    if cross and len(features):
        n = max(n, leading_rows(features[cross].to_numpy(np.float64)))
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
