"""MTLStrategy: trade a multi-task model's predictions bar by bar inside Backtrader.

Usable from plain Backtrader code on any feed::

    cerebro.adddata(bt.feeds.PandasData(dataname=df), name="BTC/USDT")
    cerebro.addstrategy(MTLStrategy, model="runs/demo_crypto")

Built on the indicator any strategy can use: per feed an
:class:`~mtl_bt.indicators.MTLPredictions` (all of them on one prediction engine, so a bar's
forward pass covers every feed that got a bar) -> the signal-rule plugin -> target weights
-> :meth:`MTLStrategy.order_targets` (public hook) -> orders sized from this bar's close,
filled by the broker at the next bar's open. An asset whose feed did not move is never
traded on stale data.

The bars are the feed's own lines, never its ``dataname``: whatever column mapping,
``datetime`` column, timezone or resampling the user set is what the model sees and what
orders are sized from.

The class is thin; its named parts are testable alone:
- predictions (``mtl_bt.indicators``): the model's lines per feed, fold by fold;
- bars and feature book (``mtl_bt.backtesting.bars``, ``feature_book``, ``streaming``);
- fold schedule (``mtl_bt.backtesting.folds``): which fold model may decide a bar;
- rebalancer (``mtl_bt.backtesting.rebalancer``): target weights -> order sizes.

On preloaded feeds the indicators run the model once over all rows (vectorised);
``mode="precomputed"`` trades from those lines, ``mode="live"`` (the default) runs one
batched forward pass per decision over its due assets, as a live run does. Both give
identical orders.
For its run the strategy pins torch and numpy's BLAS to one thread and freezes the heap
it starts with out of the garbage collector's view (each restored in ``stop``).
"""

from __future__ import annotations

import gc
import math
from typing import Any

import backtrader as bt
import numpy as np

from mtl_bt.backtesting.bars import is_preloaded, line_buffers
from mtl_bt.backtesting.calendar import feed_periods_per_year
from mtl_bt.backtesting.fills import (
    defer_to_open,
    send_deferred,
    send_targets,
    start_fills,
    stop_fills,
)
from mtl_bt.backtesting.folds import NO_FOLD, fold_window
from mtl_bt.backtesting.guards import (
    STRATEGY_ESCAPE,
    check_feeds,
    check_optimized_model,
    warn_unused_settings,
)
from mtl_bt.backtesting.models import resolve_models
from mtl_bt.backtesting.rebalancer import Rebalancer
from mtl_bt.errors import UserError
from mtl_bt.indicators import MTLPredictions, PredictionEngine
from mtl_bt.indicators.engine import asset_ids
from mtl_bt.indicators.predictions import follow_feeds, stop_following
from mtl_bt.signals.clip import clip_each
from mtl_bt.signals.context import (
    RuleCaller,
    is_separable,
    is_separable_when_flat,
    sees_all_assets,
)

__all__ = ["MTLStrategy", "fold_window"]


def _engine_attribute(name: str) -> property:
    """A strategy attribute kept on its prediction engine (on the instance before it has one)."""

    def get(self: Any) -> Any:
        engine = self.__dict__.get("engine")
        return getattr(engine, name) if engine is not None else self.__dict__[f"_engine_{name}"]

    def put(self: Any, value: Any) -> None:
        engine = self.__dict__.get("engine")
        if engine is not None:
            setattr(engine, name, value)
        else:
            self.__dict__[f"_engine_{name}"] = value

    return property(get, put)


