"""Buys of one decision filled together: scaled at the fill to the cash left after the sells.

Why: the rebalancer sizes a bar's buys from that bar's close to fit 99% of the cash; they
fill at the next bar's open. On a gap-up the buys cost more than sized, and Backtrader's
broker fills its pending orders one by one in submission order: the buy submitted last
finds the cash gone and is refused (``Margin``). Which asset that is depends on the order
of the feeds, so reordering ``cerebro.adddata`` calls changed the result.

``BuyGroups`` installs itself as the broker's ``filler`` (Backtrader's hook that decides an
executing order's size). On the first fill of a group it computes ONE scale for all of the
group's buys from the cash at that moment (the sells of the same decision were submitted
first, so they have filled) and each buy's fill price (this bar's open with the broker's
slippage) and commission: ``min(1, cash / cost of all the buys)``. Every buy of the group is
filled at that scale (the part of a buy that covers a short always fills in full: an exit
or a flip closes), so the submission order of the buys cannot matter and none is refused.
A scale of 1 (the buys fit) leaves every fill exactly as Backtrader makes it. It is a
notional ("buy 30% of the book") order, sized when the price is known, as brokers offer.

Only Backtrader's own ``BackBroker`` has a filler; another broker (live), or one whose user
already set a filler, is left alone (``install`` returns None).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: leave this fraction of the cash unspent (rounding of the commission and slippage)
_SAFETY = 1e-6


class _Group:
    __slots__ = ("orders", "sizes")

    def __init__(self, orders: Sequence[Any]) -> None:
        self.orders = list(orders)
        self.sizes: dict[int, float] | None = None  # order ref -> size to fill


class BuyGroups:
    """The broker filler that fills each registered group of buys at one cash-fitted scale."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._groups: dict[int, _Group] = {}  # order ref -> its group

    @classmethod
    def install(cls, broker: Any) -> BuyGroups | None:
        """Set on ``broker`` as its filler; None when the broker has no free filler slot."""
        params = getattr(broker, "p", None)
        if params is None or not hasattr(params, "filler") or params.filler is not None:
            return None
        groups = cls(broker)
        params.filler = groups
        return groups

    def uninstall(self) -> None:
        if self.broker.p.filler is self:
            self.broker.p.filler = None
        self._groups.clear()

    def add(self, buys: Sequence[Any]) -> None:
        """Register one decision's buy orders (after its sells were submitted)."""
        if len(buys) == 0:
            return
        group = _Group([o for o in buys if o is not None])
        for order in group.orders:
            self._groups[order.ref] = group

    # -- Backtrader's filler protocol: (order, price, ago) -> size to fill (unsigned) ----
    def __call__(self, order: Any, price: float, ago: int) -> float:
        remaining = abs(order.executed.remsize)
        group = self._groups.pop(order.ref, None)
        if group is None or not order.isbuy():
            return remaining
        if group.sizes is None:
            group.sizes = self._fit(group, order, price)
        size = min(remaining, group.sizes.get(order.ref, remaining))
        if size < remaining:
            order.executed.remsize = size  # the order completes at the fitted size
        return size

    def _fit(self, group: _Group, first: Any, price: float) -> dict[int, float]:
        """Each alive buy's size: the part that covers a short in full (an exit or a flip
        always closes), the part that opens scaled by one factor so that all fit the cash."""
        broker = self.broker
        fixed = 0.0
        parts = []
        for order in group.orders:
            if not order.alive():
                continue
            size = abs(order.executed.remsize)
            fill = price if order is first else self._fill_price(order)
            info = broker.getcommissioninfo(order.data)
            covering = min(size, max(0.0, -broker.getposition(order.data).size))
            opening = size - covering
            fixed += info.getoperationcost(covering, fill) + info.getcommission(covering, fill)
            cost = info.getoperationcost(opening, fill) + info.getcommission(opening, fill)
            parts.append((order.ref, covering, opening, cost))
        variable = sum(p[3] for p in parts)
        room = broker.getcash() * (1.0 - _SAFETY) - fixed
        if variable <= room:
            return {}  # the buys fit: every one fills as Backtrader makes it
        scale = max(0.0, room / variable)
        return {ref: covering + opening * scale for ref, covering, opening, _ in parts}

    def _fill_price(self, order: Any) -> float:
        """The price Backtrader will fill this market buy at on this step (the open, slipped
        as the broker slips it); the sizing close when its feed has no new bar yet."""
        data = order.data
        if not len(data) or data.datetime[0] <= order.created.dt:
            return float(order.created.price)
        broker = self.broker
        slip = getattr(broker, "_slip_up", None)
        price = float(data.open[0])
        if slip is not None and broker.p.slip_open:
            slipped = slip(float(data.high[0]), price, doslip=True)
            if slipped is not None:
                price = float(slipped)
        return price


