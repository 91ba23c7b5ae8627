"""Real bundled data for task tests: the crypto sample, canonical frames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import mtl_bt.data.sample

# the package ships its own copy of the real data (works without ../shared)
SHARED = Path(mtl_bt.data.sample.__file__).parent
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "AVAX/USDT", "DOT/USDT"]


def read_crypto(symbol: str) -> pd.DataFrame:
    """One canonical frame from the sample (via the loader when the sample
    source is registered, else straight from the shared CSV)."""
    from mtl_bt import registry

    if "sample" in registry.names("source"):
        from mtl_bt.config import DataConfig
        from mtl_bt.data import load_frames

        return load_frames(DataConfig(source="sample", symbols=[symbol], timeframe="1h"))[symbol]
    path = SHARED / (symbol.replace("/", "_") + "-1h.csv.gz")
    raw = pd.read_csv(path)
    index = pd.DatetimeIndex(pd.to_datetime(raw["date"], utc=True), name="datetime")
    cols = ["open", "high", "low", "close", "volume"]
    frame = pd.DataFrame(raw[cols].to_numpy("float64"), index=index, columns=cols)
    frame.attrs.update(symbol=symbol, timeframe="1h", source="csv")
    return frame


@pytest.fixture(scope="session")
def crypto_frames() -> dict[str, pd.DataFrame]:
    return {s: read_crypto(s) for s in SYMBOLS}
