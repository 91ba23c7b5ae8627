"""Backtrader glue of the journal: records each decided bar, restores a resumed run.

:class:`PaperJournal` is an analyzer (it runs after the strategy's ``next`` on the
same bar). On a *live* bar (every feed that moved has ``live[0] == 1``) it commits
one :class:`~mtl_bt.paper.state.BarRecord`: the orders the strategy just created
(captured where the broker receives them), the fills and cancellations notified
since the last commit, positions, cash, equity and the strategy's resumable state
(``strategy.paper_state()`` if it has one).

Resume: the restarted run first replays history up to the last committed bar;
there (after the strategy's ``next``, which does not decide on history) the
broker gets the committed cash and positions back and the orders that were
still open are submitted again under their journal ids (never as new orders).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import backtrader as bt
import pandas as pd

from mtl_bt.paper.state import BarRecord, OrderRow, PaperState, Resume, iso

#: final order states, named as in a backtest's orders.csv (a journal written before this
#: naming says "filled" for "completed" and "cancelled" for "canceled")
_FINAL = {
    bt.Order.Completed: "completed",
    bt.Order.Canceled: "canceled",
    bt.Order.Expired: "expired",
    bt.Order.Margin: "margin",
    bt.Order.Rejected: "rejected",
}
FILLED = ("completed", "filled")


def bar_time(data: bt.feed.DataBase) -> pd.Timestamp:
    return pd.Timestamp(data.datetime.datetime(0)).tz_localize("UTC").round("us")


def is_live_bar(data: bt.feed.DataBase) -> bool:
    """True on a bar a live feed delivered as the newest (False on back-fill/history)."""
    live = getattr(data.lines, "live", None)
    return live is not None and live[0] == 1.0


class PaperJournal(bt.Analyzer):
    params = (
        ("state", None),  # PaperState
        ("resume", None),  # Resume
        ("model_sha256", None),  # callable -> sha256 of the model in use
        ("on_bar", None),  # callable(BarRecord) after each commit
        ("retrainer", None),  # Retrainer: jobs started and models swapped at bar boundaries
        ("resume_model", None),  # (predictor, sha256) of the last swapped-in model, on resume
        ("meta", None),  # callable -> run facts committed with the first bar
    )

    def start(self) -> None:
        self.state: PaperState = self.p.state
        self.resume: Resume = self.p.resume
        datas = self.strategy.datas
        self.names = [d._name for d in datas]
        self._lens = [0] * len(datas)
        self._created: list[bt.Order] = []
        self._ids: dict[int, int] = {}  # broker order ref -> journal order id
        self._updates: list[tuple[int, str, str | None, float | None, float | None, float]] = []
        self._restored = self.resume.datetime is None
        self._ohlcv: list[tuple[str, str, float, float, float, float, float, int]] = []
        self._resubmitting = False
        self.committed = 0
        broker = self.strategy.broker
        submit = broker.submit

        def recording_submit(order, check=True):
            if not self._resubmitting:
                self._created.append(order)
            return submit(order, check)

        broker.submit = recording_submit  # every order a strategy creates passes here
        if self.p.retrainer is not None:
            self._guard_before_decisions()

    def _guard_before_decisions(self) -> None:
        """Run the model-age guard before the strategy's own ``next`` on every live bar
        (analyzers run after the strategy: a guard there would come one bar late, on the
        first bar of every start and resume)."""
        strategy = self.strategy
        datas = strategy.datas
        seen = {"at": None}

        def guard() -> None:
            if not self._restored:
                return  # replayed history: nothing is decided
            times = [bar_time(d) for d in datas if len(d)]
            if not times:
                return
            now = max(times)
            if now == seen["at"]:
                return
            if all(is_live_bar(d) for d in datas if len(d) and bar_time(d) == now):
                seen["at"] = now
                self.p.retrainer.before_bar(strategy, now)

        for name in ("prenext", "nextstart", "next"):
            method = getattr(strategy, name)

            def guarded(method=method) -> None:
                guard()
                method()

            setattr(strategy, name, guarded)

    def notify_order(self, order: bt.Order) -> None:
        label = _FINAL.get(order.status)
        journal_id = self._ids.get(order.ref)
        if label is None or journal_id is None:
            return
        if order.status == bt.Order.Completed:
            when = iso(pd.Timestamp(bt.num2date(order.executed.dt)).tz_localize("UTC").round("us"))
            self._updates.append(
                (
                    journal_id,
                    label,
                    when,
                    abs(float(order.executed.size)),
                    float(order.executed.price),
                    float(order.executed.comm),
                )
            )
        else:
            self._updates.append((journal_id, label, None, None, None, 0.0))

    def next(self) -> None:
        datas = self.strategy.datas
        moved = []
        for a, d in enumerate(datas):
            if len(d) != self._lens[a]:
                self._lens[a] = len(d)
                moved.append(a)
        if not moved:
            return
        now = bar_time(datas[moved[0]])
        for a in moved:  # every bar delivered is journaled (report, reconcile)
            d = datas[a]
            self._ohlcv.append(
                (
                    self.names[a],
                    iso(bar_time(d)),
                    float(d.open[0]),
                    float(d.high[0]),
                    float(d.low[0]),
                    float(d.close[0]),
                    float(d.volume[0]),
                    int(is_live_bar(d)),
                )
            )
        if not self._restored:
            self._created.clear()  # history is never decided (the strategy was gated)
            if now >= pd.Timestamp(self.resume.datetime):
                self._restore()
            return
        if not all(is_live_bar(datas[a]) for a in moved):
            return  # back-fill: nothing decided; fills so far go into the next commit
        broker = self.strategy.broker
        created = [
            OrderRow(
                created=iso(now),
                symbol=self.names[datas.index(o.data)],
                side="buy" if o.isbuy() else "sell",
                size=abs(float(o.created.size)),
                price=float(o.data.close[0]),
            )
            for o in self._created
        ]
        positions = {}
        for name, d in zip(self.names, datas, strict=True):
            pos = broker.getposition(d)
            if pos.size:
                positions[name] = (float(pos.size), float(pos.price))
        state_fn: Callable[[], dict[str, Any]] | None = getattr(self.strategy, "paper_state", None)
        rec = BarRecord(
            datetime=iso(now),
            cash=float(broker.getcash()),
            equity=float(broker.getvalue()),
            model_sha256=str(self.p.model_sha256() if self.p.model_sha256 else ""),
            symbols=[self.names[a] for a in moved],
            created=created,
            updates=list(self._updates),
            positions=positions,
            strategy_state=state_fn() if state_fn else {},
            meta=self.p.meta() if self.p.meta is not None else {},
            ohlcv=list(self._ohlcv),
        )
        ids = self.state.commit(rec)
        for order, journal_id in zip(self._created, ids, strict=True):
            self._ids[order.ref] = journal_id
        self._created.clear()
        self._updates.clear()
        self._ohlcv.clear()
        self.committed += 1
        if self.p.retrainer is not None:  # a swap here is used from the next bar on
            self.p.retrainer.on_bar(self.strategy, now)
        if self.p.on_bar is not None:
            self.p.on_bar(rec)

    def _restore(self) -> None:
        """Committed cash, positions, open orders and strategy state back into the run."""
        res = self.resume
        broker = self.strategy.broker
        by_name = dict(zip(self.names, self.strategy.datas, strict=True))
        broker.setcash(res.cash)
        for name, (size, price) in res.positions.items():
            d = by_name[name]
            pos = bt.Position(size, price)
            pos.datetime = pos.updt = d.datetime.datetime(0)  # the broker's interest code reads it
            broker.positions[d] = pos
        self._resubmitting = True
        try:
            for o in res.open_orders:
                d = by_name[o["symbol"]]
                make = self.strategy.buy if o["side"] == "buy" else self.strategy.sell
                order = make(data=d, size=o["created_size"])
                self._ids[order.ref] = int(o["id"])
        finally:
            self._resubmitting = False
        swap = getattr(self.strategy, "swap_model", None)
        if self.p.resume_model is not None and swap is not None:
            swap(*self.p.resume_model)  # the retrained model in use when the run stopped
        restore = getattr(self.strategy, "restore_paper_state", None)
        if restore is not None and res.strategy_state:
            restore(res.strategy_state)
        self._restored = True
