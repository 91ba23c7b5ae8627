"""add_baselines finds each fold's rows of each symbol once (it compared the whole symbol
column with every symbol in every fold: quadratic in assets); the columns it writes are
exactly those of that earlier implementation, kept here as the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.data.synthetic import garch_bars
from mtl_bt.metrics.volatility import (
    _fit_ols,
    add_baselines,
    bar_of,
    ewma_lambda,
    ewma_variance,
    forward_realised_vol,
    har_features,
    log_returns,
)


def _reference(predictions, frames, folds, floor: float = 1e-4) -> pd.DataFrame:
    """The per-symbol-mask implementation before the row grouping (same arithmetic)."""
    tasks = [c for c in predictions.columns if str(c).startswith("volatility@")]
    out = predictions.copy()
    starts: dict[Any, pd.Timestamp] = {
        f.get("fold"): pd.Timestamp(f["test_start"]) for f in folds if f.get("test_start")
    }
    times = pd.to_datetime(out["datetime"], utc=True)
    for task in tasks:
        h = int(task.split("@", 1)[1])
        ewma_col = np.full(len(out), np.nan)
        har_col = np.full(len(out), np.nan)
        per_symbol = {}
        for symbol, frame in frames.items():
            close = frame["close"].to_numpy(np.float64)
            r = log_returns(close)
            target = forward_realised_vol(frame["close"].astype("float64"), h).to_numpy() ** 2
            index = pd.DatetimeIndex(frame.index).tz_convert("UTC")
            lam = ewma_lambda(bar_of(index))
            per_symbol[symbol] = (index, ewma_variance(r, lam), har_features(r), target)
        for fold, positions in out.groupby("fold", sort=True).indices.items():
            start = starts.get(fold)
            xs, ys = [], []
            for index, _ewma, feats, target in per_symbol.values():
                usable = len(index) if start is None else int(np.searchsorted(index, start))
                stop = max(0, usable - h)
                xs.append(feats[:stop])
                ys.append(target[:stop])
            coef = _fit_ols(np.vstack(xs), np.concatenate(ys)) if xs else None
            for symbol, (index, ewma, feats, _t) in per_symbol.items():
                mask = out["symbol"].to_numpy()[positions] == symbol
                if not mask.any():
                    continue
                where = index.get_indexer(pd.DatetimeIndex(times.iloc[positions[mask]]))
                ok = where >= 0
                sel = positions[mask][ok]
                ewma_col[sel] = np.sqrt(np.maximum(ewma[where[ok]], floor**2))
                if coef is not None:
                    var = coef[0] + feats[where[ok]] @ coef[1:]
                    har_col[sel] = np.sqrt(np.maximum(var, floor**2))
        out[f"ewma_{task}"] = ewma_col
        out[f"har_{task}"] = har_col
    return out


def test_baseline_columns_equal_the_per_symbol_mask_implementation():
    symbols = [f"A{i}" for i in range(6)]
    frames = {s: garch_bars(900, seed=i, freq="1D", symbol=s) for i, s in enumerate(symbols)}
    index = frames["A0"].index
    rng = np.random.default_rng(0)
    parts, folds = [], []
    for k in range(3):
        lo, hi = 300 + 150 * k, 300 + 150 * (k + 1)
        folds.append({"fold": k, "test_start": index[lo].isoformat()})
        for s in symbols[k:]:  # a symbol missing from some folds
            t = index[lo:hi]
            parts.append(
                pd.DataFrame(
                    {
                        "datetime": t,
                        "symbol": s,
                        "fold": k,
                        "volatility@5": rng.uniform(0.01, 0.03, len(t)),
                        "target_volatility@5": rng.uniform(0.01, 0.03, len(t)),
                    }
                )
            )
    ghost = parts[0].assign(symbol="NOT_IN_FRAMES")  # rows of a symbol without bars
    off_bar = parts[1].head(5).assign(datetime=lambda f: f["datetime"] + pd.Timedelta("1h"))
    pred = pd.concat([*parts, ghost, off_bar], ignore_index=True)
    pred = pred.sample(frac=1.0, random_state=1).reset_index(drop=True)  # rows interleaved
    ours = add_baselines(pred, frames, folds)
    pd.testing.assert_frame_equal(ours, _reference(pred, frames, folds))
    assert ours["ewma_volatility@5"].notna().sum() > 0.9 * len(pred) - len(ghost)
