"""PortfolioAnalyzer: the raw per-bar record every metric is computed from.

Why not Backtrader's built-in analyzers: SharpeRatio defaults to yearly
returns with a 1% risk-free rate (and returns None on short runs), DrawDown
reports percent, and there is no Sortino or profit factor. Its closed trades
match Backtrader's TradeAnalyzer on the same run (tested). This analyzer only
records; ``mtl_bt.metrics.performance`` computes (pure numpy, tested against
independent references).

Recorded per bar (every strategy step): UTC date number, broker value, gross
exposure, traded notional (buys and sells: two-way), trading costs (commission plus
slippage paid against the unslipped reference price: the open for market orders, the
close for close orders), and per asset the "asset equity" = cumulative cash
flow from trading the asset (fills and commission) + position x close. The
per-bar change of an asset's equity divided by the previous portfolio value is
its contribution to the portfolio return; contributions sum to the portfolio
return exactly (tested). Orders (all final states: completed, rejected,
margin, canceled, expired) and closed trades (FIFO-free average-cost
round trips from flat to flat, flips split in two) are kept too.
"""

from __future__ import annotations

from typing import Any

import backtrader as bt
import numpy as np

from mtl_bt.backtesting.bars import line_buffers

_FINAL = {
    bt.Order.Completed: "completed",
    bt.Order.Canceled: "canceled",
    bt.Order.Margin: "margin",
    bt.Order.Rejected: "rejected",
    bt.Order.Expired: "expired",
}


def _reference_price(order: bt.Order) -> float:
    """The fill price without slippage: the bar's open (market) or close (close order);
    other order types (limit, stop) count no slippage."""
    price = float(order.executed.price)
    if order.exectype == bt.Order.Market:
        return float(order.data.open[0])
    if order.exectype == bt.Order.Close:
        return float(order.data.close[0])
    return price


class _Trade:
    __slots__ = ("size", "avg", "entry", "comm", "pnl", "peak", "exit_value", "exit_qty")

    def __init__(self, size: float, price: float, dt: float, comm: float) -> None:
        self.size = size
        self.avg = price
        self.entry = dt
        self.comm = comm
        self.pnl = 0.0
        self.peak = size
        self.exit_value = 0.0
        self.exit_qty = 0.0


