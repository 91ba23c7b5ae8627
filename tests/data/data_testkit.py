"""Test kit for the data tests: a loopback HTTP server that answers Bybit v5
``/v5/market/kline`` like the real API (numbers as strings, newest first), generated for
any start/end/limit from a deterministic series; minimal ccxt markets; a fixed clock."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd

HOUR_MS = 3_600_000
#: the server's and the sources' "now" in the loopback tests (mid-hour: 10:00 bar is forming)
NOW = pd.Timestamp("2024-03-01 10:30", tz="UTC")
#: first bar the server knows (BTCUSDT listing)
LISTING = pd.Timestamp("2023-06-01 00:00", tz="UTC")

#: minimal ccxt market structures: BTC/USDT spot and linear perpetual, ETH/USDT spot
MARKETS = [
    {
        "id": "BTCUSDT",
        "symbol": "BTC/USDT",
        "base": "BTC",
        "quote": "USDT",
        "settle": None,
        "baseId": "BTC",
        "quoteId": "USDT",
        "settleId": None,
        "type": "spot",
        "spot": True,
        "margin": False,
        "swap": False,
        "future": False,
        "option": False,
        "contract": False,
        "linear": None,
        "inverse": None,
        "active": True,
        "precision": {"amount": 0.000001, "price": 0.01},
        "limits": {},
        "info": {},
    },
    {
        "id": "ETHUSDT",
        "symbol": "ETH/USDT",
        "base": "ETH",
        "quote": "USDT",
        "settle": None,
        "baseId": "ETH",
        "quoteId": "USDT",
        "settleId": None,
        "type": "spot",
        "spot": True,
        "margin": False,
        "swap": False,
        "future": False,
        "option": False,
        "contract": False,
        "linear": None,
        "inverse": None,
        "active": True,
        "precision": {"amount": 0.0001, "price": 0.01},
        "limits": {},
        "info": {},
    },
    {
        "id": "BTCUSDT",
        "symbol": "BTC/USDT:USDT",
        "base": "BTC",
        "quote": "USDT",
        "settle": "USDT",
        "baseId": "BTC",
        "quoteId": "USDT",
        "settleId": "USDT",
        "type": "swap",
        "spot": False,
        "margin": False,
        "swap": True,
        "future": False,
        "option": False,
        "contract": True,
        "linear": True,
        "inverse": False,
        "contractSize": 1.0,
        "active": True,
        "precision": {"amount": 0.001, "price": 0.1},
        "limits": {},
        "info": {},
    },
]


def synthetic_bar(ts_ms: int, category: str = "spot", symbol: str = "BTCUSDT") -> list[str]:
    """Deterministic OHLCV strings for the bar starting at ``ts_ms`` (consistent OHLC)."""
    k = ts_ms // HOUR_MS
    shift = 1.0 if category == "spot" else 1.0005
    base = (100.0 if symbol == "ETHUSDT" else 40000.0) * shift
    open_ = base * (1 + 0.05 * math.sin(k / 97.0) + 0.01 * math.sin(k / 7.0))
    close = base * (1 + 0.05 * math.sin((k + 1) / 97.0) + 0.01 * math.sin((k + 1) / 7.0))
    high = max(open_, close) * (1 + 0.002 + 0.001 * abs(math.sin(k)))
    low = min(open_, close) * (1 - 0.002 - 0.001 * abs(math.cos(k)))
    volume = 10 + (k % 13) * 0.731
    prices = [f"{x:.2f}" for x in (open_, high, low, close)]
    turnover = f"{volume * (open_ + close) / 2:.4f}"
    return [str(ts_ms), *prices, f"{volume:.3f}", turnover]


@dataclass
class BybitState:
    """What the fake exchange knows and what happened to it."""

    now: pd.Timestamp = NOW
    listing: pd.Timestamp = LISTING
    #: per kline request, pop one action: "429", "10006", "503", "ok", or a bad page with
    #: HTTP 200: "html" (an HTML body), "badjson" (cut-off JSON), "empty" (an empty list),
    #: "dupe" (the middle bar twice with different volumes)
    script: list[str] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    #: when set, every successful kline request gets exactly this body (a recorded response)
    replay: dict | None = None
    #: bars past a request's ``end`` that the server also returns (consecutive pages overlap)
    overlap: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kline_requests(self) -> list[dict[str, str]]:
        return [r for r in self.requests if r["path"] == "/v5/market/kline"]


def _kline(state: BybitState, query: dict[str, str]) -> dict:
    step = int(query.get("interval", "60")) * 60_000
    now_ms = state.now.value // 1_000_000
    end = min(int(query.get("end", now_ms)) + state.overlap * step, now_ms)
    limit = min(int(query.get("limit", 200)), 1000)
    first = max(int(query.get("start", 0)), state.listing.value // 1_000_000)
    first = -(-first // step) * step
    stamps = list(range(first, end + 1, step))
    if "start" not in query:
        stamps = list(range((end // step) * step, -1, -step))[:limit][::-1]
    newest_first = stamps[::-1][:limit]  # Bybit: the newest `limit` bars of the window
    rows = [synthetic_bar(t, query.get("category", "spot"), query["symbol"]) for t in newest_first]
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"symbol": query["symbol"], "category": query.get("category"), "list": rows},
        "retExtInfo": {},
        "time": now_ms,
    }


def _spot_instrument(symbol: str, base: str) -> dict:
    return {
        "symbol": symbol,
        "baseCoin": base,
        "quoteCoin": "USDT",
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "both",
        "lotSizeFilter": {
            "basePrecision": "0.000001",
            "quotePrecision": "0.00000001",
            "minOrderQty": "0.000048",
            "maxOrderQty": "71.73956243",
            "minOrderAmt": "1",
            "maxOrderAmt": "2000000",
        },
        "priceFilter": {"tickSize": "0.01"},
    }


#: Bybit v5 /v5/market/instruments-info lists per category (shape of the real API)
INSTRUMENTS = {
    "spot": [_spot_instrument("BTCUSDT", "BTC"), _spot_instrument("ETHUSDT", "ETH")],
    "linear": [
        {
            "symbol": "BTCUSDT",
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "baseCoin": "BTC",
            "quoteCoin": "USDT",
            "settleCoin": "USDT",
            "launchTime": "1585526400000",
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": "2",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80", "tickSize": "0.10"},
            "lotSizeFilter": {
                "maxOrderQty": "100.000",
                "minOrderQty": "0.001",
                "qtyStep": "0.001",
                "postOnlyMaxOrderQty": "1000.000",
            },
            "unifiedMarginTrade": True,
            "fundingInterval": 480,
        }
    ],
}


def _instruments(query: dict[str, str]) -> dict:
    category = query.get("category", "spot")
    rows = [] if query.get("status") == "PreLaunch" else INSTRUMENTS.get(category, [])
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"category": category, "list": rows},
        "retExtInfo": {},
        "time": 1709288999000,
    }


class _Handler(BaseHTTPRequestHandler):
    state: BybitState

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        state = self.state
        with state.lock:
            state.requests.append({"path": url.path, **query})
            action = (
                state.script.pop(0) if state.script and url.path == "/v5/market/kline" else "ok"
            )
        if action == "429":
            self._send(429, b"Too Many Requests", "text/plain")
        elif action == "503":
            self._send(
                503, b"<html><body>503 Service Temporarily Unavailable</body></html>", "text/html"
            )
        elif action == "10006":
            body = {"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "retExtInfo": {}}
            self._send(200, json.dumps(body).encode())
        elif url.path == "/v5/market/instruments-info":
            self._send(200, json.dumps(_instruments(query)).encode())
        elif url.path != "/v5/market/kline":
            self._send(404, b'{"retCode":10001,"retMsg":"unknown path"}')
        elif query.get("symbol") not in state.symbols:
            body = {"retCode": 10001, "retMsg": "params error: Symbol Invalid", "result": {}}
            self._send(200, json.dumps(body).encode())
        elif action == "html" and url.path == "/v5/market/kline":
            self._send(200, b"<html><body>Bad Gateway (cached)</body></html>", "text/html")
        elif action == "badjson" and url.path == "/v5/market/kline":
            self._send(200, json.dumps(_kline(state, query)).encode()[:40])
        elif action == "empty" and url.path == "/v5/market/kline":
            body = _kline(state, query)
            body["result"]["list"] = []
            self._send(200, json.dumps(body).encode())
        elif action == "dupe" and url.path == "/v5/market/kline":
            body = _kline(state, query)
            rows = body["result"]["list"]
            if rows:
                twin = list(rows[len(rows) // 2])
                twin[5] = f"{float(twin[5]) + 1:.3f}"  # same time, another volume
                rows.insert(len(rows) // 2, twin)
            self._send(200, json.dumps(body).encode())
        elif state.replay is not None:
            self._send(200, json.dumps(state.replay).encode())
        else:
            self._send(200, json.dumps(_kline(state, query)).encode())


class BybitServer:
    """Context manager: serve ``state`` on 127.0.0.1 (free port) in a thread."""

    def __init__(self, state: BybitState | None = None) -> None:
        self.state = state or BybitState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> BybitServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
