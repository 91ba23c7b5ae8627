"""Test kit for the data tests: a loopback HTTP server that answers Bybit v5
``/v5/market/kline`` like the real API (numbers as strings, newest first), generated for
any start/end/limit from a deterministic series; minimal ccxt markets; a fixed clock.

For live (paper-trading) tests the server can also run on an :class:`ExchangeClock`
that advances fast (a new hourly candle every fraction of a second, served from
``/v5/market/time`` too), serve real bars (``frames``), go down for a while
(``outage``: connections are dropped, as when the exchange is unreachable) and
tamper with the rows it sends (``tamper``: out-of-order, duplicate or bad candles).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
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


def spot_market(base: str, quote: str = "USDT", amount: float = 0.0001) -> dict:
    """A minimal ccxt spot market structure (like the entries of ``MARKETS``)."""
    return {
        **MARKETS[1],
        "id": f"{base}{quote}",
        "symbol": f"{base}/{quote}",
        "base": base,
        "quote": quote,
        "baseId": base,
        "quoteId": quote,
        "precision": {"amount": amount, "price": 0.01},
    }


class ExchangeClock:
    """The fake exchange's own clock: ``start`` plus ``speed`` exchange seconds per wall
    second since it was made (``speed=14400``: an hourly candle closes every 0.25 s).

    ``pause()``/``resume()`` stop and restart time; ``advance(delta)`` jumps.
    """

    def __init__(self, start: pd.Timestamp, speed: float = 1.0) -> None:
        self.start = pd.Timestamp(start)
        self.speed = float(speed)
        self._wall0 = time.monotonic()
        self._paused_at: float | None = None
        self._lock = threading.Lock()

    def _elapsed(self) -> float:
        wall = self._paused_at if self._paused_at is not None else time.monotonic()
        return (wall - self._wall0) * self.speed

    def now(self) -> pd.Timestamp:
        with self._lock:
            return self.start + pd.Timedelta(seconds=self._elapsed())

    def pause(self) -> None:
        with self._lock:
            if self._paused_at is None:
                self._paused_at = time.monotonic()

    def resume(self) -> None:
        with self._lock:
            if self._paused_at is not None:
                self._wall0 += time.monotonic() - self._paused_at
                self._paused_at = None

    def advance(self, delta: pd.Timedelta | str) -> None:
        with self._lock:
            self.start += pd.Timedelta(delta)

    def wall_seconds(self, delta: pd.Timedelta | str) -> float:
        """Wall seconds the clock needs to advance by ``delta``."""
        return pd.Timedelta(delta).total_seconds() / self.speed


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
    #: a running exchange clock (replaces ``now``; also served on /v5/market/time)
    clock: ExchangeClock | None = None
    #: real bars per exchange symbol id ("BTCUSDT": canonical frame) instead of the synthetic
    #: series; the candle still forming at ``now`` is served with partial values
    frames: dict[str, pd.DataFrame] | None = None
    #: (first, last) exchange times during which every connection is dropped unanswered
    outage: tuple[pd.Timestamp, pd.Timestamp] | None = None
    #: ``tamper(query, rows) -> rows`` rewrites a kline answer (rows newest first)
    tamper: Callable[[dict[str, str], list[list[str]]], list[list[str]]] | None = None
    #: connections dropped because of ``outage``
    dropped: int = 0
    #: /v5/market/instruments-info lists per category replacing ``INSTRUMENTS``
    instruments: dict[str, list[dict]] | None = None

    def kline_requests(self) -> list[dict[str, str]]:
        return [r for r in self.requests if r["path"] == "/v5/market/kline"]

    def current(self) -> pd.Timestamp:
        """The exchange's now: the running clock if there is one, else ``now``."""
        return self.clock.now() if self.clock is not None else self.now

    def is_down(self) -> bool:
        if self.outage is None:
            return False
        first, last = self.outage
        return first <= self.current() <= last


