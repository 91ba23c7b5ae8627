"""Run a backtest end to end and write its artefacts.

``run_backtest(frames, models, cfg)`` builds a Cerebro (fast feeds, percent
commission, percent slippage, fills at the next bar's open, fractional sizes),
runs ``MTLStrategy`` (or a baseline) with ``PortfolioAnalyzer``, and turns the
record into a :class:`BacktestResult`: the per-bar portfolio return series
after the warm-up, metrics (``mtl_bt.metrics.performance``), per-asset
metrics, orders and closed trades. ``write_outputs`` writes metrics.json,
returns.csv, orders.csv and trades.csv atomically.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from mtl_bt.backtesting.analyzers import PortfolioAnalyzer
from mtl_bt.backtesting.calendar import periods_per_year
from mtl_bt.backtesting.feeds import bt_datenums, check_prices, frame_feed
from mtl_bt.backtesting.inputs import (  # re-exported: callers import them from the runner
    build_signal,
    check_fold_set,
    check_fold_table,
    find_checkpoints,
    load_predictors,
    strategy_params,
)
from mtl_bt.backtesting.outputs import (  # re-exported: callers import them from the runner
    json_safe,
    metrics_document,
    write_outputs,
)
from mtl_bt.backtesting.result import BacktestResult  # re-exported
from mtl_bt.config import BacktestConfig
from mtl_bt.errors import CheckpointError, DataError, UserError
from mtl_bt.metrics import performance as perf

__all__ = [
    "BacktestResult",
    "build_signal",
    "check_fold_set",
    "check_fold_table",
    "find_checkpoints",
    "strategy_params",
    "json_safe",
    "load_predictors",
    "metrics_document",
    "run_backtest",
    "run_buy_and_hold",
    "write_outputs",
]

ORDER_COLUMNS = ["datetime", "symbol", "side", "size", "price", "status", "commission"]
TRADE_COLUMNS = [
    "symbol",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "size",
    "pnl",
    "pnl_net",
    "commission",
]


# -- inputs ---------------------------------------------------------------


def check_models(
    predictors: Sequence[Any], frames: Mapping[str, pd.DataFrame], signal: Any
) -> None:
    """Model/data/signal mismatches as clear errors before the run starts."""
    first = predictors[0]
    for k, other in enumerate(predictors[1:], start=1):
        if list(other.feature_columns) != list(first.feature_columns):
            raise CheckpointError(
                f"model {k} uses other features than model 0; use one training run"
            )
        if list(other.task_names) != list(first.task_names):
            raise CheckpointError(
                f"model {k} predicts {other.task_names}, model 0 {first.task_names}; use one run"
            )
    if hasattr(signal, "heads"):
        signal.heads(list(first.task_names))  # PluginError if the rule lacks its head
    unknown = [s for s in frames if s not in list(getattr(first, "symbols", []))]
    if unknown and getattr(first, "_uses_asset", lambda: False)():
        raise CheckpointError(
            f"symbols {unknown} are not in the model's training set {list(first.symbols)}; "
            "the model has an asset embedding, so it cannot predict them"
        )
    # fold order: test windows must start after their own training window
    for k, p in enumerate(predictors):
        fold = dict(getattr(p, "fold", None) or {})
        if fold.get("train_end") and fold.get("test_start"):
            if pd.Timestamp(fold["test_start"]) <= pd.Timestamp(fold["train_end"]):
                raise CheckpointError(
                    f"model {k}: test window starts {fold['test_start']}, not after its training "
                    f"window ({fold['train_end']})"
                )


def check_frames(frames: Mapping[str, pd.DataFrame]) -> None:
    if not frames:
        raise DataError("no data: frames is empty")
    for symbol, frame in frames.items():
        if len(frame) < 2:
            raise DataError(f"{symbol}: {len(frame)} bar(s); a backtest needs at least 2")
        check_prices(frame, symbol)


# -- the run --------------------------------------------------------------
def make_cerebro(frames: Mapping[str, pd.DataFrame], cfg: BacktestConfig) -> bt.Cerebro:
    """Cerebro with our feeds, percent commission + slippage, no cheat-on-close/open."""
    from mtl_bt.backtesting.broker import configure_broker

    cerebro = configure_broker(bt.Cerebro(stdstats=False, maxcpus=1, cheat_on_open=False), cfg)
    for symbol, frame in frames.items():
        cerebro.adddata(frame_feed(frame, name=symbol), name=symbol)
    return cerebro


class _Progress(bt.Analyzer):
    params = (("bar", None),)

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        self.p.bar.update(1)


def _run(
    frames: Mapping[str, pd.DataFrame],
    cfg: BacktestConfig,
    strategy: type[bt.Strategy],
    kwargs: dict[str, Any],
    progress: bool,
) -> tuple[Any, dict[str, Any], float]:
    check_frames(frames)
    cerebro = make_cerebro(frames, cfg)
    cerebro.addstrategy(strategy, **kwargs)
    cerebro.addanalyzer(PortfolioAnalyzer, _name="portfolio")
    bar = None
    if progress:
        from tqdm import tqdm

        total = len(_union_index(frames))
        bar = tqdm(total=total, unit="bar", desc="backtest", leave=False)
        cerebro.addanalyzer(_Progress, bar=bar)
    t0 = time.perf_counter()
    try:
        strat = cerebro.run()[0]
    finally:
        if bar is not None:
            bar.close()
    return strat, strat.analyzers.portfolio.get_analysis(), time.perf_counter() - t0


def _union_index(frames: Mapping[str, pd.DataFrame]) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex([], tz="UTC")
    for frame in frames.values():
        index = index.union(pd.DatetimeIndex(frame.index).tz_convert("UTC"))
    return index


def _timestamps(frames: Mapping[str, pd.DataFrame]) -> dict[float, pd.Timestamp]:
    lookup: dict[float, pd.Timestamp] = {}
    for frame in frames.values():
        idx = pd.DatetimeIndex(frame.index).tz_convert("UTC")
        lookup.update(zip(bt_datenums(idx).tolist(), idx, strict=True))
    return lookup


def _build_result(
    frames: Mapping[str, pd.DataFrame],
    cfg: BacktestConfig,
    strat: Any,
    rec: dict[str, Any],
    start_dt: float | None,
    seconds: float,
    calendar: str,
) -> BacktestResult:
    symbols = list(rec["names"])
    lookup = _timestamps(frames)
    times = pd.DatetimeIndex([lookup[d] for d in rec["dt"]], name="datetime")
    union = _union_index(frames)
    ppy = periods_per_year(union, calendar)  # type: ignore[arg-type]
    value = rec["value"]
    prev = np.concatenate([[rec["start_value"]], value[:-1]])
    eq = rec["equity"]
    eq_prev = np.vstack([np.zeros((1, eq.shape[1])), eq[:-1]])
    contrib = (eq - eq_prev) / prev[:, None]
    start = 0 if start_dt is None else int(np.searchsorted(rec["dt"], start_dt))
    sl = slice(start, None)
    rets = value[sl] / prev[sl] - 1.0
    returns = pd.Series(rets, index=times[sl], name="portfolio_return")
    exposure = float(np.mean(rec["gross"][sl] > 1e-12)) if len(rets) else None
    turnover = perf.turnover(rec["traded"][sl], prev[sl], ppy)  # two-way
    costs = rec["costs"][sl]

    trades = pd.DataFrame(rec["trades"], columns=TRADE_COLUMNS)
    for col in ("entry_time", "exit_time"):
        trades[col] = pd.DatetimeIndex(
            [lookup[d] if d in lookup else _num2ts(d) for d in trades[col]]
        )
    orders = pd.DataFrame(rec["orders"], columns=ORDER_COLUMNS)
    orders["datetime"] = pd.DatetimeIndex(
        [lookup[d] if d in lookup else _num2ts(d) for d in orders["datetime"]]
    )

    rf = cfg.risk_free
    metrics = perf.summary(
        rets,
        ppy,
        risk_free=rf,
        trade_pnl=trades["pnl_net"].to_numpy(),
        exposure=exposure,
        turnover=turnover,
        index=times[sl],
        gross=perf.gross_returns(rets, costs, prev[sl]),
        costs_per_year=perf.cost_drag(costs, prev[sl], ppy),
    )
    metrics["costs"] = float(costs.sum())
    metrics["rejected_orders"] = int((orders["status"] != "completed").sum())
    caller = getattr(strat, "rule_caller", None)  # decisions whose weights broke a limit
    if caller is not None:
        metrics["signal_clipped"] = int(caller.clipped_decisions)
    metrics["final_value"] = float(value[-1]) if len(value) else cfg.cash
    per_asset: dict[str, dict[str, Any]] = {}
    positions = rec["positions"][sl]
    for a, sym in enumerate(symbols):
        c = contrib[sl, a]
        pnl = trades.loc[trades["symbol"] == sym, "pnl_net"].to_numpy()
        m = perf.summary(
            c,
            ppy,
            risk_free=0.0,
            trade_pnl=pnl,
            exposure=float(np.mean(np.abs(positions[:, a]) > 0)) if len(c) else None,
            turnover=perf.turnover(rec["traded_asset"][sl, a], prev[sl], ppy),
            index=times[sl],
        )
        m["contribution"] = float(c.sum())
        m["pnl"] = float(eq[-1, a]) if len(eq) else 0.0
        per_asset[sym] = m
    return BacktestResult(
        returns=returns,
        equity=pd.Series(value[sl], index=times[sl], name="value"),
        metrics=metrics,
        per_asset=per_asset,
        orders=orders,
        trades=trades,
        periods_per_year=ppy,
        symbols=symbols,
        contributions=pd.DataFrame(contrib[sl], index=times[sl], columns=symbols),
        strategy=strat,
        seconds=seconds,
    )


def _num2ts(num: float) -> pd.Timestamp:
    return pd.Timestamp(bt.num2date(num)).tz_localize("UTC").round("us")


def run_backtest(
    frames: Mapping[str, pd.DataFrame],
    predictors_or_folds: Any,
    backtest_cfg: BacktestConfig | None = None,
    *,
    baseline: str | None = None,
    progress: bool = False,
    **strategy_kwargs: Any,
) -> BacktestResult:
    """Backtest ``MTLStrategy`` driven by one model or walk-forward fold models.

    ``predictors_or_folds``: a Predictor, a checkpoint path, a train output dir,
    or a list of those (fold models, each traded only inside its test window).
    ``baseline="buy_and_hold"`` runs the equal-weight baseline instead, over the models'
    out-of-sample bars only (from the earliest fold ``test_start`` on), the bars the
    strategy trades; models without fold dates leave every bar. Extra keyword arguments go
    to ``MTLStrategy`` (e.g. ``record=True``).
    """
    cfg = backtest_cfg or BacktestConfig()
    if baseline is not None:
        if baseline != "buy_and_hold":
            raise UserError(f"unknown baseline {baseline!r}; use 'buy_and_hold'")
        from mtl_bt.data.source import clip_frames

        start = None
        if predictors_or_folds is not None:
            start = oos_start(load_predictors(predictors_or_folds))
        return run_buy_and_hold(clip_frames(frames, start), cfg, progress=progress)
    from mtl_bt.strategies.mtl import MTLStrategy

    predictors = load_predictors(predictors_or_folds)
    check_frames(frames)
    rule = build_signal(cfg)
    check_models(predictors, frames, rule)
    kwargs = strategy_params(cfg, predictors, rule) | strategy_kwargs
    strat, rec, seconds = _run(frames, cfg, MTLStrategy, kwargs, progress)
    if strat.first_decision is None:
        raise UserError(
            "the strategy never had a usable prediction: no bar has complete features inside a "
            "model's test window (after its train_end). Check the model's fold dates against the data"
        )
    return _build_result(frames, cfg, strat, rec, strat.first_decision, seconds, cfg.calendar)


def oos_start(predictors: Sequence[Any]) -> pd.Timestamp | None:
    """Earliest ``test_start`` of the models' folds (None when no model has fold dates)."""
    starts = [
        pd.Timestamp(fold["test_start"])
        for p in predictors
        if (fold := dict(getattr(p, "fold", None) or {})).get("test_start")
    ]
    if not starts:
        return None
    start = min(starts)
    return start.tz_localize("UTC") if start.tz is None else start


def run_buy_and_hold(
    frames: Mapping[str, pd.DataFrame], cfg: BacktestConfig | None = None, *, progress: bool = False
) -> BacktestResult:
    """Equal-weight buy-and-hold over every bar (no warm-up), same costs as the strategy."""
    from mtl_bt.strategies.buy_and_hold import BuyAndHold

    cfg = cfg or BacktestConfig()
    strat, rec, seconds = _run(frames, cfg, BuyAndHold, {}, progress)
    return _build_result(frames, cfg, strat, rec, None, seconds, cfg.calendar)
