"""``MTLStrategy`` for paper trading: decides on live bars only, resumable.

Back-filled bars (warm-up history, the gap after an outage) go into the
strategy's per-asset bar buffers but are never decided: orders are only ever
created on the newest bar a live feed delivered (``data.live[0] == 1``). The
holding-period counters are part of the journal (``paper_state``), so a
resumed run rebalances on the same bars as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_bt.paper.journal import is_live_bar
from mtl_bt.strategies.mtl import MTLStrategy


class PaperMTLStrategy(MTLStrategy):
    def next(self) -> None:
        moved = [a for a, d in enumerate(self.datas) if len(d) != self._lens[a]]
        if moved and all(is_live_bar(self.datas[a]) for a in moved):
            super().next()
            return
        # history: the bars enter the feature book, nothing is decided
        for a in moved:
            d = self.datas[a]
            self._lens[a] = len(d)
            self._bars[a] += 1
            self.book.advance(a, d)

    def paper_state(self) -> dict[str, Any]:
        return {
            "bars": self._bars.tolist(),
            "due": self._due.tolist(),
            "held": self._held.tolist(),
            "decisions": int(self.decisions),
        }

    def restore_paper_state(self, state: dict[str, Any]) -> None:
        self._bars = np.asarray(state["bars"], dtype=np.int64)
        self._due = np.asarray(state["due"], dtype=np.int64)
        self._held = np.asarray(state["held"], dtype=bool)
        self.decisions = int(state.get("decisions", 0))

    def swap_model(self, predictor: Any, sha256: str) -> None:
        """Use ``predictor`` from the next bar on (a retrained model of the same config)."""
        from mtl_bt.backtesting.folds import FoldSchedule

        self.predictors = [predictor]
        self.schedule = FoldSchedule(self.predictors)
        self.model_sha256 = sha256

    def model_stale(self, stale: bool) -> None:
        """Called when the model is older than ``[paper] max_model_age``: no new entries."""
        self.stale = bool(stale)

    def order_targets(self, targets: list[tuple[Any, float]]) -> None:
        if getattr(self, "stale", False):  # a stale model may exit or reduce, never open
            kept = []
            for d, w in targets:
                pos = self.getposition(d).size
                if pos == 0.0 or w * pos < 0.0:
                    w = 0.0  # no entry from flat, no flip to the other side
                elif abs(w) * self.broker.getvalue() > abs(pos) * d.close[0]:
                    w = float(np.sign(w)) * abs(pos) * d.close[0] / self.broker.getvalue()
                kept.append((d, w))
            targets = kept
        super().order_targets(targets)