def frame_bar(frame: pd.DataFrame, ts_ms: int, now_ms: int, step: int) -> list[str] | None:
    """Bybit's row for the bar of ``frame`` starting at ``ts_ms`` (None: no such bar); a bar
    still forming at ``now_ms`` is partial (open price only, a third of the volume)."""
    ts = pd.Timestamp(ts_ms, unit="ms", tz="UTC")
    if ts not in frame.index:
        return None
    o, h, lo, c, v = (float(x) for x in frame.loc[ts, ["open", "high", "low", "close", "volume"]])
    if ts_ms + step > now_ms:  # forming: what the exchange knows so far
        h, lo, c, v = o, o, o, v / 3.0
    return [str(ts_ms), *(repr(x) for x in (o, h, lo, c, v)), repr(v * (o + c) / 2)]


def _kline(state: BybitState, query: dict[str, str]) -> dict:
    step = int(query.get("interval", "60")) * 60_000
    now_ms = state.current().value // 1_000_000
    end = min(int(query.get("end", now_ms)) + state.overlap * step, now_ms)
    limit = min(int(query.get("limit", 200)), 1000)
    first = max(int(query.get("start", 0)), state.listing.value // 1_000_000)
    first = -(-first // step) * step
    stamps = list(range(first, end + 1, step))
    if "start" not in query:
        stamps = list(range((end // step) * step, -1, -step))[:limit][::-1]
    if state.frames is not None:  # only the bars the frame has (real gaps stay gaps)
        have = set(state.frames[query["symbol"]].index.as_unit("ms").asi8.tolist())
        stamps = [t for t in stamps if t in have]
        if "start" not in query:
            stamps = stamps[-limit:]
    newest_first = stamps[::-1][:limit]  # Bybit: the newest `limit` bars of the window
    if state.frames is not None:
        frame = state.frames[query["symbol"]]
        rows = [frame_bar(frame, t, now_ms, step) for t in newest_first]
    else:
        rows = [
            synthetic_bar(t, query.get("category", "spot"), query["symbol"]) for t in newest_first
        ]
    if state.tamper is not None:
        rows = state.tamper(query, rows)
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


def spot_instruments(*bases: str) -> dict[str, list[dict]]:
    """An ``instruments`` table listing ``<base>USDT`` spot pairs only."""
    return {"spot": [_spot_instrument(f"{b}USDT", b) for b in bases]}


def _instruments(query: dict[str, str], table: dict[str, list[dict]] | None = None) -> dict:
    category = query.get("category", "spot")
    table = INSTRUMENTS if table is None else table
    rows = [] if query.get("status") == "PreLaunch" else table.get(category, [])
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"category": category, "list": rows},
        "retExtInfo": {},
        "time": 1709288999000,
    }


def _time(state: BybitState) -> dict:
    """Bybit v5 /v5/market/time (ccxt's ``fetch_time`` reads ``time``)."""
    ns = state.current().value
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"timeSecond": str(ns // 10**9), "timeNano": str(ns)},
        "retExtInfo": {},
        "time": ns // 1_000_000,
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
        if state.is_down():  # unreachable: the connection closes without an answer
            with state.lock:
                state.dropped += 1
            self.close_connection = True
            return
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
            self._send(200, json.dumps(_instruments(query, state.instruments)).encode())
        elif url.path == "/v5/market/time":
            self._send(200, json.dumps(_time(state)).encode())
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
    """Context manager: serve ``state`` on 127.0.0.1 (free port) in a thread.

    ``down()`` closes the listening socket (connections are refused, as when the exchange
    is unreachable) and ``up()`` serves again on the same port; the state, and so the
    exchange clock, carries on meanwhile."""

    def __init__(self, state: BybitState | None = None) -> None:
        self.state = state or BybitState()
        self._handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.is_up = True

    def __enter__(self) -> BybitServer:
        self.thread.start()
        return self

    def down(self) -> None:
        """Stop serving and close the socket: every connection is refused."""
        if self.is_up:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.is_up = False

    def up(self) -> None:
        """Serve again on the same port (after ``down``)."""
        if not self.is_up:
            self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
            self.thread = threading.Thread(
                target=self.server.serve_forever, args=(0.02,), daemon=True
            )
            self.thread.start()
            self.is_up = True

    def __exit__(self, *exc) -> None:
        self.down()