class PortfolioAnalyzer(bt.Analyzer):
    """Per-bar portfolio record, orders and closed trades (see module docstring)."""

    def start(self) -> None:
        # not "datas_": an optimization (optreturn) sets every analyzer attribute whose name
        # starts with "data" to None, and get_analysis needs the feed count
        self._feeds = list(self.strategy.datas)
        #: each feed's (datetime, close) line buffers, read directly per bar (None: len/close[0])
        self._buffers = line_buffers(self._feeds)
        self.index = {id(d): i for i, d in enumerate(self._feeds)}
        n = len(self._feeds)
        self.names = [getattr(d, "_name", "") or f"data{i}" for i, d in enumerate(self._feeds)]
        self.pos = np.zeros(n)
        self.cashflow = np.zeros(n)
        self.start_value = self.strategy.broker.getvalue()
        self._traded = 0.0
        self._costs = 0.0
        # Per bar only plain floats are appended (a bar with numpy work on every asset cost
        # more than the strategy's own decision); the arrays are built in get_analysis.
        self.dt: list[float] = []
        self.value: list[float] = []
        self.closes: list[list[float]] = []
        self.traded: list[float] = []
        self.costs: list[float] = []
        #: (bar row, asset, |notional|) of every fill, in fill order
        self._fills: list[tuple[int, int, float]] = []
        #: (first bar row, positions, cash flows): the book from that row until the next
        self._books: list[tuple[int, np.ndarray, np.ndarray]] = [
            (0, self.pos.copy(), self.cashflow.copy())
        ]
        self._moved = False
        self.orders: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []
        self._open: list[_Trade | None] = [None] * n

    # -- events ----------------------------------------------------------
    def notify_order(self, order: bt.Order) -> None:
        status = order.status
        if status == bt.Order.Partial:
            return
        label = _FINAL.get(status)
        if label is None:
            return
        a = self.index.get(id(order.data))
        if a is None:  # pragma: no cover - order on a data that is not ours
            return
        if status == bt.Order.Completed:
            size = float(order.executed.size)
            price = float(order.executed.price)
            comm = float(order.executed.comm)
            dt = float(order.executed.dt)
            self.pos[a] += size
            if abs(self.pos[a]) < 1e-12 * max(1.0, abs(size)):
                self.pos[a] = 0.0
            self.cashflow[a] -= size * price + comm
            self._traded += abs(size * price)
            self._costs += comm + abs(size) * abs(price - _reference_price(order))
            self._fills.append((len(self.dt), a, abs(size * price)))
            self._moved = True
            self._fill(a, size, price, comm, dt)
        else:
            size = float(order.created.size)
            price = float(order.created.price or order.data.close[0])
            dt = float(self.strategy.datetime[0])
        self.orders.append(
            {
                "datetime": dt,
                "symbol": self.names[a],
                "side": "buy" if order.isbuy() else "sell",
                "size": abs(size),
                "price": price,
                "status": label,
                "commission": float(order.executed.comm) if status == bt.Order.Completed else 0.0,
            }
        )

    def _fill(self, a: int, size: float, price: float, comm: float, dt: float) -> None:
        """Average-cost trade book: a trade runs from flat to flat; a flip closes and reopens."""
        trade = self._open[a]
        if trade is None:
            self._open[a] = _Trade(size, price, dt, comm)
            return
        if np.sign(size) == np.sign(trade.size):
            total = abs(trade.size) + abs(size)
            trade.avg = (trade.avg * abs(trade.size) + price * abs(size)) / total
            trade.size += size
            trade.comm += comm
            if abs(trade.size) > abs(trade.peak):
                trade.peak = trade.size
            return
        closing = min(abs(size), abs(trade.size))
        frac = closing / abs(size)
        direction = np.sign(trade.size)
        trade.pnl += closing * (price - trade.avg) * direction
        trade.comm += comm * frac
        trade.exit_value += closing * price
        trade.exit_qty += closing
        trade.size -= direction * closing
        if abs(trade.size) <= 1e-9 * abs(trade.peak):
            self.trades.append(
                {
                    "symbol": self.names[a],
                    "entry_time": trade.entry,
                    "exit_time": dt,
                    "entry_price": trade.avg,
                    "exit_price": trade.exit_value / trade.exit_qty,
                    "size": trade.peak,
                    "pnl": trade.pnl,
                    "pnl_net": trade.pnl - trade.comm,
                    "commission": trade.comm,
                }
            )
            self._open[a] = None
            rest = abs(size) - closing
            if rest > 1e-12 * abs(size):
                self._open[a] = _Trade(np.sign(size) * rest, price, dt, comm * (1.0 - frac))

    # -- per bar ---------------------------------------------------------
    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        bufs = self._buffers
        if bufs is not None:  # the same numbers as below, without Backtrader's proxy calls
            closes = [c.array[c.idx] if t.lencount else 0.0 for t, c in bufs]
        else:
            closes = [d.close[0] if len(d) else 0.0 for d in self._feeds]
        if self._moved:  # fills since the last bar: the book from this bar on
            self._books.append((len(self.dt), self.pos.copy(), self.cashflow.copy()))
            self._moved = False
        self.dt.append(float(self.strategy.datetime[0]))
        self.value.append(self.strategy.broker.getvalue())
        self.closes.append(closes)
        self.traded.append(self._traded)
        self.costs.append(self._costs)
        self._traded = 0.0
        self._costs = 0.0

    def stop(self) -> None:
        # the record is plain data from here on: no reference into the run's feeds (line
        # buffers lead to the strategy and Cerebro), so optstrategy's workers can send the
        # analyzer back (pickle) with maxcpus > 1
        self._feeds = []
        self._buffers = None
        self.index = {}

    def get_analysis(self) -> dict[str, Any]:
        n = len(self.names)
        bars = len(self.dt)
        value = np.asarray(self.value, dtype=np.float64)
        closes = np.asarray(self.closes, dtype=np.float64).reshape(bars, n)
        starts = [row for row, _, _ in self._books if row < bars]
        counts = np.diff([*starts, bars])
        pos = np.repeat(
            np.array([p for _, p, _ in self._books[: len(starts)]]).reshape(-1, n), counts, axis=0
        )
        flow = np.repeat(
            np.array([f for _, _, f in self._books[: len(starts)]]).reshape(-1, n), counts, axis=0
        )
        held = pos * closes
        traded_asset = np.zeros((bars, n))
        fills = [f for f in self._fills if f[0] < bars]
        if fills:
            rows, assets, notional = (np.array(c) for c in zip(*fills, strict=True))
            np.add.at(traded_asset, (rows, assets), notional)  # in fill order, as per bar
        with np.errstate(invalid="ignore", divide="ignore"):
            gross = np.where(value > 0, np.abs(held).sum(axis=1) / value, np.nan)
        return {
            "names": list(self.names),
            "start_value": self.start_value,
            "dt": np.asarray(self.dt, dtype=np.float64),
            "value": value,
            "equity": flow + held,
            "positions": held,
            "traded": np.asarray(self.traded, dtype=np.float64),
            "costs": np.asarray(self.costs, dtype=np.float64),
            "traded_asset": traded_asset,
            "gross": gross,
            "orders": list(self.orders),
            "trades": list(self.trades),
        }


