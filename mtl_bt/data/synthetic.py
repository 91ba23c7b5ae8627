"""Synthetic OHLCV bars from a seeded GARCH(1,1)-like process (tests, benchmarks)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtl_bt.data.source import INDEX_NAME


def garch_bars(
    n: int,
    *,
    seed: int = 0,
    freq: str = "1D",
    start: str = "2010-01-04",
    symbol: str = "SYN",
    omega: float = 2e-6,
    alpha: float = 0.08,
    beta: float = 0.9,
    price: float = 100.0,
) -> pd.DataFrame:
    """``n`` canonical bars: volatility clusters, volume co-moves with |return|."""
    if n < 1:
        raise ValueError("n must be >= 1")
    rng = np.random.default_rng(seed)
    var = omega / max(1e-12, 1.0 - alpha - beta)
    rets = np.empty(n)
    vols = np.empty(n)
    for i in range(n):
        vols[i] = np.sqrt(var)
        rets[i] = vols[i] * rng.standard_normal()
        var = omega + alpha * rets[i] ** 2 + beta * var
    close = price * np.exp(np.cumsum(rets))
    open_ = np.concatenate([[price], close[:-1]]) * np.exp(0.1 * vols * rng.standard_normal(n))
    wick = np.abs(rng.standard_normal((2, n))) * vols * 0.5
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = 1e6 * np.exp(0.3 * rng.standard_normal(n)) * (1.0 + 20.0 * np.abs(rets))
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name=INDEX_NAME)
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )
    frame.attrs.update(symbol=symbol, timeframe=freq.lower(), source="synthetic")
    return frame
