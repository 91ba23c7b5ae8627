"""``MTLStrategy`` for paper trading: decides on live bars only, resumable.

Back-filled bars (warm-up history, the gap after an outage) go into the
strategy's per-asset bar buffers but are never decided: orders are only ever
created on the newest bar a live feed delivered (``data.live[0] == 1``). The
holding-period counters are part of the journal (``paper_state``), so a
resumed run rebalances on the same bars as an uninterrupted one. Each decided
bar's predictions per symbol are journaled with it (``decision``), so what a model
said on a bar can be checked against a backtest of that model.

``swap_model`` replaces the model the strategy reads from (the predictor, the fold
schedule, the asset ids) at a bar boundary. The feature book stays:
it holds the history the features need, so a model computing other features, over
another lookback or for other tasks is refused (``CheckpointError``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_bt.errors import CheckpointError, UserError
from mtl_bt.paper.journal import is_live_bar
from mtl_bt.strategies.mtl import MTLStrategy


class PaperMTLStrategy(MTLStrategy):
    # a paper run lasts days and swaps models: what was alive at its start (the first
    # model among it) must stay collectable
    freeze_heap = False

    def next(self) -> None:
        self._decision: dict[str, dict[str, float]] = {}
        moved = [a for a, d in enumerate(self.datas) if len(d) != self._lens[a]]
        if moved and all(is_live_bar(self.datas[a]) for a in moved):
            super().next()
            return
        # history: the bars entered the feature book (the indicators' engine took them),
        # nothing is decided
        for a in moved:
            self._lens[a] = len(self.datas[a])
            self._bars[a] += 1
        self.engine.step_new = []

    def paper_state(self) -> dict[str, Any]:
        return {
            "bars": self._bars.tolist(),
            "due": self._due.tolist(),
            "held": self._held.tolist(),
            "decisions": int(self.decisions),
            # this bar's predictions per symbol (not restored: an audit of the model in use)
            "decision": getattr(self, "_decision", {}),
        }

    def _predict(self, fold: int, assets: list[int], rows: list[int]) -> dict[str, np.ndarray]:
        preds = super()._predict(fold, assets, rows)
        for i, a in enumerate(assets):
            self._decision[self.symbols[a]] = {t: float(v[i]) for t, v in preds.items()}
        return preds

    def restore_paper_state(self, state: dict[str, Any]) -> None:
        self._bars = np.asarray(state["bars"], dtype=np.int64)
        self._due = np.asarray(state["due"], dtype=np.int64)
        self._held = np.asarray(state["held"], dtype=bool)
        self.decisions = int(state.get("decisions", 0))

    def swap_model(self, predictor: Any, sha256: str) -> None:
        """Use ``predictor`` from the next bar on (a retrained model of the same config).

        Everything that was derived from the old model is rebuilt from the new one; the
        feature book is kept (it holds the history), so the new model must read the same
        features over the same lookback and predict the same tasks.
        """
        from mtl_bt.backtesting.folds import FoldSchedule

        old = self.predictors[0]
        for what, have, new in (
            ("feature columns", list(old.feature_columns), list(predictor.feature_columns)),
            ("feature spec", old.feature_spec.to_dict(), predictor.feature_spec.to_dict()),
            ("lookback", int(old.lookback or 1), int(predictor.lookback or 1)),
            ("tasks", list(old.task_names), list(predictor.task_names)),
        ):
            if have != new:
                raise CheckpointError(
                    f"the new model's {what} ({new}) differ from the running model's ({have}); "
                    "a model can only be swapped for one trained with the same config"
                )
        if not self.streaming or self.preds is not None or self._raw is not None:
            # preloaded feeds: predictions were precomputed from the old model in start()
            raise UserError("swap_model needs live feeds (MTLStrategy's streaming path)")
        # everything that can refuse the model runs before anything is replaced, so a
        # refused model leaves the strategy exactly as it was
        previous = self.predictors
        self.predictors = [predictor]
        try:
            asset_ids = self._asset_ids()  # the new model's own symbol order
            schedule = FoldSchedule(self.predictors)
        except BaseException:
            self.predictors = previous
            raise
        self.schedule = schedule
        self.asset_ids = asset_ids
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
                    if pos == 0.0:  # not held: no holding period runs for it
                        self._held[self._asset_of[id(d)]] = False
                elif abs(w) * self.broker.getvalue() > abs(pos) * d.close[0]:
                    w = float(np.sign(w)) * abs(pos) * d.close[0] / self.broker.getvalue()
                kept.append((d, w))
            targets = kept
        super().order_targets(targets)
