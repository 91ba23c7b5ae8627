"""Dataset assembly: per-symbol causal features + targets, pooled on one time axis.

Rows are stored symbol by symbol (so a sequence window is a contiguous block
that never crosses symbols) while ``samples`` lists usable rows in time order
(then asset id), which is what the splits and the predictions follow. Rows whose
targets are not all known (the last bars) are kept: they can still be predicted,
they just never train.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import DataError
from mtl_bt.features.frames import named_frames

#: label_end of a row whose target window runs past the data
NO_LABEL = np.iinfo(np.int64).max


@dataclass
class SymbolBlock:
    """One symbol's post-warm-up rows: raw features, targets, timestamps."""

    symbol: str
    features: pd.DataFrame  # raw causal features, warm-up rows dropped
    targets: pd.DataFrame  # aligned to ``features.index``; NaN where the future is unknown
    label_end_time: np.ndarray  # int64 ns: timestamp of bar t+H (NO_LABEL if beyond the data)
    warmup: int  # rows dropped at the start


@dataclass
class Dataset:
    """All symbols stacked; see the module docstring."""

    symbols: list[str]
    feature_columns: list[str]
    task_names: list[str]
    horizon: int  # largest task horizon (the purge)
    lookback: int  # rows per sample (1: the current feature row)
    features: np.ndarray  # (N, F) float32, raw (unscaled), symbol-blocked
    targets: np.ndarray  # (N, T) float32, NaN where unknown
    asset: np.ndarray  # (N,) int64 asset id = index into ``symbols``
    times: np.ndarray  # (N,) int64 ns UTC
    pos: np.ndarray  # (N,) int64 position of the row's time on ``axis``
    label_end: np.ndarray  # (N,) int64 axis position of bar t+H (NO_LABEL if unknown)
    axis: pd.DatetimeIndex  # sorted union of every symbol's timestamps
    samples: np.ndarray  # row ids with a full lookback window, sorted by (pos, asset)
    trainable: np.ndarray  # (N,) bool: every target finite
    warmup: dict[str, int] = field(default_factory=dict)
    no_window: dict[str, int] = field(default_factory=dict)  # rows lacking a full lookback

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    def window_rows(self, rows: np.ndarray) -> np.ndarray:
        """Row ids of each sample's lookback window, shape (n, lookback), oldest first."""
        offsets = np.arange(1 - self.lookback, 1, dtype=np.int64)
        return rows[:, None] + offsets[None, :]

    def rows_in(
        self, start: int, stop: int, *, trainable: bool, label_before: int | None = None
    ) -> np.ndarray:
        """Sample rows whose time lies in axis positions [start, stop).

        ``trainable`` keeps rows with every target known; ``label_before`` also
        drops rows whose target window reaches axis position ``label_before``
        (the purge, checked per row so gaps in one symbol cannot leak).
        """
        rows = self.samples
        p = self.pos[rows]
        lo, hi = np.searchsorted(p, [start, stop], side="left")
        rows = rows[lo:hi]
        if trainable:
            rows = rows[self.trainable[rows]]
        if label_before is not None:
            rows = rows[self.label_end[rows] < label_before]
        return rows


def symbol_block(
    symbol: str,
    frame: pd.DataFrame,
    features: pd.DataFrame,
    targets: pd.DataFrame,
    horizon: int,
) -> SymbolBlock:
    """Align one symbol's post-warm-up features with its targets."""
    if not features.index.isin(frame.index).all():
        raise DataError(f"{symbol}: feature rows are not a subset of the bars")
    targets = targets.reindex(features.index)
    ns = frame.index.as_unit("ns").asi8
    where = np.searchsorted(ns, features.index.as_unit("ns").asi8)
    ahead = where + horizon
    label_end = np.full(len(where), NO_LABEL, dtype=np.int64)
    ok = ahead < len(ns)
    label_end[ok] = ns[ahead[ok]]
    return SymbolBlock(symbol, features, targets, label_end, len(frame) - len(features))


