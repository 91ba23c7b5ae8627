"""MTLStrategy: trade a multi-task model's predictions bar by bar inside Backtrader.

Usable from plain Backtrader code on any feed::

    cerebro.adddata(bt.feeds.PandasData(dataname=df), name="BTC/USDT")
    cerebro.addstrategy(MTLStrategy, predictor=Predictor.from_checkpoint("fold_000.pt"))

The bars are the feed's own lines, never its ``dataname``: whatever column
mapping, ``datetime`` column, timezone or resampling the user set is what the
model sees and what orders are sized from.

Per bar: every asset with a new bar (and only those: an asset whose feed did
not move is never traded on stale data) whose decision is due contributes its
newest causal feature row (or ``lookback`` rows) -> ONE batched forward pass
(``Predictor.predict``) -> the signal-rule plugin -> target weights ->
:meth:`MTLStrategy.order_targets` (public hook) -> orders sized from this bar's
close, filled by the broker at the next bar's open.

The class is thin; its named parts are testable alone:
- bars (``mtl_bt.backtesting.bars``): the canonical frame from a preloaded feed's lines;
- feature book (``mtl_bt.backtesting.feature_book``): model inputs per bar;
- fold schedule (``mtl_bt.backtesting.folds``): which fold model may decide a bar;
- rebalancer (``mtl_bt.backtesting.rebalancer``): target weights -> order sizes.

``mode="precomputed"`` also runs the model once over all rows before the run
(vectorised) and reads predictions from arrays; ``mode="live"`` (the default)
runs one batched forward pass per bar. Both give identical orders.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Sequence
from typing import Any

import backtrader as bt
import numpy as np

from mtl_bt.backtesting.bars import (
    check_bars,
    datenum_micros,
    feed_name,
    feed_symbol,
    is_preloaded,
    line_buffers,
    preloaded_frame,
    replay_edge_micros,
)
from mtl_bt.backtesting.calendar import feed_periods_per_year
from mtl_bt.backtesting.feature_book import PreloadedBook
from mtl_bt.backtesting.fills import (
    defer_to_open,
    send_deferred,
    send_targets,
    start_fills,
    stop_fills,
)
from mtl_bt.backtesting.folds import NO_FOLD, FoldSchedule, fold_window
from mtl_bt.backtesting.guards import check_feeds, check_optimized_model, warn_unused_settings
from mtl_bt.backtesting.models import resolve_models
from mtl_bt.backtesting.rebalancer import Rebalancer
from mtl_bt.backtesting.streaming import StreamingBook
from mtl_bt.errors import CheckpointError, DataError, UserError
from mtl_bt.signals.clip import clip_each
from mtl_bt.signals.context import RuleCaller, is_separable, sees_all_assets

__all__ = ["MTLStrategy", "fold_window"]


class MTLStrategy(bt.Strategy):
    """Multi-asset strategy driven by a multi-task model (see module docstring)."""

    params = (
        # Predictor, checkpoint path, run directory, a list of them (walk-forward folds), or
        # mtl_bt.backtesting.Models(...): one value for cerebro.optstrategy
        ("predictor", None),
        ("model", None),  # alias of predictor
        ("signal", "agree_voltarget"),  # signal-rule name (plugin) or a SignalRule instance
        ("signal_options", None),
        ("mode", "live"),  # "live": one forward pass per bar; "precomputed": before the run
        ("streaming", False),  # True: the streaming path even on preloaded feeds (parity)
        ("live_features", False),  # old name of streaming=True
        ("rebalance", "horizon"),  # "bar" or "horizon" (hold a position for h bars)
        ("horizon", None),  # holding period in bars (None: the signal's return horizon)
        ("max_weight", 0.5),
        ("max_gross_leverage", 1.0),
        ("allow_short", True),
        ("commission", 0.001),  # for the signal's cost threshold (set the broker separately)
        ("slippage", 0.0005),
        ("min_trade_weight", 0.01),  # no-trade band: skip same-side changes smaller than this
        ("calendar", "auto"),
        # True: trade a model on bars of another size than it was trained on (else refused)
        ("any_bar_size", False),
        ("realised_vol_window", 20),
        ("record", False),  # keep every bar's predictions (parity tests)
        # a separable rule: raw weights of every bar before the run (precomputed mode),
        # raw_weights + the clip per bar without the current-weights context (live)
        ("vector_signals", True),
        ("torch_threads", 1),  # torch threads during the run (None: leave torch's setting)
        ("blas_threads", 1),  # numpy's OpenBLAS threads during the run (None: leave them)
        # move the objects alive at start (models, frames, features) out of the garbage
        # collector's view for the run (gc.freeze), back in stop (gc.unfreeze)
        ("gc_freeze", True),
    )

    # -- setup -----------------------------------------------------------
    def __init__(self) -> None:
        p = self.p
        given = p.predictor if p.predictor is not None else p.model
        if given is None:
            raise UserError(
                "MTLStrategy needs predictor= (a Predictor, checkpoint path, run directory, "
                "a list of those, or Models(...))"
            )
        if p.mode not in ("live", "precomputed"):
            raise UserError(f"MTLStrategy mode must be 'live' or 'precomputed', not {p.mode!r}")
        if p.rebalance not in ("bar", "horizon"):
            raise UserError(f"rebalance must be 'bar' or 'horizon', not {p.rebalance!r}")
        self.predictors = resolve_models(given)  # a Models, run dir, checkpoint(s), Predictor(s)
        check_optimized_model(self, given)  # optstrategy iterating a fold list: refused
        first = self.predictors[0]
        for other in self.predictors[1:]:
            if list(other.feature_columns) != list(first.feature_columns):
                raise CheckpointError(
                    "fold models disagree on feature columns; use one training run"
                )
            if list(other.task_names) != list(first.task_names):
                raise CheckpointError("fold models disagree on tasks; use one training run")
        self.task_names: list[str] = list(first.task_names)
        self.lookback = max(1, int(getattr(first, "lookback", 1) or 1))
        self.rule = self._make_rule()
        self.rule_caller = RuleCaller(
            self.rule, str(p.signal) if isinstance(p.signal, str) else None
        )
        self._all_assets = sees_all_assets(self.rule)
        # optional context computed only for a rule that lists it (SignalRule.context_inputs)
        self._ewma = "ewma_vol" in tuple(getattr(self.rule, "context_inputs", ()) or ())
        #: call a separable rule's raw_weights + the clip (no current-weights context)
        self._separable = bool(p.vector_signals) and is_separable(self.rule)
        heads = self.rule.heads(self.task_names) if hasattr(self.rule, "heads") else {}
        self.used_tasks = [t for t in heads.values() if t] or list(self.task_names)
        self.hold = int(p.horizon or self._holding_horizon(heads))
        self.schedule = FoldSchedule(self.predictors)
        self.rebalancer = Rebalancer(
            max_gross_leverage=p.max_gross_leverage,
            min_trade_weight=p.min_trade_weight,
            commission=p.commission,
            slippage=p.slippage,
        )
        self.predictions_log: list[tuple[float, list[int], dict[str, np.ndarray]]] = []
        self.decisions = 0
        self.first_decision: float | None = None
        self._frozen = False  # gc.freeze() in start, undone in stop

    @classmethod
    def from_config(cls, config: Any, models: Any) -> tuple[type[MTLStrategy], dict[str, Any]]:
        """``(strategy class, parameters)`` that ``mtl-bt backtest`` runs for ``config``
        (a path, ``Config`` or ``BacktestConfig``) and ``models`` (checkpoint, train dir, or a
        list): ``cerebro.addstrategy(cls, **params)``. Pair it with
        :func:`mtl_bt.backtesting.broker.configure_broker` for the CLI's broker. The class
        defaults are not a config's: this is how plain Backtrader code gets the config's.
        A whole config whose features or tasks are not the model's is refused, as by
        ``mtl-bt backtest``.
        """
        from mtl_bt.backtesting.inputs import config_strategy_params

        return cls, config_strategy_params(config, models)

    def _make_rule(self) -> Any:
        from mtl_bt import registry
        from mtl_bt.signals.base import SignalRule

        if isinstance(self.p.signal, SignalRule):
            return self.p.signal
        return registry.create("signal", str(self.p.signal), **(self.p.signal_options or {}))

    def _holding_horizon(self, heads: dict[str, str | None]) -> int:
        """Bars to hold a position: the rule's return head's horizon; for a rule without
        ``heads()`` the model's one return horizon (from the checkpoint), else a refusal."""
        if hasattr(self.rule, "heads") or self.p.rebalance == "bar":
            return int(str(heads.get("return") or "").partition("@")[2] or 1)
        from mtl_bt.signals.base import task_horizons

        found = task_horizons(dict.fromkeys(self.task_names), "return")
        if len(found) == 1:
            return int(found[0])
        name = self.p.signal if isinstance(self.p.signal, str) else type(self.rule).__name__
        raise UserError(
            f"signal rule {name!r} has no heads(), so the holding period is not known: the "
            f"model's return horizons are {found or 'none'}. Pass MTLStrategy horizon= (bars "
            "to hold), rebalance='bar', or give the rule a heads() method"
        )

    def start(self) -> None:
        datas = self.datas
        n = len(datas)
        self.symbols = [feed_symbol(d, i) for i, d in enumerate(datas)]
        self.asset_ids = self._asset_ids()
        self.streaming = bool(self.p.streaming or self.p.live_features) or not is_preloaded(self)
        self._edge_us = [replay_edge_micros(d, s) for d, s in zip(datas, self.symbols, strict=True)]
        # numpy's OpenBLAS threads only slow the small products of inference down (and the
        # vectorised pass's, on a loaded machine a lot): one during the run, as torch below
        self._restore_blas = None
        if self.p.blas_threads is not None:
            from mtl_bt.threads import blas_threads

            self._restore_blas = blas_threads(int(self.p.blas_threads))
        if self.streaming:
            self._start_streaming()
        else:
            self._start_preloaded()
        self.used_folds: list[tuple[float, int]] = []
        # A forward pass over a handful of rows is 3-4x slower with several torch threads
        # (thread start-up dominates); use one during the run, restored in stop().
        self._threads_before = None
        if self.p.torch_threads is not None:
            import torch

            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(int(self.p.torch_threads))
        self._asset_of = {id(d): a for a, d in enumerate(datas)}
        self._lens = [0] * n
        # per-bar shortcuts (same values as the general path, fewer Python calls):
        # a preloaded, non-replayed feed's bar count read off its datetime buffer
        # (what len(feed) returns) and its row = count - 1 (PreloadedBook.advance)
        self._buffers = line_buffers(datas)
        self._counters = None
        if not self.streaming and not any(self._edge_us) and self._buffers is not None:
            self._counters = [dt for dt, _ in self._buffers]
        self._every_bar = self.p.rebalance == "bar" or self._all_assets
        self._clock = self.lines.datetime
        self._last_dt = [float("nan")] * n
        self._bars = np.zeros(n, dtype=np.int64)
        self._due = np.zeros(n, dtype=np.int64)
        self._held = np.zeros(n, dtype=bool)
        self._cost = dict(
            commission=self.p.commission,
            slippage=self.p.slippage,
            max_weight=self.p.max_weight,
            max_gross_leverage=self.p.max_gross_leverage,
            allow_short=self.p.allow_short,
            n_assets=n,
        )
        # a separable rule's weights for every (bar, asset) before the run (precomputed mode)
        self._raw, self._usable = self._precompute_signals()  # raw weights through clip_each
        start_fills(self)  # a bar's buys fill together, fitted to the cash (fills.py)
        # an added sizer this strategy would not use: warned, not silently ignored
        warn_unused_settings(self, type(self).order_targets is MTLStrategy.order_targets)
        # Python's full collections scan every tracked object: with torch, pandas and the
        # models loaded, one costs 0.3 s, and a run's orders and notifications trigger
        # them. Objects alive now live for the whole run: freeze them (stop() unfreezes).
        # A heap the caller froze already is the caller's to manage.
        self._frozen = bool(self.p.gc_freeze) and gc.get_freeze_count() == 0
        if self._frozen:
            gc.freeze()

    def _start_preloaded(self) -> None:
        """Whole arrays are in the lines: one canonical frame per feed, features vectorised."""
        datas = self.datas
        self.frames = [preloaded_frame(d, s) for d, s in zip(datas, self.symbols, strict=True)]
        for frame, sym in zip(self.frames, self.symbols, strict=True):
            check_bars(frame, sym)
        check_feeds(self)  # bar size, warm-up, test windows: refused before any work
        self.ppy = np.array(
            [
                feed_periods_per_year(d, f.index, self.p.calendar, s)
                for d, f, s in zip(datas, self.frames, self.symbols, strict=True)
            ],
            dtype=np.float64,
        )
        self.book = PreloadedBook(
            self.predictors[0],
            self.frames,
            self.symbols,
            self.lookback,
            self.p.realised_vol_window,
            ewma=self._ewma,
        )
        self.fold_of = [self.schedule.rows(d.datetime.array) for d in datas]
        # One vectorised pass before the run: the predictions of mode="precomputed",
        # and in both modes the check that no symbol gets only NaN predictions.
        self.vector_preds = self._precompute()
        self.preds = self.vector_preds if self.p.mode == "precomputed" else None
        self._pred_mat = [
            np.column_stack([pred[t] for t in self.task_names]) for pred in self.vector_preds
        ]

    def _start_streaming(self) -> None:
        """Bars arrive one at a time (replay, resample, live, preload=False): the streaming
        book computes each new bar's features on arrival; one forward pass per bar."""
        self.frames = []
        self.ppy = np.full(len(self.datas), np.nan)
        self.book = StreamingBook(
            self.predictors[0],
            self.symbols,
            self.lookback,
            self.p.realised_vol_window,
            keep_rows=bool(self.p.record),
            ewma=self._ewma,
        )
        self.preds = None

    def _asset_ids(self) -> np.ndarray | None:
        pred = self.predictors[0]
        known = list(getattr(pred, "symbols", []) or [])
        unknown = [s for s in self.symbols if s not in known]
        if not unknown:
            return np.array([known.index(s) for s in self.symbols], dtype=np.int64)
        if getattr(pred, "_uses_asset", lambda: False)():
            unnamed = [s for d, s in zip(self.datas, self.symbols, strict=True) if not feed_name(d)]
            if unnamed:
                raise CheckpointError(
                    f"feed {unnamed[0]!r} has no name, but the model has an asset embedding "
                    f"and must know the symbol: cerebro.adddata(feed, name=...) with one of {known}"
                )
            raise CheckpointError(
                f"symbols {unknown} were not in the model's training set {known} "
                "and the model has an asset embedding; train on them or drop them"
            )
        return None

    def _precompute(self) -> list[dict[str, np.ndarray]]:
        """Vectorised predictions for every usable row of every asset (mode='precomputed')."""
        out = []
        book = self.book
        for a, x in enumerate(book.feats):
            n = len(x)
            pred = {t: np.full(n, np.nan) for t in self.task_names}
            for k, predictor in enumerate(self.predictors):
                rows = np.flatnonzero((self.fold_of[a] == k) & book.valid[a])
                for s in range(0, len(rows), 8192):
                    chunk = rows[s : s + 8192]
                    res = predictor.predict(book.windows(a, chunk), self._ids(a, len(chunk)))
                    for t in self.task_names:
                        pred[t][chunk] = res[t]
            usable = (self.fold_of[a] >= 0) & book.valid[a]
            if usable.any():
                finite = np.ones(int(usable.sum()), dtype=bool)
                for t in self.used_tasks:
                    finite &= np.isfinite(pred[t][usable])
                if not finite.any():
                    raise DataError(
                        f"{self.symbols[a]}: the model's predictions are NaN on every bar "
                        f"(tasks {self.used_tasks}); check the data for gaps or constant prices"
                    )
            out.append(pred)
        return out

    def _precompute_signals(self) -> tuple[list[list[float]] | None, list[list[bool]] | None]:
        """Precomputed mode with a separable rule (``SignalRule.separable``): its raw weight
        for every (bar, asset) through the elementwise part of the clip (``clip_each``) and
        where the predictions are usable, before the run, as lists (a per-bar read of a list
        is a fraction of a numpy element read); each bar then only gathers them and applies
        the cross-sectional gross cap."""
        rule = self.rule
        if self.preds is None or not self._separable:
            return None, None
        each, usable = [], []
        book = self.book
        c = self._cost
        for a, pred in enumerate(self.preds):
            ok = np.isfinite(pred[self.used_tasks[0]])
            for t in self.used_tasks[1:]:
                ok &= np.isfinite(pred[t])
            extra = {"ewma_vol": book.ewma[a]} if self._ewma else {}
            w = rule.raw_weights(
                pred,
                periods_per_year=self.ppy[a],
                realised_vol=book.rvol[a],
                **extra,
                **c,
            )
            raw = self._raw_array(w, ok.shape[0], f"bars of {self.symbols[a]}")
            each.append(clip_each(raw, c["max_weight"], c["allow_short"]).tolist())
            usable.append(ok.tolist())
        return each, usable

    def _ids(self, a: int | Sequence[int], n: int) -> np.ndarray | None:
        if self.asset_ids is None:
            return None
        if isinstance(a, int):
            return np.full(n, self.asset_ids[a], dtype=np.int64)
        return self.asset_ids[np.asarray(a, dtype=np.int64)]

    def stop(self) -> None:
        stop_fills(self)
        if self._frozen:
            gc.unfreeze()
        if self._restore_blas is not None:
            self._restore_blas()
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
        if self.streaming:
            check_feeds(self, after_run=True)  # the bars of a streaming run are known now

    # -- per bar ---------------------------------------------------------
    def prenext(self) -> None:
        # Assets start on different dates: trade those that have bars already.
        self.next()

    def next(self) -> None:
        lens = self._lens
        book = self.book
        new: list[int] = []
        rows: list[int] = []
        if self._counters is not None:  # preloaded feeds: row = bar count - 1
            for a, buf in enumerate(self._counters):
                n = buf.lencount
                if n != lens[a]:  # else no new bar: never trade on stale data
                    lens[a] = n
                    new.append(a)
                    rows.append(n - 1)
            if len(new) == len(lens):
                self._bars += 1
            else:
                for a in new:
                    self._bars[a] += 1
        else:
            for a, d in enumerate(self.datas):
                n = len(d)
                edge = self._edge_us[a]
                if edge:  # replayed: the bar is complete when its time reaches its right edge
                    dt = d.datetime[0]
                    if not n or dt == self._last_dt[a] or int(datenum_micros(dt)) % edge:
                        continue
                    self._last_dt[a] = dt
                elif n == lens[a]:
                    continue  # no new bar: never trade on stale data
                lens[a] = n
                self._bars[a] += 1
                new.append(a)
                rows.append(book.advance(a, d))
        if not new:
            return
        now = self._clock[0]
        fold = self.schedule.at(now)
        if fold == NO_FOLD:
            self._flatten(new)
            return
        if not now > self.schedule.train_end[fold]:  # never fires: windows exclude it
            raise RuntimeError(f"fold {fold} model would be used at/before its train_end")
        due_a: list[int] = []
        due_r: list[int] = []
        if self._counters is not None:
            valid = book.valid
            bars, due_at = self._bars, self._due
            every = self._every_bar
            for a, row in zip(new, rows, strict=True):
                if valid[a][row] and (every or bars[a] >= due_at[a]):
                    due_a.append(a)
                    due_r.append(row)
        else:
            for a, row in zip(new, rows, strict=True):
                due = self._every_bar or self._bars[a] >= self._due[a]
                if book.ready(a, row) and due:
                    due_a.append(a)
                    due_r.append(row)
        if not due_a:
            return
        if self._raw is not None and not self.p.record:
            self._decide_precomputed(now, fold, due_a, due_r)
            return
        preds = self._predict(fold, due_a, due_r)
        # a missing prediction: that asset is not traded on this bar
        if len(due_a) == 1:  # the test below without its numpy calls
            if not all(math.isfinite(v) for t in self.used_tasks for v in preds[t].flat):
                return
        else:
            ok = np.isfinite(preds[self.used_tasks[0]])
            for t in self.used_tasks[1:]:
                ok &= np.isfinite(preds[t])
            if not ok.all():
                keep = np.flatnonzero(ok)
                due_a = [due_a[i] for i in keep]
                due_r = [due_r[i] for i in keep]
                preds = {t: v[keep] for t, v in preds.items()}
                if not due_a:
                    return
        if self.first_decision is None:
            self.first_decision = now
        self.decisions += 1
        self.used_folds.append((now, fold))
        idx = np.asarray(due_a)
        rv = np.array([book.vol(a, r) for a, r in zip(due_a, due_r, strict=True)])
        extra = {}
        if self._ewma:
            extra["ewma_vol"] = np.array(
                [book.ewma_vol(a, r) for a, r in zip(due_a, due_r, strict=True)]
            )
        if self.streaming:
            for a in due_a:
                self.ppy[a] = book.periods_per_year(a, self.datas[a], self.p.calendar)
        if self._separable:
            # a separable rule's weights are clip_weights of its raw weights, which never
            # read symbols or current weights: skip the two getposition scans
            c = self._cost
            raw = self.rule.raw_weights(
                preds, periods_per_year=self.ppy[idx], realised_vol=rv, **extra, **c
            )
            weights = self.rule_caller.precomputed(
                self._raw_array(raw, len(due_a), f"assets (first: {self.symbols[due_a[0]]})"),
                max_weight=c["max_weight"],
                max_gross_leverage=c["max_gross_leverage"],
                allow_short=c["allow_short"],
            )
            self._rebalance(due_a, weights)
            return
        weights = self.rule_caller(
            preds,
            symbols=[self.symbols[a] for a in due_a],
            current_weights=self._current_weights(due_a),
            all_symbols=list(self.symbols),
            all_current_weights=self._current_weights(range(len(self.datas))),
            periods_per_year=self.ppy[idx],
            realised_vol=rv,
            **extra,
            **self._cost,
        )
        self._rebalance(due_a, np.asarray(weights, dtype=np.float64))

    def _raw_array(self, raw: Any, n: int, of: str) -> np.ndarray:
        """A separable rule's raw weights as one float vector of ``n`` values (``of`` what)."""
        w = np.asarray(raw, dtype=np.float64).reshape(-1)
        if w.shape[0] != n:
            raise UserError(
                f"signal {self.rule_caller.name!r} is separable but raw_weights returned "
                f"{w.shape[0]} weights for {n} {of}"
            )
        return w

    def _decide_precomputed(
        self, now: float, fold: int, due_a: list[int], due_r: list[int]
    ) -> None:
        """``next``'s decision for a separable rule in precomputed mode (same orders)."""
        usable, each = self._usable, self._raw
        keep: list[int] = []
        ws: list[float] = []
        for a, r in zip(due_a, due_r, strict=True):
            if usable[a][r]:
                keep.append(a)
                ws.append(each[a][r])
        if not keep:
            return
        if self.first_decision is None:
            self.first_decision = now
        self.decisions += 1
        self.used_folds.append((now, fold))
        weights = self.rule_caller.precomputed_clipped(
            ws, max_gross_leverage=self._cost["max_gross_leverage"]
        )
        self._rebalance(keep, weights)

    def _current_weights(self, assets) -> np.ndarray:
        """Signed position value / portfolio value of each asset (the rule's context)."""
        assets = list(assets)
        value = self.broker.getvalue()
        if not value > 0:
            return np.zeros(len(assets))
        return np.array(
            [self.getposition(self.datas[a]).size * self.datas[a].close[0] / value for a in assets],
            dtype=np.float64,
        )

    def _predict(self, fold: int, assets: list[int], rows: list[int]) -> dict[str, np.ndarray]:
        if self.preds is not None:
            # rows of (n_rows, n_tasks) matrices -> one (k, n_tasks) array -> column views
            m = np.array([self._pred_mat[a][r] for a, r in zip(assets, rows, strict=True)])
            preds = {t: m[:, j] for j, t in enumerate(self.task_names)}
        else:
            # np.array of equal-shaped rows is np.stack at a quarter of its call overhead
            x = np.array([self.book.inputs(a, r) for a, r in zip(assets, rows, strict=True)])
            preds = self.predictors[fold].predict(x, self._ids(assets, len(assets)))
        if self.p.record:  # the predictions this bar's decision used
            self.predictions_log.append(
                (self.datetime[0], list(assets), {t: np.array(v) for t, v in preds.items()})
            )
        return preds

    # -- orders ----------------------------------------------------------
    def _flatten(self, assets: list[int]) -> None:
        for a in assets:
            if self._held[a]:
                d = self.datas[a]
                if self.getposition(d).size:
                    self.close(data=d)
                self._held[a] = False

    def _rebalance(self, assets: list[int], weights: np.ndarray | list[float]) -> None:
        """Holding bookkeeping, the gross cap over untouched assets, then the order hook
        (weights as Python floats from here on: the same doubles, cheaper per value)."""
        value = self.broker.getvalue()
        if not value > 0:
            return
        datas = self.datas
        decided = set(assets)
        other = 0.0
        for a, d in enumerate(datas):
            if a not in decided and self._held[a]:
                other += abs(self.getposition(d).size * d.close[0]) / value
        if type(weights) is not list:
            weights = np.asarray(weights, dtype=np.float64).tolist()
        weights = self.rebalancer.cap_floats(weights, other)
        for a, w in zip(assets, weights, strict=True):
            if w != 0.0:
                self._due[a] = self._bars[a] + self.hold
            self._held[a] = w != 0.0
        self.order_targets([(datas[a], w) for a, w in zip(assets, weights, strict=True)])

    def order_targets(self, targets: list[tuple[bt.feed.DataBase, float]]) -> None:
        """Public hook: turn this bar's target weights into orders.

        ``targets`` holds ``(feed, weight)`` for every asset decided on this bar,
        weights as fractions of the portfolio value, already capped for gross
        leverage. The default sizes market orders from this bar's close with
        :class:`~mtl_bt.backtesting.rebalancer.Rebalancer` (no-trade band, sells
        first, buys fitted to the cash); they fill at the next bar's open, the buys
        scaled together to the cash left there (:mod:`mtl_bt.backtesting.fills`).
        Override it to trade differently (limit orders, ``order_target_percent``,
        rounding to lots); see docs/backtesting.md. With ``cheat_on_open=True`` the
        default sizes them from the next bar's open instead and sends them there.
        """
        if not defer_to_open(self, targets):  # cheat_on_open: sized at the next open
            send_targets(self, targets)

    def getwriterinfo(self) -> Any:
        """What ``cerebro.addwriter`` writes: PortfolioAnalyzer's compact summary, not its
        per-bar record (``mtl_bt.backtesting.analyzers.compact_writer_info``)."""
        from mtl_bt.backtesting.analyzers import compact_writer_info

        return compact_writer_info(super().getwriterinfo(), self)

    def next_open(self) -> None:
        """``cheat_on_open=True``: the last close's targets, sized from this bar's open."""
        send_deferred(self)
