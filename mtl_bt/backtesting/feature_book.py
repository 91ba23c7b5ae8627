"""The feature book: each asset's model inputs per bar, and the sizing volatilities
(trailing realised vol; the EWMA forecast when the rule asks for ``ewma_vol``).

``PreloadedBook`` holds, per asset, the causal feature matrix of the feed's
whole preloaded frame (computed once, vectorised: row t uses bars <= t only, so
this is not look-ahead; tests perturb the future and check the decisions before
it do not change). Row ``i`` is the feed's bar ``i``.

The streaming book (``mtl_bt.backtesting.streaming``) answers the same
questions for feeds that are not preloaded, computing a row when its bar arrives.

Cross-frame features (another symbol's bars, the market mean, a higher timeframe) read
the other feeds of the same Cerebro: the preloaded book passes every feed's frame to
``compute``; the streaming book's engine (``feature_engine``) receives every feed's bar
as it closes, before the rows of that step. A model whose features read a symbol with no
feed is refused before the run (``require_feeds``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.backtesting.inputs import sizing_lambda
from mtl_bt.errors import DataError
from mtl_bt.features import ops
from mtl_bt.features.frames import named_frames
from mtl_bt.features.spec import FeatureSpec, compute
from mtl_bt.metrics.volatility import LAMBDA, ewma_vol


def complete_rows(x: np.ndarray, lookback: int) -> np.ndarray:
    """Rows whose features (and, for sequence models, the ``lookback - 1`` rows before) are finite."""
    ok = np.isfinite(x).all(axis=1)
    if lookback > 1:
        run = np.convolve(ok.astype(np.int64), np.ones(lookback, dtype=np.int64))[: len(ok)]
        ok = run == lookback
    return ok


def realised_vol(close: np.ndarray, window: int) -> np.ndarray:
    """Trailing std (ddof=1) of 1-bar log returns over bars <= t: the sizing fallback.

    ``ops.rolling_std`` computes each window on its own, so the streaming path's
    value over the last ``window + 1`` closes is the same number.
    """
    return ops.rolling_std(ops.diff(np.log(close)), int(window), ddof=1)


def require_feeds(spec: FeatureSpec, symbols: Sequence[str], trained: Sequence[str] = ()) -> None:
    """A ``DataError`` naming the first symbol the features read that has no feed.

    ``cross_asset`` reads its ``of`` symbol; ``market`` averages every symbol the model was
    trained on (``trained``), so each needs a feed, or the mean would be another one."""
    wanted = list(spec.symbols_read())
    if spec.reads_all_symbols():
        wanted += list(trained)
    for s in dict.fromkeys(wanted):
        if s not in symbols:
            raise DataError(
                f"the model's features read symbol {s!r}, which has no feed in Cerebro (feeds: "
                f"{list(symbols)}); add its data with cerebro.adddata(feed, name={s!r})"
            )


def run_context(frames: Sequence[pd.DataFrame], symbols: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Every feed's frame by symbol, named (what ``compute`` reads other symbols from)."""
    return named_frames(dict(zip(symbols, frames, strict=True)))


def feature_engine(
    spec: FeatureSpec, symbols: Sequence[str], columns: Sequence[str], batch: bool = True
) -> Any:
    """The streaming engine of a step's bars: ``BatchStream``, or with cross-frame features
    ``CrossRows`` (the same ``push(idx, bars)``; every feed's bar reaches the cross-frame
    sources before any row of the step is computed; ``batch=False``: its single-frame part
    per asset, cheaper with few feeds)."""
    if spec.reads():
        from mtl_bt.features.cross_stream import CrossRows

        return CrossRows(spec, symbols, columns, batch)
    from mtl_bt.features.streaming import BatchStream

    return BatchStream(spec, symbols, columns)


class PreloadedBook:
    """Features, completeness and realised vol of every bar of every preloaded asset."""

    streaming = False

    def __init__(
        self,
        predictor: Any,
        frames: Sequence[pd.DataFrame],
        symbols: Sequence[str],
        lookback: int,
        vol_window: int,
        ewma: bool = False,
    ) -> None:
        self.lookback = lookback
        self.feats: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.rvol: list[np.ndarray] = []
        #: with ewma=True (a rule asked for ``ewma_vol``), the EWMA vol forecast of every bar
        self.ewma: list[np.ndarray] | None = [] if ewma else None
        lam = sizing_lambda(predictor) if ewma else LAMBDA
        spec = predictor.feature_spec
        context = None
        if spec.reads():
            require_feeds(spec, symbols, getattr(predictor, "symbols", ()) or ())
            context = run_context(frames, symbols)
        for frame, symbol in zip(frames, symbols, strict=True):
            if context is None:
                x = predictor.features(frame).to_numpy(np.float32)
            else:
                x = compute(context[symbol], spec, context)[predictor.feature_columns]
                x = x.to_numpy(np.float32)
            x = np.ascontiguousarray(x)
            ok = complete_rows(x, lookback)
            if not ok.any():
                raise DataError(
                    f"{symbol}: {len(frame)} bars are not enough for the features' warm-up "
                    f"(lookback {lookback}); no bar has complete features"
                )
            self.feats.append(x)
            self.valid.append(ok)
            self.rvol.append(realised_vol(frame["close"].to_numpy(np.float64), vol_window))
            if self.ewma is not None:
                self.ewma.append(ewma_vol(frame["close"].to_numpy(np.float64), lam=lam))

    def advance(self, a: int, data: Any) -> int:
        """Row of asset ``a``'s current bar (its position in the preloaded arrays)."""
        return len(data) - 1

    def ready(self, a: int, row: int) -> bool:
        return bool(self.valid[a][row])

    def inputs(self, a: int, row: int) -> np.ndarray:
        """The model input of one bar: a feature row, or the last ``lookback`` rows."""
        x = self.feats[a]
        return x[row] if self.lookback == 1 else x[row - self.lookback + 1 : row + 1]

    def vol(self, a: int, row: int) -> float:
        return float(self.rvol[a][row])

    def ewma_vol(self, a: int, row: int) -> float:
        """The EWMA per-bar vol forecast from the closes up to ``row`` (ewma=True only)."""
        return float(self.ewma[a][row])  # type: ignore[index]

    def windows(self, a: int, rows: np.ndarray) -> np.ndarray:
        """Model inputs of many rows at once (the vectorised pass)."""
        x = self.feats[a]
        if self.lookback == 1:
            return x[rows]
        return x[rows[:, None] + np.arange(1 - self.lookback, 1)[None, :]]
