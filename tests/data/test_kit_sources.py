"""The conformance kit on the network sources, offline: ccxt against the loopback Bybit
v5 server (the sample and csv sources: tests/testing/test_kit_builtins.py)."""

from __future__ import annotations

import pandas as pd

from mtl_bt.testing import check_source


def test_ccxt_source_passes_check_source(bybit):
    url, _ = bybit
    report = check_source(
        "ccxt",
        ["BTC/USDT", "ETH/USDT"],
        timeframe="1h",
        since=pd.Timestamp("2024-01-01", tz="UTC"),
        until=pd.Timestamp("2024-01-05", tz="UTC"),
        api_url=url,
    )
    assert report.laws == ["canonical frames with plausible timestamps"]
