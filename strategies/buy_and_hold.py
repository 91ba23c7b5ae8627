"""Equal-weight buy-and-hold baseline.

Each asset gets ``invest / n_assets`` of the starting portfolio value, bought
with a market order on its first bar (filled at its second bar's open) and held
to the end. ``invest`` (default 0.99) leaves room for commission and the gap
between the sizing close and the fill open, so the orders are not rejected.
"""

from __future__ import annotations

import backtrader as bt


class BuyAndHold(bt.Strategy):
    params = (("invest", 0.99),)

    def start(self) -> None:
        self._bought = [False] * len(self.datas)
        self._budget = self.broker.getvalue() * self.p.invest / max(1, len(self.datas))

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        for a, d in enumerate(self.datas):
            if not self._bought[a] and len(d):
                price = d.close[0]
                if price > 0:
                    self.buy(data=d, size=self._budget / price)
                    self._bought[a] = True
