"""The prediction engine behind ``MTLPredictions``: features, fold schedule and forward
passes for one or many feeds driven by the same model.

One engine serves every ``MTLPredictions`` indicator that shares it (``MTLStrategy`` builds
one for all its feeds; an indicator created alone builds its own), so the work that is
cheaper in bulk stays in bulk: the features of all feeds (the streaming book's batch
engine from 8 feeds on) and one forward pass per bar for every feed that got a bar on it.

Two ways to fill the lines, chosen by Backtrader:

- ``fill`` (the indicators' ``once``: preloaded feeds, ``runonce``): every bar at once from
  the feeds' arrays; the model runs vectorised over every usable row (chunks of 8,192).
- ``step`` (the indicators' ``next``: ``preload=False``, replay, live feeds, ``runonce=False``):
  the feeds that got a (completed) bar since the last step; their feature rows (computed on
  arrival by the streaming book, or read from the preloaded book), then one forward pass per
  fold over those that are usable (on preloaded feeds with ``mode="precomputed"`` the
  values of the vectorised ``fill`` instead).

Causal by construction: bar t's value comes from the fold model whose test window holds t
(``mtl_bt.backtesting.folds``) and from feature rows of bars <= t (``feature_book``). The
feature computation sits behind ``PreloadedBook``/``StreamingBook`` (one seam: whatever feeds
them bars decides what the features see).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mtl_bt.backtesting.bars import (
    check_bars,
    datenum_micros,
    feed_name,
    preloaded_frame,
    replay_edge_micros,
)
from mtl_bt.backtesting.feature_book import PreloadedBook
from mtl_bt.backtesting.folds import NO_FOLD, FoldSchedule
from mtl_bt.backtesting.streaming import StreamingBook
from mtl_bt.errors import CheckpointError, DataError, UserError

#: rows per forward pass of the vectorised fill
CHUNK = 8192


def load_models(model: Any) -> list[Any]:
    """Predictors from a Predictor, a checkpoint, a train/run output dir, or a list of
    those (fold models); fold models must come from one training run."""
    from mtl_bt.backtesting.inputs import load_predictors

    if model is None:
        raise UserError(
            "MTLPredictions needs model= (a checkpoint, a list of fold checkpoints, a train or "
            "run output directory, or a Predictor)"
        )
    predictors = load_predictors(model)
    first = predictors[0]
    for k, other in enumerate(predictors[1:], start=1):
        if list(other.feature_columns) != list(first.feature_columns):
            raise CheckpointError(
                f"fold models disagree on feature columns (model {k} vs model 0); use one "
                "training run"
            )
        if list(other.task_names) != list(first.task_names):
            raise CheckpointError(
                f"fold models disagree on tasks (model {k}: {list(other.task_names)}, model 0: "
                f"{list(first.task_names)}); use one training run"
            )
    return predictors


def _feed_label(data: Any) -> str:
    """The feed's name, else Backtrader's own label ``data{i}`` (its place in Cerebro)."""
    name = feed_name(data)
    if name:
        return name
    env = getattr(data, "_env", None)
    for i, d in enumerate(getattr(env, "datas", []) or []):
        if d is data:
            return f"data{i}"
    return "data0"


def asset_ids(predictor: Any, symbols: Sequence[str], datas: Sequence[Any]) -> np.ndarray | None:
    """The feeds' asset ids in ``predictor``'s symbol order; None when some symbol is unknown
    to a model without an asset embedding (it ignores ids). A model with one refuses an
    unnamed feed or an unknown symbol."""
    known = list(getattr(predictor, "symbols", []) or [])
    unknown = [s for s in symbols if s not in known]
    if not unknown:
        return np.array([known.index(s) for s in symbols], dtype=np.int64)
    if getattr(predictor, "_uses_asset", lambda: False)():
        unnamed = [s for d, s in zip(datas, symbols, strict=True) if not feed_name(d)]
        if unnamed:
            raise CheckpointError(
                f"feed {unnamed[0]!r} has no name, but the model has an asset embedding and "
                f"must know the symbol: cerebro.adddata(feed, name=...) with one of {known}"
            )
        raise CheckpointError(
            f"symbols {unknown} were not in the model's training set {known} "
            "and the model has an asset embedding; train on them or drop them"
        )
    return None


#: how a standalone indicator's bar-size refusal says to get lines anyway
INDICATOR_ESCAPE = "MTLPredictions(data, model=..., any_bar_size=True) gives its lines anyway"


def _fast(predictor: Any, name: str) -> Any:
    """``predictor``'s bound-buffer method ``name`` (``predict_row``, ``predict_matrix``)
    when it is a ``Predictor`` whose ``predict`` is the one those stand for; None for any
    other predictor-like object (an ensemble, a wrapper that changes ``predict``), which
    is then called through its own ``predict``."""
    from mtl_bt.predictor import Predictor

    if isinstance(predictor, Predictor) and type(predictor).predict is Predictor.predict:
        return getattr(predictor, name)
    return None


class PredictionEngine:
    """Predictions per bar for the feeds of its member indicators (see module docstring)."""

    def __init__(
        self,
        model: Any,
        *,
        mode: str = "precomputed",
        vol_window: int = 20,
        ewma: bool = False,
        keep_rows: bool = False,
        streaming: bool = False,
        any_bar_size: bool = False,
    ) -> None:
        if mode not in ("live", "precomputed"):
            raise UserError(f"mode must be 'live' or 'precomputed', not {mode!r}")
        self.predictors = load_models(model)
        first = self.predictors[0]
        self.task_names: list[str] = list(first.task_names)
        self.lookback = max(1, int(getattr(first, "lookback", 1) or 1))
        self.schedule = FoldSchedule(self.predictors)
        self.mode = mode
        self.vol_window = int(vol_window)
        self.ewma = bool(ewma)
        self.keep_rows = bool(keep_rows)
        self.force_streaming = bool(streaming)
        #: True: a feed whose bar size is not the model's gets lines anyway (else refused)
        self.any_bar_size = bool(any_bar_size)
        #: how a bar-size refusal says to trade anyway (MTLStrategy names its own parameter)
        self.escape = INDICATOR_ESCAPE
        self.members: list[Any] = []
        self.datas: list[Any] = []
        self.symbols: list[str] = []
        self.prepared = False
        self.filled = False
        self.asset_ids: np.ndarray | None = None

    # -- members -----------------------------------------------------------
    def add(self, indicator: Any, data: Any) -> int:
        """Register an indicator on ``data`` (a feed); its asset index."""
        if self.prepared:
            raise UserError("an MTLPredictions engine cannot take feeds once the run started")
        symbol = _feed_label(data)
        asset_ids(self.predictors[0], [symbol], [data])  # refuses before the run starts
        self.members.append(indicator)
        self.datas.append(data)
        self.symbols.append(symbol)
        return len(self.members) - 1

    def asset_ids_for(self, predictor: Any) -> np.ndarray | None:
        """The members' asset ids in ``predictor``'s symbol order (see ``asset_ids``)."""
        return asset_ids(predictor, self.symbols, self.datas)

    def fold_number(self, k: int) -> float:
        """The fold a model list index stands for: the checkpoint's fold number, else k."""
        fold = (getattr(self.predictors[k], "fold", None) or {}).get("fold")
        return float(k if fold is None else fold)

    # -- set-up ------------------------------------------------------------
    def prepare(self, checks: Any = None) -> None:
        """Books, asset ids and replay edges, once, when the run starts (idempotent).
        ``checks()`` runs on preloaded feeds once their bars are read and checked, before
        the features are computed: MTLStrategy passes its refusals; by default the engine's
        own (``check_feeds``: the same rules, for indicators used in a user's strategy)."""
        if self.prepared:
            return
        datas, symbols = self.datas, self.symbols
        env = getattr(datas[0], "_env", None)
        preloaded = bool(getattr(env, "_dopreload", False)) and not self.force_streaming
        self.streaming = not preloaded
        self.asset_ids = self.asset_ids_for(self.predictors[0])
        self.edge_us = [replay_edge_micros(d, s) for d, s in zip(datas, symbols, strict=True)]
        n = len(datas)
        self.seen = [0] * n
        self.last_dt = [float("nan")] * n
        self.pending = [False] * n
        nan_row = np.full(len(self.task_names), np.nan)
        #: the task values of each asset's newest bar (per-bar path)
        self.current: list[np.ndarray] = [nan_row] * n
        self.current_fold = [float("nan")] * n
        #: (asset, row) of the feeds that got a bar in the newest step; the strategy takes it
        self.step_new: list[tuple[int, int]] = []
        self.values: list[np.ndarray] | None = None  # (rows, tasks) per asset, preloaded
        self.folds: list[np.ndarray] | None = None
        self._nan_row = nan_row
        self._unsized = [False] * n
        if self.streaming:
            self._unsized = self._bar_sizes_to_check()
            self.frames: list[Any] = []
            self.book: Any = StreamingBook(
                self.predictors[0],
                symbols,
                self.lookback,
                self.vol_window,
                keep_rows=self.keep_rows,
                ewma=self.ewma,
            )
        else:
            self.frames = [preloaded_frame(d, s) for d, s in zip(datas, symbols, strict=True)]
            for frame, sym in zip(self.frames, symbols, strict=True):
                check_bars(frame, sym)
            (self.check_feeds if checks is None else checks)()
            self.book = PreloadedBook(
                self.predictors[0],
                self.frames,
                symbols,
                self.lookback,
                self.vol_window,
                ewma=self.ewma,
            )
            self.fold_of = [self.schedule.rows(d.datetime.array) for d in datas]
        self.prepared = True

    def check_feeds(self) -> None:
        """The refusals of ``mtl_bt.backtesting.guards`` for the member feeds (preloaded):
        no bar in any test window, another bar size than the model's, too few bars."""
        from mtl_bt.backtesting.guards import check_feed_bars

        check_feed_bars(
            self.datas,
            self.symbols,
            self.predictors,
            self.schedule,
            any_bar_size=self.any_bar_size,
            escape=self.escape,
        )

    def _bar_sizes_to_check(self) -> list[bool]:
        """Streaming feeds: each feed's bar size against the model's as soon as it can be
        told, so no prediction is made on bars of another size (the after-run checks of
        ``MTLStrategy`` come too late for that, and a standalone indicator has none). A
        feed that states its size (``timeframe=``/``compression=``, a resampler) is checked
        now; the others at their first usable row (``_check_bar_size``). Live feeds are not
        checked (as ``check_feed_bars``), nor anything with ``any_bar_size``."""
        from mtl_bt.backtesting.calendar import stated_seconds
        from mtl_bt.backtesting.folds import model_bar_seconds
        from mtl_bt.backtesting.guards import check_bar_size

        n = len(self.datas)
        self._model_seconds = model_seconds = model_bar_seconds(self.predictors[0])
        if self.any_bar_size or model_seconds is None:
            return [False] * n
        pending = []
        for d, symbol in zip(self.datas, self.symbols, strict=True):
            if getattr(d, "islive", lambda: False)():
                pending.append(False)
                continue
            seconds = stated_seconds(d)
            if seconds is not None:
                check_bar_size(symbol, seconds, model_seconds, self.escape)
            pending.append(seconds is None)
        return pending

    def _check_bar_size(self, a: int) -> None:
        """Asset ``a``'s bar size from the bars its feed delivered so far (its first usable
        row: at least the features' warm-up + 1 bars), before its first prediction; not
        told when a bounded buffer (``exactbars``) no longer holds them."""
        from mtl_bt.backtesting.guards import check_feed_bar_size

        self._unsized[a] = False
        data = self.datas[a]
        nums = np.asarray(data.datetime.array, dtype=np.float64)
        if len(nums) < len(data) or len(nums) < 2:
            return
        check_feed_bar_size(
            data, self.symbols[a], nums[: len(data)], self._model_seconds, self.escape
        )

    def ids(self, assets: Sequence[int]) -> np.ndarray | None:
        if self.asset_ids is None:
            return None
        return self.asset_ids[np.asarray(assets, dtype=np.int64)]

    # -- every bar at once (preloaded feeds) --------------------------------
    def fill(self) -> None:
        """Every bar's task values and fold of every asset (preloaded feeds), once."""
        if self.filled:
            return
        self.prepare()
        if self.streaming:
            raise UserError(
                "MTLPredictions: the feeds are not preloaded; Backtrader should call next()"
            )
        book = self.book
        n_tasks = len(self.task_names)
        self.values = [np.full((len(x), n_tasks), np.nan) for x in book.feats]
        self.folds = [np.full(len(x), np.nan) for x in book.feats]
        numbers = np.array([self.fold_number(k) for k in range(len(self.predictors))])
        for a, fold in enumerate(self.fold_of):
            usable = (fold >= 0) & book.valid[a]
            self.folds[a][usable] = numbers[fold[usable]]
        self._fill_vectorised()
        self._check_not_all_nan()
        self.filled = True

    def _fill_vectorised(self) -> None:
        book = self.book
        for a in range(len(self.datas)):
            for k, predictor in enumerate(self.predictors):
                rows = np.flatnonzero((self.fold_of[a] == k) & book.valid[a])
                for s in range(0, len(rows), CHUNK):
                    chunk = rows[s : s + CHUNK]
                    ids = None if self.asset_ids is None else self.ids([a] * len(chunk))
                    res = predictor.predict(book.windows(a, chunk), ids)
                    for j, t in enumerate(self.task_names):
                        self.values[a][chunk, j] = res[t]

    def predict_rows(self, fold: int, assets: Sequence[int], rows: Sequence[int]) -> np.ndarray:
        """One forward pass of model ``fold`` over the given (asset, row) inputs, now:
        ``(len(assets), n_tasks)`` in the order given (a live decision's own pass).

        The batch itself is in a canonical order, by feed name (then asset index): a row's
        output may depend on its place in the batch (torch's kernels do, by the last bits),
        and the order given follows the order the feeds were added, which must not change
        a result."""
        book = self.book
        predictor = self.predictors[fold]
        if len(assets) == 1:  # the batch of one (most live decisions): nothing to order
            a = assets[0]
            one = _fast(predictor, "predict_row")
            if one is not None:
                ids = self.asset_ids
                row = one(book.inputs(a, rows[0]), None if ids is None else int(ids[a]))
                return np.array([row], dtype=np.float64)
            res = predictor.predict(book.inputs(a, rows[0])[None], self.ids(assets))
            return np.array([[res[t][0] for t in self.task_names]], dtype=np.float64)
        symbols = self.symbols
        order = sorted(range(len(assets)), key=lambda i: (symbols[assets[i]], assets[i]))
        a_sorted = [assets[i] for i in order]
        x = np.array([book.inputs(assets[i], rows[i]) for i in order])
        matrix = _fast(predictor, "predict_matrix")
        if matrix is not None:
            m = matrix(x, self.ids(a_sorted))
        else:
            res = predictor.predict(x, self.ids(a_sorted))
            m = np.column_stack([np.asarray(res[t], dtype=np.float64) for t in self.task_names])
        out = np.empty_like(m)
        out[order] = m
        return out

    def _check_not_all_nan(self) -> None:
        for a, v in enumerate(self.values):
            usable = ~np.isnan(self.folds[a])
            if usable.any() and not np.isfinite(v[usable]).any(axis=1).any():
                raise DataError(
                    f"{self.symbols[a]}: the model's predictions are NaN on every bar "
                    f"(tasks {self.task_names}); check the data for gaps or constant prices"
                )

    # -- bar by bar ----------------------------------------------------------
    def has_new_bar(self, a: int) -> bool:
        """Asset ``a``'s feed delivered a (completed) bar the engine has not taken yet."""
        d = self.datas[a]
        n = len(d)
        edge = self.edge_us[a]
        if edge:  # replayed: complete when the tick's time reaches the bar's right edge
            if not n:
                return False
            dt = d.datetime[0]
            return dt != self.last_dt[a] and not int(datenum_micros(dt)) % edge
        return n != self.seen[a]

    def step(self) -> None:
        """Take the new bars of every member feed: feature rows, then one forward pass per
        fold over the usable ones; their values wait in ``current`` (``pending``)."""
        self.prepare_rows()
        book = self.book
        new: list[tuple[int, int]] = []
        for a, d in enumerate(self.datas):
            if not self.has_new_bar(a):
                continue
            self.seen[a] = len(d)
            if self.edge_us[a]:
                self.last_dt[a] = d.datetime[0]
            new.append((a, book.advance(a, d)))
        self.step_new = new
        batches: dict[int, list[tuple[int, int]]] = {}
        unsized = self._unsized
        for a, row in new:
            self.pending[a] = True
            self.current[a] = self._nan_row
            self.current_fold[a] = float("nan")
            fold = self.schedule.at(self.datas[a].datetime[0])
            if unsized[a] and book.ready(a, row):
                self._check_bar_size(a)
            if fold != NO_FOLD and book.ready(a, row):
                batches.setdefault(fold, []).append((a, row))
        for fold, items in batches.items():
            number = self.fold_number(fold)
            if self.values is not None:  # preloaded, precomputed: read the rows
                for a, row in items:
                    self.current[a] = self.values[a][row]
                    self.current_fold[a] = number
                continue
            assets = [a for a, _ in items]
            m = self.predict_rows(fold, assets, [r for _, r in items])
            for i, a in enumerate(assets):
                self.current[a] = m[i]
                self.current_fold[a] = number

    def prepare_rows(self) -> None:
        """Per-bar path on preloaded feeds with ``mode="precomputed"``: the vectorised values
        first, then ``step`` reads rows."""
        self.prepare()
        if not self.streaming and self.mode == "precomputed" and not self.filled:
            self.fill()

    def take(self, a: int) -> tuple[np.ndarray, float] | None:
        """Asset ``a``'s values and fold for its newest bar, once (None: no new bar)."""
        if not self.prepared:
            self.prepare()
        if not self.pending[a]:
            if not self.has_new_bar(a):
                return None
            self.step()
            if not self.pending[a]:
                return None
        self.pending[a] = False
        return self.current[a], self.current_fold[a]
