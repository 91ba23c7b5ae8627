"""Helpers for the paper-trading tests: the sample bars on the loopback Bybit v5 server
(tests/data/data_testkit.py) and a lock-step driver for its exchange clock."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))

from data_testkit import BybitState, ExchangeClock, spot_instruments  # noqa: E402

#: the exchange ids served and the ccxt symbols they stand for
PAIRS = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT", "SOL/USDT": "SOLUSDT"}
#: exchange time at the start of a test: mid-bar, so the 10:00 candle is forming
START = pd.Timestamp("2024-03-01 10:30", tz="UTC")
HOUR = pd.Timedelta("1h")


def make_state(frames, clock: ExchangeClock, **kwargs) -> BybitState:
    return BybitState(
        clock=clock,
        frames=frames,
        symbols=tuple(frames),
        instruments=spot_instruments(*(k.removesuffix("USDT") for k in frames)),
        listing=pd.Timestamp("2023-12-31", tz="UTC"),
        **kwargs,
    )


class Lockstep:
    """Advance a paused exchange clock one bar each time ``ready(newest_closed)`` holds
    (the run decided the newest closed bar), so every bar closes once the last was done:
    deterministic however slow the machine is."""

    def __init__(self, clock: ExchangeClock, ready: Callable[[pd.Timestamp], bool], bars: int):
        self.clock, self.ready, self.bars = clock, ready, bars
        self.advanced = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def newest_closed(self) -> pd.Timestamp:
        return self.clock.now().floor("1h") - HOUR

    def _run(self) -> None:
        while not self._stop.wait(0.01) and self.advanced < self.bars:
            if self.ready(self.newest_closed()):
                self.clock.advance(HOUR)
                self.advanced += 1

    def __enter__(self) -> Lockstep:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


def journal_has(db_path) -> Callable[[pd.Timestamp], bool]:
    """``ready(newest)``: the journal at ``db_path`` has decided the bar ``newest``."""
    import sqlite3

    def ready(newest: pd.Timestamp) -> bool:
        try:
            con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        except sqlite3.OperationalError:
            return False
        try:
            row = con.execute("SELECT MAX(datetime) FROM bars").fetchone()
        except sqlite3.OperationalError:
            return False
        finally:
            con.close()
        return row is not None and row[0] is not None and pd.Timestamp(row[0]) >= newest

    return ready


def paper_config_dict(url: str, **sections) -> dict:
    data = {
        "data": {
            "source": "ccxt",
            "symbols": list(PAIRS),
            "timeframe": "1h",
            # a loopback server needs no request spacing (docs/data.md, rate_limit_ms)
            "options": {
                "api_url": url,
                "backoff": 0.01,
                "max_backoff": 0.05,
                "retries": 3,
                "rate_limit_ms": 0,
            },
        },
        "features": {"names": ["log_return", "volatility", "rsi"]},
        "tasks": [
            {"name": "return", "horizons": [1]},
            {"name": "direction", "horizons": [1]},
            {"name": "volatility", "horizons": [1]},
        ],
        "model": {"hidden": [8], "dropout": 0.0},
        "training": {"epochs": 1, "batch_size": 64, "seed": 0},
        "walk_forward": {"train_bars": 300, "test_bars": 50, "max_folds": 1},
        "backtest": {"rebalance": "bar", "signal": "sign"},
        "paper": {"poll_seconds": 0.02, "warmup_bars": 60},
    }
    data.update(sections)
    return data


def close_decisions(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> bool:
    """Two bars' predictions (symbol -> task -> value) agree to 1e-5."""
    import numpy as np

    if set(a) != set(b):
        return False
    return all(
        np.allclose([a[s][t] for t in a[s]], [b[s][t] for t in a[s]], rtol=1e-5, atol=1e-7)
        for s in a
    )