def assemble(
    blocks: Sequence[SymbolBlock],
    feature_columns: Sequence[str],
    task_names: Sequence[str],
    horizon: int,
    lookback: int = 1,
) -> Dataset:
    """Stack per-symbol blocks into one pooled dataset."""
    if not blocks:
        raise DataError("no symbols to train on")
    if lookback < 1:
        raise ValueError("lookback must be >= 1")
    feature_columns = list(feature_columns)
    task_names = list(task_names)
    empty = [b.symbol for b in blocks if len(b.features) == 0]
    if empty:
        raise DataError(
            f"no rows left after the feature warm-up for {empty} "
            f"(warm-up drops {[b.warmup for b in blocks if b.symbol in empty]} rows); load more bars"
        )
    axis = pd.DatetimeIndex(
        np.unique(np.concatenate([b.features.index.as_unit("ns").asi8 for b in blocks])), tz="UTC"
    ).rename("datetime")
    axis_ns = axis.asi8
    feats, targs, assets, times, starts = [], [], [], [], []
    label_end = []
    no_window: dict[str, int] = {}
    offset = 0
    for asset_id, b in enumerate(blocks):
        missing = [c for c in feature_columns if c not in b.features.columns]
        if missing:
            raise DataError(f"{b.symbol}: feature columns {missing} missing")
        missing = [t for t in task_names if t not in b.targets.columns]
        if missing:
            raise DataError(f"{b.symbol}: target columns {missing} missing")
        n = len(b.features)
        feats.append(b.features[feature_columns].to_numpy(np.float32))
        targs.append(b.targets[task_names].to_numpy(np.float32))
        assets.append(np.full(n, asset_id, dtype=np.int64))
        times.append(b.features.index.as_unit("ns").asi8)
        end = np.full(n, NO_LABEL, dtype=np.int64)
        known = b.label_end_time != NO_LABEL
        # a bar t+H that is not on the axis (inside another symbol's warm-up cannot
        # happen: it is after this symbol's warm-up) maps to the next axis bar
        end[known] = np.searchsorted(axis_ns, b.label_end_time[known], side="left")
        label_end.append(end)
        starts.append(np.arange(offset + lookback - 1, offset + n, dtype=np.int64))
        no_window[b.symbol] = min(n, lookback - 1)
        offset += n
    features = np.concatenate(feats)
    targets = np.concatenate(targs)
    asset = np.concatenate(assets)
    ts = np.concatenate(times)
    pos = np.searchsorted(axis_ns, ts).astype(np.int64)
    rows = np.concatenate(starts)
    order = np.lexsort((asset[rows], pos[rows]))
    samples = rows[order]
    if not np.isfinite(features).all():
        bad = np.argwhere(~np.isfinite(features))[0]
        raise DataError(
            f"{blocks[int(asset[bad[0]])].symbol}: feature {feature_columns[bad[1]]!r} is not "
            f"finite at {pd.Timestamp(ts[bad[0]], tz='UTC')} after the warm-up"
        )
    return Dataset(
        symbols=[b.symbol for b in blocks],
        feature_columns=feature_columns,
        task_names=task_names,
        horizon=horizon,
        lookback=lookback,
        features=features,
        targets=targets,
        asset=asset,
        times=ts,
        pos=pos,
        label_end=np.concatenate(label_end),
        axis=axis,
        samples=samples,
        trainable=np.isfinite(targets).all(axis=1),
        warmup={b.symbol: b.warmup for b in blocks},
        no_window=no_window,
    )


run_frames = named_frames  # the run's frames, named by symbol (cross-frame features' context)


def symbol_features(
    frames: Mapping[str, pd.DataFrame], feature_spec: Any
) -> dict[str, pd.DataFrame]:
    """Every symbol's causal features, warm-up rows dropped, in the spec's column order.

    Features that read other frames see the run's other symbols (``frames``) through
    ``compute``'s context: at each bar only their bars closed by then."""
    from mtl_bt import features as feat

    columns = list(feature_spec.columns())
    context = run_frames(frames) if feature_spec.reads() else None
    out = {}
    for symbol, frame in frames.items():
        if context is not None:
            frame = context[symbol]
        raw = feat.compute(frame, feature_spec, context)
        kept, _ = feat.drop_warmup(raw, feature_spec, symbol)
        out[symbol] = kept[columns]
    return out


