"""Tiny synthetic data and configs for the experiments' tests."""

from __future__ import annotations

import numpy as np

from mtl_bt import config as config_mod
from mtl_bt.data.synthetic import garch_bars

SYMBOLS = ("AAA", "BBB", "CCC")


def _base(**training):
    return config_mod.from_dict(
        {
            "data": {"source": "csv", "symbols": list(SYMBOLS), "timeframe": "1h"},
            "features": {"names": ["log_return", "volatility", "rsi"]},
            "tasks": [
                {"name": "return", "horizons": [2]},
                {"name": "volatility", "horizons": [3]},
            ],
            "model": {"hidden": [8], "dropout": 0.0, "asset_embedding": 2},
            "training": {"epochs": 2, "batch_size": 64, "seed": 0, **training},
            "walk_forward": {"train_bars": 300, "test_bars": 120, "max_folds": 2},
        }
    )


def _frames(scale_ccc: float = 1.0):
    frames = {s: garch_bars(620, seed=i + 3, freq="1h", symbol=s) for i, s in enumerate(SYMBOLS)}
    if scale_ccc != 1.0:  # another path for CCC: every bar's move changed
        rng = np.random.default_rng(7)
        f = frames["CCC"].copy()
        noise = np.exp(rng.normal(0, 0.01, len(f)).cumsum())
        for col in ("open", "high", "low", "close"):
            f[col] = f[col] * noise * scale_ccc
        f["high"] = f[["open", "high", "low", "close"]].max(axis=1)
        f["low"] = f[["open", "high", "low", "close"]].min(axis=1)
        f["volume"] = f["volume"] * 1.5
        frames["CCC"] = f
    return frames


def write_data(folder, late: int = 0) -> dict:
    """The synthetic frames as a folder of CSV files (CCC's first ``late`` bars dropped);
    returns the [data] section."""
    from mtl_bt.data import write_frame

    folder.mkdir(parents=True, exist_ok=True)
    for symbol, frame in _frames().items():
        write_frame(frame.iloc[late:] if symbol == "CCC" else frame, folder / f"{symbol}.csv")
    return {"source": "csv", "symbols": list(SYMBOLS), "timeframe": "1h",
            "options": {"path": str(folder)}}  # fmt: skip
