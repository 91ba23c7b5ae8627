"""MTLStrategy: trade a multi-task model's predictions bar by bar inside Backtrader.

Usable from plain Backtrader code::

    cerebro.addstrategy(MTLStrategy, predictor=Predictor.from_checkpoint("fold_000.pt"))

Per bar: every asset with a new bar (and only those: an asset whose feed did
not move is never traded on stale data) whose decision is due contributes its
newest causal feature row (or ``lookback`` rows) -> ONE batched forward pass
(``Predictor.predict``) -> the signal-rule plugin -> target weights -> orders
sized from this bar's close, filled by the broker at the next bar's open.

Where features come from: before the run, the predictor's own causal feature
code is applied to each asset's whole frame (row t uses bars <= t only, so this
is not look-ahead; tests perturb the future and check the orders before it do
not change). ``live_features=True`` instead recomputes them every bar from the
bars the feed has delivered so far (a trailing window) - slow, used to prove
parity. ``mode="precomputed"`` also runs the model once over all rows before
the run (vectorised) and reads predictions from arrays; ``mode="live"`` (the
default) runs one batched forward pass per bar. Both give identical orders.

Walk-forward: ``predictor`` may be a list of fold models. Each is used only on
bars of its own test window (from checkpoint metadata) and never on a bar at or
before its ``train_end``; a bar outside every window is held flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from mtl_bt.backtesting.calendar import periods_per_year
from mtl_bt.backtesting.feeds import bt_datenums, check_prices, feed_frame
from mtl_bt.errors import CheckpointError, DataError, UserError
from mtl_bt.signals.context import RuleCaller, sees_all_assets

_NO_FOLD = -1


def _load_predictor(obj: Any) -> Any:
    if isinstance(obj, str) or hasattr(obj, "__fspath__"):
        from mtl_bt.predictor import Predictor

        return Predictor.from_checkpoint(obj)
    return obj


def _ts(value: Any) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def fold_window(predictor: Any, single: bool) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """(first usable bar exclusive-bound, last usable bar) of a model from its fold metadata.

    A model is usable on bar t iff t > train_end and test_start <= t <= test_end. A
    single model ignores test_end, so it can be run on data newer than its test window.
    Returns (lower, upper) with lower = (train_end, test_start) combined by the caller.
    """
    fold = dict(getattr(predictor, "fold", None) or {})
    upper = None if single else _ts(fold.get("test_end"))
    return _ts(fold.get("train_end")), upper


class MTLStrategy(bt.Strategy):
    """Multi-asset strategy driven by a multi-task model (see module docstring)."""

    params = (
        ("predictor", None),  # Predictor, checkpoint path, or a list of them (walk-forward folds)
        ("model", None),  # alias of predictor
        ("signal", "agree_voltarget"),  # signal-rule name (plugin) or a SignalRule instance
        ("signal_options", None),
        ("mode", "live"),  # "live": one forward pass per bar; "precomputed": before the run
        ("live_features", False),  # recompute features each bar from the bars seen so far
        ("live_window", None),  # trailing bars for live_features (None: all bars so far)
        ("rebalance", "horizon"),  # "bar" or "horizon" (hold a position for h bars)
        ("horizon", None),  # holding period in bars (None: the signal's return horizon)
        ("max_weight", 0.5),
        ("max_gross_leverage", 1.0),
        ("allow_short", True),
        ("commission", 0.001),  # for the signal's cost threshold (set the broker separately)
        ("slippage", 0.0005),
        ("min_trade_weight", 0.01),  # no-trade band: skip same-side changes smaller than this
        ("calendar", "auto"),
        ("realised_vol_window", 20),
        ("record", False),  # keep every bar's predictions (parity tests)
        ("torch_threads", 1),  # torch threads during the run (None: leave torch's setting)
    )

    # -- setup -----------------------------------------------------------
    def __init__(self) -> None:
        p = self.p
        given = p.predictor if p.predictor is not None else p.model
        if given is None:
            raise UserError("MTLStrategy needs predictor= (a Predictor, checkpoint path or a list)")
        if p.mode not in ("live", "precomputed"):
            raise UserError(f"MTLStrategy mode must be 'live' or 'precomputed', not {p.mode!r}")
        if p.rebalance not in ("bar", "horizon"):
            raise UserError(f"rebalance must be 'bar' or 'horizon', not {p.rebalance!r}")
        raw = given if isinstance(given, list | tuple) else [given]
        self.predictors = [_load_predictor(obj) for obj in raw]
        if not self.predictors:
            raise UserError("MTLStrategy got an empty predictor list")
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
        heads = self.rule.heads(self.task_names) if hasattr(self.rule, "heads") else {}
        self.used_tasks = [t for t in heads.values() if t] or list(self.task_names)
        self.hold = int(p.horizon or self._return_horizon(heads))
        self.predictions_log: list[tuple[float, list[int], dict[str, np.ndarray]]] = []
        self.decisions = 0
        self.first_decision: float | None = None

    def _make_rule(self) -> Any:
        from mtl_bt import registry
        from mtl_bt.signals.base import SignalRule

        if isinstance(self.p.signal, SignalRule):
            return self.p.signal
        return registry.create("signal", str(self.p.signal), **(self.p.signal_options or {}))

    @staticmethod
    def _return_horizon(heads: dict[str, str | None]) -> int:
        name = heads.get("return") or ""
        return int(name.partition("@")[2] or 1)

    def start(self) -> None:
        datas = self.datas
        n = len(datas)
        self.symbols = [self._symbol(d, i) for i, d in enumerate(datas)]
        self.frames: list[pd.DataFrame] = []
        for d, sym in zip(datas, self.symbols, strict=True):
            frame = feed_frame(d)
            if frame is not None:
                frame = frame.copy(deep=False)
                frame.columns = [str(c).lower() for c in frame.columns]  # PandasData allows "Close"
                if isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is None:
                    frame.index = frame.index.tz_localize("UTC")
                frame.attrs = {**frame.attrs, "symbol": sym}
                check_prices(frame, sym)
            else:
                raise DataError(
                    f"{sym}: feed has no source DataFrame; build it with "
                    "mtl_bt.backtesting.frame_feed(frame) or bt.feeds.PandasData(dataname=frame)"
                )
            self.frames.append(frame)
        self.asset_ids = self._asset_ids()
        self.ppy = np.array([self._ppy(f) for f in self.frames], dtype=np.float64)
        self.datenums = [bt_datenums(f.index) for f in self.frames]
        self.feats: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.rvol: list[np.ndarray] = []
        for a, frame in enumerate(self.frames):
            x, ok = self._feature_matrix(frame, self.symbols[a])
            self.feats.append(x)
            self.valid.append(ok)
            self.rvol.append(self._realised_vol(frame["close"].to_numpy(np.float64)))
        self.fold_of = [self._fold_rows(self.datenums[a], self.symbols[a]) for a in range(n)]
        # One vectorised pass before the run: the predictions of mode="precomputed",
        # and in both modes the check that no symbol gets only NaN predictions.
        self.vector_preds = self._precompute()
        self.preds = self.vector_preds if self.p.mode == "precomputed" else None
        self._pred_mat = [
            np.column_stack([pred[t] for t in self.task_names]) for pred in self.vector_preds
        ]
        self._train_end = np.array([self._train_end_num(p) for p in self.predictors])
        self.used_folds: list[tuple[float, int]] = []
        # A forward pass over a handful of rows is 3-4x slower with several torch threads
        # (thread start-up dominates); use one during the run, restored in stop().
        self._threads_before = None
        if self.p.torch_threads is not None:
            import torch

            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(int(self.p.torch_threads))
        self._lens = [0] * n
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

    def _symbol(self, data: bt.feed.DataBase, i: int) -> str:
        name = getattr(data, "_name", "") or ""
        if not name:
            frame = feed_frame(data)
            name = str(frame.attrs.get("symbol", "")) if frame is not None else ""
        return name or f"data{i}"

    def _asset_ids(self) -> np.ndarray | None:
        pred = self.predictors[0]
        known = set(getattr(pred, "symbols", []) or [])
        unknown = [s for s in self.symbols if s not in known]
        if not unknown:
            return np.array([list(pred.symbols).index(s) for s in self.symbols], dtype=np.int64)
        uses_asset = getattr(pred, "_uses_asset", lambda: False)()
        if uses_asset:
            raise CheckpointError(
                f"symbols {unknown} were not in the model's training set {list(pred.symbols)} "
                "and the model has an asset embedding; train on them or drop them"
            )
        return None

    def _ppy(self, frame: pd.DataFrame | None) -> float:
        if frame is None or len(frame) < 2:
            return 252.0
        return periods_per_year(frame.index, self.p.calendar)

    def _feature_matrix(self, frame: pd.DataFrame, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        feats = self.predictors[0].features(frame)
        x = np.ascontiguousarray(feats.to_numpy(np.float32))
        ok = np.isfinite(x).all(axis=1)
        if self.lookback > 1:
            run = np.convolve(ok.astype(np.int64), np.ones(self.lookback, dtype=np.int64))[
                : len(ok)
            ]
            ok = run == self.lookback
        if not ok.any():
            raise DataError(
                f"{symbol}: {len(frame)} bars are not enough for the features' warm-up "
                f"(lookback {self.lookback}); no bar has complete features"
            )
        return x, ok

    def _realised_vol(self, close: np.ndarray) -> np.ndarray:
        """Trailing std of 1-bar log returns over bars <= t (causal), the sizing fallback."""
        w = int(self.p.realised_vol_window)
        logret = pd.Series(np.log(close)).diff()
        return logret.rolling(w, min_periods=w).std().to_numpy(np.float64)

    def _fold_rows(self, datenums: np.ndarray, symbol: str) -> np.ndarray:
        """Per row: index of the fold model allowed on that bar, or -1 (flat)."""
        out = np.full(len(datenums), _NO_FOLD, dtype=np.int64)
        single = len(self.predictors) == 1
        order = sorted(
            range(len(self.predictors)),
            key=lambda k: (
                _ts((getattr(self.predictors[k], "fold", None) or {}).get("train_end"))
                or pd.Timestamp.min.tz_localize("UTC")
            ),
        )
        for k in order:  # a later-trained model wins where windows overlap
            fold = dict(getattr(self.predictors[k], "fold", None) or {})
            train_end, upper = fold_window(self.predictors[k], single)
            start = _ts(fold.get("test_start"))
            ok = np.ones(len(datenums), dtype=bool)
            if train_end is not None:
                ok &= datenums > bt_datenums(pd.DatetimeIndex([train_end]))[0]
            if start is not None:
                ok &= datenums >= bt_datenums(pd.DatetimeIndex([start]))[0]
            if upper is not None:
                ok &= datenums <= bt_datenums(pd.DatetimeIndex([upper]))[0]
            out[ok] = k
        return out

    def _precompute(self) -> list[dict[str, np.ndarray]]:
        """Vectorised predictions for every usable row of every asset (mode='precomputed')."""
        out = []
        for a, x in enumerate(self.feats):
            n = len(x)
            pred = {t: np.full(n, np.nan) for t in self.task_names}
            for k, predictor in enumerate(self.predictors):
                rows = np.flatnonzero((self.fold_of[a] == k) & self.valid[a])
                for s in range(0, len(rows), 8192):
                    chunk = rows[s : s + 8192]
                    res = predictor.predict(self._window(x, chunk), self._ids(a, len(chunk)))
                    for t in self.task_names:
                        pred[t][chunk] = res[t]
            usable = (self.fold_of[a] >= 0) & self.valid[a]
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

    @staticmethod
    def _train_end_num(predictor: Any) -> float:
        end = _ts((getattr(predictor, "fold", None) or {}).get("train_end"))
        return -np.inf if end is None else float(bt_datenums(pd.DatetimeIndex([end]))[0])

    def _window(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self.lookback == 1:
            return x[rows]
        return x[rows[:, None] + np.arange(1 - self.lookback, 1)[None, :]]

    def _ids(self, a: int | Sequence[int], n: int) -> np.ndarray | None:
        if self.asset_ids is None:
            return None
        if isinstance(a, int):
            return np.full(n, self.asset_ids[a], dtype=np.int64)
        return self.asset_ids[np.asarray(a, dtype=np.int64)]

    def stop(self) -> None:
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)

    # -- per bar ---------------------------------------------------------
    def prenext(self) -> None:
        # Assets start on different dates: trade those that have bars already.
        self.next()

    def next(self) -> None:
        lens = self._lens
        new: list[int] = []
        rows: list[int] = []
        for a, d in enumerate(self.datas):
            n = len(d)
            if n == lens[a]:
                continue  # no new bar: never trade on stale data
            lens[a] = n
            self._bars[a] += 1
            row = self._row(a, d, n - 1)
            if row >= 0:
                new.append(a)
                rows.append(row)
        if not new:
            return
        fold = int(self.fold_of[new[0]][rows[0]])
        if fold == _NO_FOLD:
            self._flatten(new)
            return
        if not self.datetime[0] > self._train_end[fold]:  # never fires: windows exclude it
            raise RuntimeError(f"fold {fold} model would be used at/before its train_end")
        due_a: list[int] = []
        due_r: list[int] = []
        for a, row in zip(new, rows, strict=True):
            due = self.p.rebalance == "bar" or self._all_assets or self._bars[a] >= self._due[a]
            if self.valid[a][row] and due:
                due_a.append(a)
                due_r.append(row)
        if not due_a:
            return
        preds = self._predict(fold, due_a, due_r)
        ok = np.isfinite(preds[self.used_tasks[0]])
        for t in self.used_tasks[1:]:
            ok &= np.isfinite(preds[t])
        if not ok.all():  # a missing prediction: that asset is not traded on this bar
            keep = np.flatnonzero(ok)
            due_a = [due_a[i] for i in keep]
            due_r = [due_r[i] for i in keep]
            preds = {t: v[keep] for t, v in preds.items()}
            if not due_a:
                return
        if self.first_decision is None:
            self.first_decision = self.datetime[0]
        self.decisions += 1
        self.used_folds.append((self.datetime[0], fold))
        idx = np.asarray(due_a)
        rv = np.array([self.rvol[a][r] for a, r in zip(due_a, due_r, strict=True)])
        weights = self.rule_caller(
            preds,
            symbols=[self.symbols[a] for a in due_a],
            current_weights=self._current_weights(due_a),
            all_symbols=list(self.symbols),
            all_current_weights=self._current_weights(range(len(self.datas))),
            periods_per_year=self.ppy[idx],
            realised_vol=rv,
            **self._cost,
        )
        self._rebalance(due_a, np.asarray(weights, dtype=np.float64))

    def _current_weights(self, assets) -> np.ndarray:
        """Signed position value / portfolio value of each asset (the rule's context)."""
        value = self.broker.getvalue()
        if not value > 0:
            return np.zeros(len(list(assets)))
        return np.array(
            [self.getposition(self.datas[a]).size * self.datas[a].close[0] / value for a in assets],
            dtype=np.float64,
        )

    def _row(self, a: int, data: bt.feed.DataBase, guess: int) -> int:
        """Row of the feed's current bar in its source frame (-1 if not found)."""
        nums = self.datenums[a]
        dt = data.datetime[0]
        if guess < len(nums) and nums[guess] == dt:
            return guess
        row = int(np.searchsorted(nums, dt))
        return row if row < len(nums) and nums[row] == dt else -1

    def _predict(self, fold: int, assets: list[int], rows: list[int]) -> dict[str, np.ndarray]:
        if self.preds is not None:
            # rows of (n_rows, n_tasks) matrices -> one (k, n_tasks) array -> column views
            m = np.array([self._pred_mat[a][r] for a, r in zip(assets, rows, strict=True)])
            preds = {t: m[:, j] for j, t in enumerate(self.task_names)}
            if self.p.record:  # as in live mode: the predictions this bar's decision used
                self.predictions_log.append(
                    (self.datetime[0], list(assets), {t: np.array(v) for t, v in preds.items()})
                )
            return preds
        if self.p.live_features:
            x = np.stack([self._live_rows(a) for a in assets])
        elif self.lookback == 1:
            x = np.stack([self.feats[a][r] for a, r in zip(assets, rows, strict=True)])
        else:
            lb = self.lookback
            x = np.stack(
                [self.feats[a][r - lb + 1 : r + 1] for a, r in zip(assets, rows, strict=True)]
            )
        preds = self.predictors[fold].predict(x, self._ids(assets, len(assets)))
        if self.p.record:
            self.predictions_log.append(
                (self.datetime[0], list(assets), {t: np.array(v) for t, v in preds.items()})
            )
        return preds

    def _live_rows(self, a: int) -> np.ndarray:
        """Features of the newest bar recomputed from the bars the feed has delivered."""
        d = self.datas[a]
        size = len(d) if self.p.live_window is None else min(len(d), int(self.p.live_window))
        nums = np.asarray(d.datetime.get(size=size))
        index = pd.to_datetime((nums - 719163.0) * 86400.0, unit="s", utc=True).round("us")
        window = pd.DataFrame(
            {
                c: np.asarray(getattr(d, c).get(size=size))
                for c in ("open", "high", "low", "close", "volume")
            },
            index=pd.DatetimeIndex(index, name="datetime"),
        )
        window.attrs = dict(self.frames[a].attrs)
        feats = self.predictors[0].features(window).to_numpy(np.float32)
        return feats[-1] if self.lookback == 1 else feats[-self.lookback :]

    def _flatten(self, assets: list[int]) -> None:
        for a in assets:
            if self._held[a]:
                d = self.datas[a]
                if self.getposition(d).size:
                    self.close(data=d)
                self._held[a] = False

    def _fit_cash(
        self,
        sells: list[tuple[bt.feed.DataBase, float]],
        buys: list[tuple[bt.feed.DataBase, float]],
    ) -> list[tuple[bt.feed.DataBase, float]]:
        """Scale buys down so they fit the cash (after sells) with costs and a 1% buffer.

        Target weights are fractions of portfolio value; a fully invested long book
        cannot also pay commission, and the broker would refuse the last buy.
        """
        cost = self.p.commission + self.p.slippage
        cash = self.broker.getcash()
        cash += sum(-delta * d.close[0] for d, delta in sells) * (1.0 - cost)
        need = sum(delta * d.close[0] for d, delta in buys) * (1.0 + cost)
        room = 0.99 * cash
        if need <= room:
            return buys
        scale = max(0.0, room / need)
        return [(d, delta * scale) for d, delta in buys if delta * scale > 0.0]

    def _rebalance(self, assets: list[int], weights: np.ndarray) -> None:
        """Turn target weights into market orders (next bar's open); sells before buys."""
        broker = self.broker
        value = broker.getvalue()
        if not value > 0:
            return
        datas = self.datas
        # gross budget left by the assets not rebalanced on this bar
        decided = set(assets)
        other = 0.0
        for a, d in enumerate(datas):
            if a not in decided and self._held[a]:
                other += abs(self.getposition(d).size * d.close[0]) / value
        budget = max(0.0, self.p.max_gross_leverage - other)
        gross = float(np.abs(weights).sum())
        if gross > budget:
            weights = weights * (budget / gross) if gross > 0 else weights
        sells: list[tuple[bt.feed.DataBase, float]] = []
        buys: list[tuple[bt.feed.DataBase, float]] = []
        for a, w in zip(assets, weights, strict=True):
            d = datas[a]
            price = d.close[0]
            if not price > 0:
                raise DataError(
                    f"{self.symbols[a]}: close price {price} at {d.datetime.datetime(0)}"
                )
            pos = self.getposition(d).size
            if w == 0.0 and pos == 0.0:
                self._held[a] = False
                continue
            if w != 0.0:
                self._due[a] = self._bars[a] + self.hold
            current = pos * price / value
            if w * current > 0.0 and abs(w - current) < self.p.min_trade_weight:
                continue  # no-trade band: same side, small change in weight
            delta = -pos if w == 0.0 else w * value / price - pos
            if delta == 0.0:
                continue
            (sells if delta < 0 else buys).append((d, delta))
            self._held[a] = w != 0.0
        if buys:
            buys = self._fit_cash(sells, buys)
        # selling raises cash (also for shorts), buying uses it: submit sells first
        # so the broker's cash check sees the cash the sells free
        for d, delta in sells + buys:
            if delta > 0:
                self.buy(data=d, size=delta)
            else:
                self.sell(data=d, size=-delta)