def place_orders(strategy: Any, plan: Sequence[tuple[Any, float]]) -> None:
    """Submit ``(feed, signed units)`` market orders, sells before buys; the buys as one
    group fitted to the cash at the fill (``strategy._buy_groups``, set by ``start_fills``)."""
    buys = []
    # sells first; each side in the feeds' name order, so the broker's cash sums run in one
    # order whatever the order of the feeds (bit-identical results)
    for data, delta in sorted(plan, key=lambda item: (item[1] > 0, _name(item[0]))):
        if delta > 0:
            buys.append(strategy.buy(data=data, size=delta))
        elif delta < 0:
            strategy.sell(data=data, size=-delta)
    groups = getattr(strategy, "_buy_groups", None)
    if groups is not None:
        groups.add(buys)


def _name(data: Any) -> str:
    return str(getattr(data, "_name", "") or "")


def start_fills(strategy: Any) -> None:
    """Install the buy-group filler on the strategy's broker for its run (``stop_fills``)."""
    strategy._buy_groups = BuyGroups.install(strategy.broker)


def stop_fills(strategy: Any) -> None:
    groups = getattr(strategy, "_buy_groups", None)
    if groups is not None:
        groups.uninstall()
        strategy._buy_groups = None


def send_targets(
    strategy: Any, targets: Sequence[tuple[Any, float]], at_open: bool = False
) -> None:
    """MTLStrategy's default orders: ``(feed, weight)`` targets -> the rebalancer's plan,
    sized from the bar's close (or its open, for ``cheat_on_open``) -> ``place_orders``."""
    from mtl_bt.backtesting.rebalancer import Holding

    symbols = getattr(strategy, "symbols", None)
    index = getattr(strategy, "_asset_of", None)
    holdings = [
        Holding(
            symbol=symbols[index[id(d)]] if symbols and index else _name(d),
            position=strategy.getposition(d).size,
            price=d.open[0] if at_open else d.close[0],
        )
        for d, _ in targets
    ]
    weights = [float(w) for _, w in targets]
    broker = strategy.broker
    plan = strategy.rebalancer.orders(holdings, weights, broker.getvalue(), broker.getcash())
    place_orders(strategy, [(targets[i][0], delta) for i, delta in plan])


def defer_to_open(strategy: Any, targets: Sequence[tuple[Any, float]]) -> bool:
    """With ``cheat_on_open=True`` keep this close's targets for the next bar's open (True):
    Backtrader's cheat-on-open is for sizing with the open price, and the orders then fill at
    that open, the same bar as without it."""
    if not getattr(strategy.env.p, "cheat_on_open", False):
        return False
    waiting = getattr(strategy, "_at_open", None) or {}
    for data, weight in targets:  # a newer decision on a feed replaces the older one
        waiting[id(data)] = (data, weight, float(data.datetime[0]))
    strategy._at_open = waiting
    return True


def send_deferred(strategy: Any) -> None:
    """At the open: send the kept targets of every feed that has a new bar (sized from its
    open); a feed without one keeps waiting (never filled at a stale bar's open)."""
    waiting = getattr(strategy, "_at_open", None)
    if not waiting:
        return
    ready = []
    for key, (data, weight, decided) in list(waiting.items()):
        if len(data) and float(data.datetime[0]) > decided:
            ready.append((data, weight))
            del waiting[key]
    if ready:
        send_targets(strategy, ready, at_open=True)
