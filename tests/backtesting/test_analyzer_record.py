"""PortfolioAnalyzer appends plain floats per bar and builds its arrays at the end; this
pins the result to the per-bar numpy record it replaced (kept here as the reference),
run side by side in one Cerebro on uneven feeds, with fills on most bars."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pytest

from mtl_bt.backtesting.analyzers import PortfolioAnalyzer
from mtl_bt.backtesting.runner import make_cerebro
from mtl_bt.config import BacktestConfig
from mtl_bt.data.synthetic import garch_bars


class _PerBarReference(PortfolioAnalyzer):
    """The previous record: numpy arrays per bar (positions, equity, traded per asset)."""

    def start(self) -> None:
        super().start()
        self.ref_equity, self.ref_positions, self.ref_gross = [], [], []
        self.ref_traded_asset, self._ta = [], np.zeros(len(self._feeds))

    def notify_order(self, order):
        if order.status == bt.Order.Completed:
            self._ta[self.index[id(order.data)]] += abs(
                float(order.executed.size) * float(order.executed.price)
            )
        super().notify_order(order)

    def next(self) -> None:
        closes = np.array([d.close[0] if len(d) else 0.0 for d in self._feeds])
        value = self.strategy.broker.getvalue()
        held = self.pos * closes
        self.ref_equity.append(self.cashflow + held)
        self.ref_positions.append(held)
        self.ref_traded_asset.append(self._ta.copy())
        self._ta[:] = 0.0
        self.ref_gross.append(float(np.abs(held).sum()) / value if value > 0 else np.nan)
        super().next()


class _Churn(bt.Strategy):
    """Buys or sells a random size of a random subset of the started assets every bar."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(7)

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        for d in self.datas:
            if len(d) and self.rng.random() < 0.6:
                size = float(self.rng.uniform(0.1, 3.0))
                if self.rng.random() < 0.5 or not self.getposition(d).size:
                    self.buy(data=d, size=size)
                else:
                    self.sell(data=d, size=size)


@pytest.mark.parametrize("n_assets", [1, 11])
def test_record_equals_the_per_bar_reference(n_assets):
    frames = {
        f"A{i}": garch_bars(400, seed=i, freq="1h").iloc[(i % 4) * 17 :] for i in range(n_assets)
    }
    cerebro = make_cerebro(frames, BacktestConfig())
    cerebro.addstrategy(_Churn)
    cerebro.addanalyzer(_PerBarReference, _name="ref")
    rec = cerebro.run()[0].analyzers.ref
    got = rec.get_analysis()
    assert len(got["dt"]) > 300 and len(got["orders"]) > 200
    np.testing.assert_array_equal(got["equity"], np.array(rec.ref_equity))
    np.testing.assert_array_equal(got["positions"], np.array(rec.ref_positions))
    np.testing.assert_array_equal(got["traded_asset"], np.array(rec.ref_traded_asset))
    np.testing.assert_array_equal(got["gross"], np.array(rec.ref_gross))
    assert np.count_nonzero(got["traded_asset"]) > 100
