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