def build_dataset(
    frames: Mapping[str, pd.DataFrame],
    feature_spec: Any,
    tasks: Sequence[Any],
    lookback: int = 1,
    *,
    features: Mapping[str, pd.DataFrame] | None = None,
) -> Dataset:
    """Features (causal, warm-up dropped) and targets for every symbol, pooled.

    ``features``: ``symbol_features(frames, feature_spec)`` computed before (the same data
    and spec; ``cached_dataset`` shares them between task sets), else computed here.
    """
    from mtl_bt.tasks import build_targets

    if not frames:
        raise DataError("no market data: the data section selected no symbols")
    columns = list(feature_spec.columns())
    names = [t.name for t in tasks]
    horizon = max(t.horizon for t in tasks)
    if features is None:
        features = symbol_features(frames, feature_spec)
    blocks = []
    for symbol, frame in frames.items():
        targets = build_targets(frame, tasks)
        blocks.append(symbol_block(symbol, frame, features[symbol], targets, horizon))
    return assemble(blocks, columns, names, horizon, lookback)


#: datasets built in this process, newest last (see ``cached_dataset``)
_CACHE: OrderedDict[str, Dataset] = OrderedDict()
_CACHE_SIZE = 4
#: per-symbol features of the data + feature spec of the newest cached datasets: every task
#: set of a sweep (the MTL model, each single-task model) shares them
_FEATURES: OrderedDict[str, dict[str, pd.DataFrame]] = OrderedDict()
_FEATURES_SIZE = 2


def frames_digest(frames: Mapping[str, pd.DataFrame]) -> str:
    """A digest of the symbols, columns, index and values of ``frames`` (a few ms a year
    of hourly bars): equal digests mean the same market data, whatever the objects."""
    h = hashlib.sha256()
    for symbol, frame in frames.items():
        h.update(repr((symbol, list(frame.columns), frame.shape)).encode())
        h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def cached_features(
    frames: Mapping[str, pd.DataFrame], feature_spec: Any, *, digest: str | None = None
) -> dict[str, pd.DataFrame]:
    """``symbol_features``, memoised per process on the data's content and the feature
    settings (read-only, as ``cached_dataset``); ``digest``: ``frames_digest(frames)``."""
    key = json.dumps(
        [digest or frames_digest(frames), feature_spec.to_dict()], sort_keys=True, default=str
    )
    if key in _FEATURES:
        _FEATURES.move_to_end(key)
        return _FEATURES[key]
    _FEATURES[key] = symbol_features(frames, feature_spec)
    while len(_FEATURES) > _FEATURES_SIZE:
        _FEATURES.popitem(last=False)
    return _FEATURES[key]


def cached_dataset(
    frames: Mapping[str, pd.DataFrame],
    feature_spec: Any,
    tasks: Sequence[Any],
    lookback: int = 1,
) -> Dataset:
    """``build_dataset``, memoised per process on the data's content and the feature,
    task and lookback settings.

    A sweep (``mtl-bt compare``) runs one job per (variant, seed, fold) in a few worker
    processes, and every job of a variant family used to recompute the same features and
    targets from the same frames: about a fifth of a fold job on the bundled crypto
    config. The features alone are also shared between task sets (single-task models of
    each task): only targets are rebuilt. Callers must treat the returned dataset as read-only (the training pipeline
    does: folds scale copies), and the feature and task plugins must not change between
    calls (true inside one sweep; ``train_walk_forward`` only uses this when asked,
    ``reuse_dataset=True``, which compare's fold jobs do).
    """
    digest = frames_digest(frames)
    key = json.dumps(
        [
            digest,
            feature_spec.to_dict(),
            [[type(t).__module__, type(t).__qualname__, dataclasses.asdict(t.spec)] for t in tasks],
            int(lookback),
        ],
        sort_keys=True,
        default=str,
    )
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    features = cached_features(frames, feature_spec, digest=digest)
    ds = build_dataset(frames, feature_spec, tasks, lookback, features=features)
    _CACHE[key] = ds
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return ds