class MTLStrategy(bt.Strategy):
    """Multi-asset strategy driven by a multi-task model (see module docstring)."""

    params = (
        # Predictor, checkpoint path, run directory, a list of them (walk-forward folds), or
        # mtl_bt.backtesting.Models(...): one value for cerebro.optstrategy
        ("predictor", None),
        ("model", None),  # alias of predictor
        ("signal", "agree_voltarget"),  # signal-rule name (plugin) or a SignalRule instance
        ("signal_options", None),
        ("mode", "live"),  # "live": one forward pass per bar; "precomputed": vectorised
        ("streaming", False),  # True: the streaming path even on preloaded feeds (parity)
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
        ("record", False),  # keep each decision's predictions in predictions_log
    )

    #: Run settings, not a trader's choice (class attributes, so a subclass or a test can
    #: turn one off). Separable rule: raw weights of every bar before the run (precomputed)
    #: or raw_weights + the clip per bar without the current-weights context (live).
    vector_signals = True
    #: torch threads and numpy's OpenBLAS threads during the run (None: leave them): a
    #: forward pass over a handful of rows is 3-4x slower with several threads
    run_threads: int | None = 1
    #: gc.freeze() the objects alive at start (models, frames, features) for the run: a
    #: full collection of the ~500k objects torch and pandas leave tracked costs 0.3-0.5 s
    freeze_heap = True
    #: runonce: the lines of its own ``MTLPredictions`` read their length and index off their
    #: feeds (``mtl_bt.indicators.predictions.FollowingLine``) instead of Backtrader's
    #: per-indicator ``advance`` on every bar: the same lengths, indexes and values (tested)
    follow_own_lines = True

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
        self.rule = self._make_rule()
        self.rule_caller = RuleCaller(
            self.rule, str(p.signal) if isinstance(p.signal, str) else None
        )
        self._all_assets = sees_all_assets(self.rule)
        # optional context computed only for a rule that lists it (SignalRule.context_inputs)
        self._ewma = "ewma_vol" in tuple(getattr(self.rule, "context_inputs", ()) or ())
        models = resolve_models(given)  # a Models, run dir, checkpoint(s), Predictor(s)
        #: one prediction engine for every feed: one forward pass per bar for all of them
        self.engine = PredictionEngine(
            models,
            mode=p.mode,
            vol_window=p.realised_vol_window,
            ewma=self._ewma,
            keep_rows=bool(p.record),
            streaming=bool(p.streaming),
            any_bar_size=bool(p.any_bar_size),
        )
        self.engine.escape = STRATEGY_ESCAPE  # a bar-size refusal names this parameter
        #: the model's predictions per feed, as Backtrader lines (``MTLPredictions``)
        self.predictions = [MTLPredictions(d, engine=self.engine) for d in self.datas]
        check_optimized_model(self, given)  # optstrategy iterating a fold list: refused
        self.task_names: list[str] = list(self.engine.task_names)
        self.lookback = self.engine.lookback
        #: call a separable rule's raw_weights + the clip (no current-weights context)
        self._separable = bool(self.vector_signals) and is_separable(self.rule)
        #: a rule separable on a flat batch (SignalRule.separable_when_flat): a decision
        #: whose due assets hold nothing takes the separable path
        self._flat_separable = (
            bool(self.vector_signals) and not self._separable and is_separable_when_flat(self.rule)
        )
        heads = self.rule.heads(self.task_names) if hasattr(self.rule, "heads") else {}
        self.used_tasks = [t for t in heads.values() if t] or list(self.task_names)
        self._used_cols = [self.task_names.index(t) for t in self.used_tasks]
        self.hold = int(p.horizon or self._holding_horizon(heads))
        self.rebalancer = Rebalancer(
            max_gross_leverage=p.max_gross_leverage,
            min_trade_weight=p.min_trade_weight,
            commission=p.commission,
            slippage=p.slippage,
        )
        #: with record=True: (bar, assets, {task: predictions}) of every decision
        self.predictions_log: list[tuple[float, list[int], dict[str, np.ndarray]]] = []
        self.decisions = 0
        self.first_decision: float | None = None
        self._frozen = False  # gc.freeze() in start, undone in stop
        #: runonce: the own indicators' lines that follow their feeds (None: not decided yet)
        self._following: list[Any] | None = None
        self._own_taken: list[Any] = []  # Backtrader's indicator list before they left it

    # the model, its fold schedule and asset ids live in the engine (paper runs swap them)
    predictors = _engine_attribute("predictors")
    schedule = _engine_attribute("schedule")
    asset_ids = _engine_attribute("asset_ids")

    def _asset_ids(self) -> np.ndarray | None:
        """The feeds' asset ids for the current first model (refuses unknown symbols)."""
        return asset_ids(self.predictors[0], self.symbols, self.datas)

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
        engine = self.engine
        self.symbols = list(engine.symbols)
        # bar size, warm-up, test windows: refused before any work (streaming: after the run)
        engine.prepare(checks=lambda: check_feeds(self))
        self.streaming = engine.streaming
        self.book = engine.book
        self.frames = engine.frames
        #: the indicators fill their lines in ``once`` (preloaded feeds, runonce): this
        #: strategy then reads every bar's predictions from those arrays
        self._arrays = is_preloaded(self) and bool(getattr(self.env, "_dorunonce", False))
        self._restore_blas = None
        self._threads_before = None
        if self.run_threads is not None:
            from mtl_bt.threads import blas_threads

            self._restore_blas = blas_threads(int(self.run_threads))
        if self.streaming:
            self._start_streaming()
        else:
            self._start_preloaded()
        self.used_folds: list[tuple[float, int]] = []
        if self.run_threads is not None:
            import torch

            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(int(self.run_threads))
        self._asset_of = {id(d): a for a, d in enumerate(datas)}
        self._lens = [0] * n
        # per-bar shortcut (same values as len(feed), fewer Python calls): a preloaded,
        # non-replayed feed's bar count read off its datetime buffer; its row = count - 1
        self._buffers = line_buffers(datas)
        self._counters = None
        if self._arrays and self._buffers is not None:
            self._counters = [dt for dt, _ in self._buffers]
        self._every_bar = self.p.rebalance == "bar" or self._all_assets
        self._clock = self.lines.datetime
        self._bars = np.zeros(n, dtype=np.int64)
        self._due = np.zeros(n, dtype=np.int64)
        #: with the bar counters (preloaded feeds): the per-bar state as Python lists (a
        #: list element read is a fraction of a numpy one). An asset's bar count is its
        #: feed's length (``_lens``; ``_bars`` is brought level in ``stop``), its due bar
        #: ``_due`` mirrored in ``_due_at``, its usable rows ``book.valid`` as lists
        self._due_at = [0] * n
        self._valid = None
        if self._counters is not None:
            self._valid = [v.tolist() for v in self.book.valid]
        self._held = np.zeros(n, dtype=bool)
        self._cost = dict(
            commission=self.p.commission,
            slippage=self.p.slippage,
            max_weight=self.p.max_weight,
            max_gross_leverage=self.p.max_gross_leverage,
            allow_short=self.p.allow_short,
            n_assets=n,
        )
        self.preds = None  # {task: values of every bar} per asset, once the lines are filled
        self._raw = self._usable = None  # a separable rule's weights of every bar
        self._pred_mat: list[np.ndarray] | None = None
        self._read = False
        start_fills(self)  # a bar's buys fill together, fitted to the cash (fills.py)
        #: the default order hook, sending at this close: an all-zero decision on a flat
        #: batch places nothing, so it is skipped
        self._plain_orders = type(self).order_targets is MTLStrategy.order_targets and not bool(
            getattr(self.env.p, "cheat_on_open", False)
        )
        # an added sizer this strategy would not use: warned, not silently ignored
        warn_unused_settings(self, type(self).order_targets is MTLStrategy.order_targets)
        # Objects alive now live for the whole run: out of the collector's view (stop()
        # unfreezes). A heap the caller froze already is the caller's to manage.
        self._frozen = bool(self.freeze_heap) and gc.get_freeze_count() == 0
        if self._frozen:
            gc.freeze()

    def _start_preloaded(self) -> None:
        """Whole arrays are in the lines: bars per year from each feed's frame."""
        self.ppy = np.array(
            [
                feed_periods_per_year(d, f.index, self.p.calendar, s)
                for d, f, s in zip(self.datas, self.frames, self.symbols, strict=True)
            ],
            dtype=np.float64,
        )
        self.fold_of = self.engine.fold_of

    def _start_streaming(self) -> None:
        """Bars arrive one at a time (replay, resample, live, preload=False): the engine's
        streaming book computes each new bar's features on arrival; bars per year are fixed
        at each asset's first decision."""
        self.ppy = np.full(len(self.datas), np.nan)

    def _read_lines(self) -> None:
        """First bar of a preloaded run: the indicators' filled lines as arrays, and for a
        separable rule in precomputed mode its weights of every bar."""
        self._read = True
        if not self._arrays:
            return
        if self.p.mode != "precomputed":
            return  # live: each decision runs the model on its due rows (_predict)
        engine = self.engine
        self._pred_mat = engine.values
        self.preds = [{t: m[:, j] for j, t in enumerate(self.task_names)} for m in engine.values]
        self._raw, self._usable = self._precompute_signals()

    def _precompute_signals(self) -> tuple[list[list[float]] | None, list[list[bool]] | None]:
        """Precomputed mode with a separable rule (``SignalRule.separable``): its raw weight
        for every (bar, asset) through the elementwise part of the clip (``clip_each``) and
        where the predictions are usable, before the run, as lists (a per-bar read of a list
        is a fraction of a numpy element read); each bar then only gathers them and applies
        the cross-sectional gross cap."""
        rule = self.rule
        if self.preds is None or not (self._separable or self._flat_separable):
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

    def stop(self) -> None:
        stop_fills(self)
        if self._valid is not None:  # the bar counts were the feeds' lengths
            self._bars[:] = self._lens
        if self._frozen:
            gc.unfreeze()
        if self._restore_blas is not None:
            self._restore_blas()
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
        if self.streaming:
            check_feeds(self, after_run=True)  # the bars of a streaming run are known now

    # -- Backtrader's runonce loop: its own indicators' lines -------------------
    def _oncepost(self, dt: float) -> None:
        """Backtrader's per-bar step of a runonce run; on the first one (the indicators'
        ``once`` has filled their lines) the own indicators' lines start following their
        feeds (``_follow_own_lines``)."""
        if self._following is None:
            self._follow_own_lines()
        super()._oncepost(dt)

    def _follow_own_lines(self) -> None:
        """The own indicators leave Backtrader's per-bar indicator list and their lines read
        their length and index off their feeds (``FollowingLine``): no per-bar work for
        them, the values Backtrader's ``advance`` would give. Both undone in ``_stop``
        (plotting and ``getindicators()`` see them after the run)."""
        self._following = []
        if not self.follow_own_lines:
            return
        own = self.predictions
        listed = self._lineiterators[bt.LineIterator.IndType]
        ids = {id(p) for p in own}
        if sum(id(i) in ids for i in listed) != len(own):
            return  # not all listed once (a subclass moved them): Backtrader's path
        following = follow_feeds(own)
        if following is None:
            return
        self._own_taken = list(listed)  # the whole list, to restore its order
        listed[:] = [i for i in listed if id(i) not in ids]
        self._following = following

    def _stop(self) -> None:
        if self._following:
            stop_following(self._following)
        if self._own_taken:  # back in their places (and whatever was added since)
            listed = self._lineiterators[bt.LineIterator.IndType]
            before = {id(i) for i in self._own_taken}
            listed[:] = self._own_taken + [i for i in listed if id(i) not in before]
            self._own_taken = []
        self._following = None
        super()._stop()

    # -- per bar ---------------------------------------------------------
    def prenext(self) -> None:
        # Assets start on different dates: trade those that have bars already.
        self.next()

    def _new_bars(self) -> tuple[list[int], list[int]]:
        """Assets with a new (completed) bar on this step, and their rows."""
        lens = self._lens
        new: list[int] = []
        rows: list[int] = []
        if self._counters is not None:  # preloaded feeds: row = bar count - 1
            for a, buf in enumerate(self._counters):
                n = buf.lencount
                if n != lens[a]:  # else no new bar: never trade on stale data
                    lens[a] = n  # = the asset's bar count (_bars, levelled in stop)
                    new.append(a)
                    rows.append(n - 1)
            return new, rows
        if self._arrays:
            for a, d in enumerate(self.datas):
                n = len(d)
                if n != lens[a]:
                    lens[a] = n
                    new.append(a)
                    rows.append(n - 1)
        else:  # the indicators took this step's bars (their next ran before this one)
            engine = self.engine
            for a, row in engine.step_new:
                lens[a] = len(self.datas[a])
                new.append(a)
                rows.append(row)
            engine.step_new = []
        for a in new:
            self._bars[a] += 1
        return new, rows

    def next(self) -> None:
        if not self._read:
            self._read_lines()
        new, rows = self._new_bars()
        if not new:
            return
        book = self.book
        now = self._clock[0]
        schedule = self.engine.schedule
        fold = schedule.at(now)
        if fold == NO_FOLD:
            self._flatten(new)
            return
        if not now > schedule.train_end[fold]:  # never fires: windows exclude it
            raise RuntimeError(f"fold {fold} model would be used at/before its train_end")
        due_a: list[int] = []
        due_r: list[int] = []
        if self._valid is not None:  # bar counters: lists only
            valid, lens, due_at = self._valid, self._lens, self._due_at
            every = self._every_bar
            for a, row in zip(new, rows, strict=True):
                if valid[a][row] and (every or lens[a] >= due_at[a]):
                    due_a.append(a)
                    due_r.append(row)
        elif self._arrays:
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
            if self._separable or self._flat(due_a):
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
        flat = not self._separable and self._flat_separable and self._flat(due_a)
        if self._separable or flat:
            # a separable rule's weights are clip_weights of its raw weights, which never
            # read symbols or current weights (nor, on a flat batch, a rule separable
            # there): skip the two getposition scans
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
            self._rebalance(due_a, weights, flat=flat)
            return
        current = self._current_weights(range(len(self.datas)))  # one scan for both
        weights = self.rule_caller(
            preds,
            symbols=[self.symbols[a] for a in due_a],
            current_weights=current[idx],
            all_symbols=list(self.symbols),
            all_current_weights=current,
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
        self._rebalance(keep, weights, flat=not self._separable)

    def _flat(self, assets: list[int]) -> bool:
        """No position in any of ``assets`` (their current weights are all 0)."""
        position, datas = self.broker.getposition, self.datas
        return all(position(datas[a]).size == 0 for a in assets)

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
        """This bar's predictions of the due assets: ``mode="precomputed"`` on preloaded
        feeds reads its indicators' filled lines; ``mode="live"`` runs the fold's model over
        the due rows now (one batched pass per decision, the bits of the lines); streaming
        feeds take the values the indicators computed on this bar."""
        engine = self.engine
        if self._pred_mat is not None:
            m = np.array([self._pred_mat[a][r] for a, r in zip(assets, rows, strict=True)])
        elif self._arrays:
            m = engine.predict_rows(fold, assets, rows)
        else:
            current = engine.current
            m = np.array([current[a] for a in assets])
        # rows of (n_rows, n_tasks) matrices -> one (k, n_tasks) array -> column views
        preds = {t: m[:, j] for j, t in enumerate(self.task_names)}
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

    def _rebalance(
        self, assets: list[int], weights: np.ndarray | list[float], flat: bool = False
    ) -> None:
        """Holding bookkeeping, the gross cap over untouched assets, then the order hook
        (weights as Python floats from here on: the same doubles, cheaper per value).
        ``flat``: the assets hold nothing; all-zero weights then place no order and, with
        the default hook, are not sent to it."""
        value = self.broker.getvalue()
        if not value > 0:
            return
        if flat and self._plain_orders and not any(weights):
            for a in assets:
                self._held[a] = False
            return
        datas = self.datas
        bars = self._lens if self._valid is not None else self._bars
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
                due = int(bars[a]) + self.hold
                self._due[a] = due
                self._due_at[a] = due
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
