"""Suite-wide settings (deterministic, single-threaded torch; no network; built-in plugins
only) and the real bundled data as fixtures (crypto sample frames, daily stocks)."""

import os
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, settings

import mtl_bt.data.sample

matplotlib.use("Agg", force=True)
torch.set_num_threads(1)
os.environ.setdefault("MTL_BT_CACHE_DIR", os.path.join(os.path.dirname(__file__), ".cache-unused"))
# The suite sees mtl-bt's own plugins only, whatever else is installed in the environment
# (in-process and in every CLI subprocess). Tests that install a plugin on purpose set
# their own MTL_BT_LOAD_PLUGINS / MTL_BT_DISABLE_PLUGINS.
os.environ["MTL_BT_LOAD_PLUGINS"] = "builtin"
os.environ.pop("MTL_BT_DISABLE_PLUGINS", None)

settings.register_profile(
    "mtl_bt",
    deadline=None,
    max_examples=40,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("mtl_bt")


# the package ships its own copy of the real data (works without ../shared)
SAMPLE_DIR = Path(mtl_bt.data.sample.__file__).parent
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "AVAX/USDT", "DOT/USDT"]


def read_crypto(symbol: str) -> pd.DataFrame:
    """One canonical frame from the sample (via the loader when the sample
    source is registered, else straight from the shared CSV)."""
    from mtl_bt import registry

    if "sample" in registry.names("source"):
        from mtl_bt.config import DataConfig
        from mtl_bt.data import load_frames

        return load_frames(DataConfig(source="sample", symbols=[symbol], timeframe="1h"))[symbol]
    path = SAMPLE_DIR / (symbol.replace("/", "_") + "-1h.csv.gz")
    raw = pd.read_csv(path)
    index = pd.DatetimeIndex(pd.to_datetime(raw["date"], utc=True), name="datetime")
    cols = ["open", "high", "low", "close", "volume"]
    frame = pd.DataFrame(raw[cols].to_numpy("float64"), index=index, columns=cols)
    frame.attrs.update(symbol=symbol, timeframe="1h", source="csv")
    return frame


@pytest.fixture(scope="session")
def crypto_frames() -> dict[str, pd.DataFrame]:
    return {s: read_crypto(s) for s in SYMBOLS}


def _read_stock(symbol: str) -> pd.DataFrame:
    """One daily stock from the shared WIKI sample (unadjusted OHLCV)."""
    raw = pd.read_csv(SAMPLE_DIR / "stocks_daily_wiki.csv.gz")
    raw = raw[raw["Ticker"] == symbol]
    index = pd.DatetimeIndex(pd.to_datetime(raw["Date"], utc=True), name="datetime")
    cols = ["Open", "High", "Low", "Close", "Volume"]
    frame = pd.DataFrame(
        raw[cols].to_numpy("float64"), index=index, columns=[c.lower() for c in cols]
    )
    frame.attrs.update(symbol=symbol, timeframe="1d", source="csv")
    return frame


@pytest.fixture(scope="session")
def read_stock():
    """A function symbol -> canonical daily frame (AAPL, IBM, MSFT, GOOG, FB)."""
    return _read_stock