def writer_summary(analysis: dict[str, Any]) -> dict[str, Any]:
    """The compact record a Backtrader writer gets for ``PortfolioAnalyzer`` (one line per
    field), not the per-bar arrays (``get_analysis`` keeps them for code): bars, start and
    end value, total return, largest gross exposure, orders by final status, closed trades."""
    value = analysis["value"]
    start = float(analysis["start_value"])
    end = float(value[-1]) if len(value) else start
    statuses: dict[str, int] = {}
    for order in analysis["orders"]:
        statuses[order["status"]] = statuses.get(order["status"], 0) + 1
    gross = analysis["gross"]
    return {
        "bars": int(len(value)),
        "start_value": start,
        "end_value": end,
        "total_return": end / start - 1.0 if start else float("nan"),
        "max_gross": float(np.nanmax(gross)) if len(gross) and np.isfinite(gross).any() else 0.0,
        "orders": statuses,
        "trades": len(analysis["trades"]),
    }


def compact_writer_info(info: Any, strategy: Any) -> Any:
    """``Strategy.getwriterinfo()`` with every ``PortfolioAnalyzer``'s analysis replaced by
    ``writer_summary`` (``cerebro.addwriter(bt.WriterFile, csv=True)`` wrote the whole per-bar
    record, 615 KB for a 2-feed, 1,100-bar run) and parameter values written by a short
    description (a list of Predictor objects was written as their reprs)."""
    for name, analyzer in strategy.analyzers.getitems():
        if isinstance(analyzer, PortfolioAnalyzer):
            info.Analyzers[name].Analysis = writer_summary(analyzer.get_analysis())
    params = info.get("Params") if hasattr(info, "get") else None
    if params:
        for key, value in list(params.items()):
            params[key] = _short(value)
    return info


def _short(value: Any) -> Any:
    """A parameter value as the writer shows it: plain values as they are, a list by its
    length and first items, an object by its checkpoint path or a short repr."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        head = ", ".join(str(_short(v)) for v in value[:3])
        return f"[{len(value)} items: {head}{', ...' if len(value) > 3 else ''}]"
    path = getattr(getattr(value, "checkpoint", None), "path", None)
    if path is not None:
        return f"{type(value).__name__}({path})"
    text = repr(value)
    return text if len(text) <= 120 and " object at 0x" not in text else type(value).__name__
