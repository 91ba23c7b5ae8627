"""A plain Backtrader strategy for the paper tests: momentum long/flat, decided on live bars
(paper) or from ``start`` on (the same strategy backtested on the same bars)."""

from __future__ import annotations

import backtrader as bt
import pandas as pd

from mtl_bt.paper.journal import bar_time, is_live_bar


class Momentum(bt.Strategy):
    params = (("start", None), ("lookback", 3), ("weight", 0.3))

    def __init__(self):
        self.fills = []
        self._lens = None

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append(
                (
                    pd.Timestamp(bt.num2date(order.executed.dt)).tz_localize("UTC"),
                    order.data._name,
                    "buy" if order.isbuy() else "sell",
                    abs(order.executed.size),
                    order.executed.price,
                    order.executed.comm,
                )
            )

    def prenext(self):
        self.next()

    def _decides(self, d) -> bool:
        if hasattr(d.lines, "live"):
            return is_live_bar(d)
        return self.p.start is not None and bar_time(d) >= self.p.start

    def next(self):
        if self._lens is None:
            self._lens = [0] * len(self.datas)
        for a, d in enumerate(self.datas):
            if len(d) == self._lens[a]:
                continue
            self._lens[a] = len(d)
            if len(d) <= self.p.lookback or not self._decides(d):
                continue
            w = self.p.weight if d.close[0] > d.close[-self.p.lookback] else 0.0
            self.order_target_percent(data=d, target=w)


class RetrainProbe(Momentum):
    """Momentum that takes swapped-in models and stops two bars after the first swap."""

    def __init__(self):
        super().__init__()
        self.swaps = []
        self._after = None

    def swap_model(self, predictor, sha256):
        self.swaps.append((bar_time(self.datas[0]), sha256, predictor))
        self._after = 0

    def retrain_failed(self, error):
        self.swaps.append((bar_time(self.datas[0]), None, error))
        self._after = 0

    def next(self):
        super().next()
        if self._after is not None and is_live_bar(self.datas[0]):
            self._after += 1
            if self._after >= 2:
                self.env.runstop()
