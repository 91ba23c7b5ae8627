"""Live Backtrader feeds (paper trading): ccxt exchanges and Yahoo Finance, polled.

See :mod:`mtl_bt.feeds.live` for the contract (closed bars only, by the exchange's
clock; back-fill vs live bars; LIVE/DELAYED/DISCONNECTED notifications).
"""

from mtl_bt.feeds.ccxt_live import CCXTLiveFeed, ccxt_market
from mtl_bt.feeds.live import Bar, BarSource, LiveFeed, LiveMarket, SourceDown, bad_value
from mtl_bt.feeds.yfinance_live import YFinanceLiveFeed, yfinance_market

__all__ = [
    "Bar",
    "BarSource",
    "CCXTLiveFeed",
    "LiveFeed",
    "LiveMarket",
    "SourceDown",
    "YFinanceLiveFeed",
    "bad_value",
    "ccxt_market",
    "yfinance_market",
]
