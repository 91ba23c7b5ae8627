"""Equal-weight buy-and-hold baseline.

Each asset gets ``invest / n_assets`` of the starting portfolio value, bought
with a market order on its first bar (filled at its next bar's open) and held
to the end. ``invest`` (default 0.99) leaves room for commission and the gap
between the sizing close and the fill open. A baseline must never be silently
empty: when the broker still refuses an order (not enough cash after a gap up,
``margin``), it is sized again on the next bar from the cash left and sent
again, until it fills. Every refused order stays in ``orders.csv`` and is
counted in ``metrics.json`` (``rejected_orders``) and the run summary.
"""

from __future__ import annotations

import backtrader as bt


class BuyAndHold(bt.Strategy):
    params = (("invest", 0.99),)

    def start(self) -> None:
        n = max(1, len(self.datas))
        self._bought = [False] * len(self.datas)
        self._pending: dict[int, bt.Order] = {}
        self._budget = [self.broker.getvalue() * self.p.invest / n] * len(self.datas)
        #: orders the broker refused and this strategy sent again (resized)
        self.resized = 0

    def notify_order(self, order: bt.Order) -> None:
        a = next((i for i, o in self._pending.items() if o.ref == order.ref), None)
        if a is None or order.status in (order.Submitted, order.Accepted, order.Partial):
            return
        del self._pending[a]
        if order.status == order.Completed:
            self._bought[a] = True
            return
        # margin / rejected / canceled / expired: size it again from the cash now left
        waiting = sum(not b for b in self._bought)
        cash = self.broker.getcash() - sum(
            o.created.size * o.created.price for o in self._pending.values()
        )
        self._budget[a] = min(self._budget[a], max(0.0, cash) * self.p.invest / max(1, waiting))
        self.resized += 1

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        for a, d in enumerate(self.datas):
            if self._bought[a] or a in self._pending or not len(d):
                continue
            price = d.close[0]
            if price > 0 and self._budget[a] > 0:
                self._pending[a] = self.buy(data=d, size=self._budget[a] / price)
