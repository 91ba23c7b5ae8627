"""Inputs for plugin checks: synthetic GARCH bars, the bundled sample, a tiny config."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mtl_bt.data.synthetic import garch_bars

__all__ = ["garch_bars", "sample_bars", "tiny_config"]


def sample_bars(symbol: str = "BTC/USDT", bars: int | None = 1500) -> pd.DataFrame:
    """The bundled real hourly sample for ``symbol`` (offline), last ``bars`` bars."""
    from mtl_bt.config import DataConfig
    from mtl_bt.data import load_frames

    frame = load_frames(DataConfig(source="sample", symbols=[symbol], timeframe="1h"))[symbol]
    return frame if bars is None else frame.iloc[-bars:]


def tiny_config(**sections: Any):
    """A small, fast config on the bundled sample (two pairs, 1h, two short folds).

    Keyword arguments replace whole sections, e.g. ``tiny_config(weighting={"name":
    "my_scheme"})`` or ``features={"names": ["log_return", "my_feature"]}``.
    """
    from mtl_bt.config import Config

    data: dict[str, Any] = {
        "data": {
            "source": "sample",
            "symbols": ["BTC/USDT", "ETH/USDT"],
            "timeframe": "1h",
            "since": "2024-01-01",
            "until": "2024-02-10",
        },
        "tasks": [
            {"name": "return", "horizons": [4]},
            {"name": "direction", "horizons": [4]},
            {"name": "volatility", "horizons": [4]},
        ],
        "model": {"architecture": "shared_bottom", "hidden": [8]},
        "training": {"epochs": 2, "batch_size": 128, "patience": 1},
        "walk_forward": {"train_bars": 400, "test_bars": 250, "max_folds": 2},
    }
    data.update(sections)
    return Config.model_validate(data)
