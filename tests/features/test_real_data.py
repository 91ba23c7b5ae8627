"""The bundled crypto sample: clean features after warm-up, and fast enough."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtl_bt.features import FeatureSpec, compute, drop_warmup


def test_all_features_finite_after_warmup_on_real_data(crypto_frames):
    spec = FeatureSpec()
    for symbol, frame in crypto_frames.items():
        out = compute(frame, spec)
        kept, n = drop_warmup(out, spec, symbol)
        assert n == spec.warmup() and len(kept) == len(frame) - n
        # sane ranges: RSI in [0, 100], vols positive and per bar (hourly ~ 0.1%-5%)
        assert kept["rsi"].between(0, 100).all()
        for col in ("volatility", "parkinson", "garman_klass"):
            med = kept[col].median()
            assert 1e-4 < med < 0.05, (symbol, col, med)
        # a causal feature shows no correlation with the *next* bar's return sign flip
        fwd = np.log(frame["close"]).diff().shift(-1).reindex(kept.index)
        assert abs(kept["log_return_1"].corr(fwd)) < 0.1


def test_real_data_prefix_invariance(crypto_frames):
    frame = crypto_frames["SOL/USDT"]
    spec = FeatureSpec()
    full = compute(frame, spec)
    for k in (60, 1000, 5003):
        pd.testing.assert_frame_equal(compute(frame.iloc[:k], spec), full.iloc[:k], rtol=1e-10)


def test_daily_stocks_including_a_short_history(read_stock):
    spec = FeatureSpec()
    for symbol, n in (("AAPL", 3270), ("FB", 196)):
        frame = read_stock(symbol)
        assert len(frame) == n
        kept, dropped = drop_warmup(compute(frame, spec), spec, symbol)
        assert dropped == spec.warmup() and np.isfinite(kept.to_numpy()).all()
