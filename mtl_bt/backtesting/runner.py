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

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from mtl_bt.backtesting.analyzers import PortfolioAnalyzer
from mtl_bt.backtesting.calendar import periods_per_year
from mtl_bt.backtesting.feeds import bt_datenums, check_prices, frame_feed
from mtl_bt.backtesting.outputs import (  # re-exported: callers import them from the runner
    json_safe,
    metrics_document,
    write_outputs,
)
from mtl_bt.config import BacktestConfig
from mtl_bt.errors import CheckpointError, DataError, UserError
from mtl_bt.metrics import performance as perf

__all__ = [
    "BacktestResult",
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


@dataclass
class BacktestResult:
    """Everything a backtest produced (see docs/backtesting.md for each field)."""

    returns: pd.Series  # portfolio_return per bar after warm-up, UTC DatetimeIndex
    equity: pd.Series  # broker value per bar after warm-up
    metrics: dict[str, Any]
    per_asset: dict[str, dict[str, Any]]
    orders: pd.DataFrame
    trades: pd.DataFrame
    periods_per_year: float
    symbols: list[str]
    contributions: pd.DataFrame  # per-asset contribution to each bar's portfolio return
    strategy: Any = field(default=None, repr=False)  # the Backtrader strategy instance
    seconds: float = 0.0


# -- inputs ---------------------------------------------------------------
def find_checkpoints(path: str | os.PathLike[str]) -> list[Path]:
    """A checkpoint file, or every fold checkpoint of a train output dir (in fold order)."""
    from mtl_bt.rundir import verify_checkpoints

    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted((path / "checkpoints").glob("fold_*.pt")) or sorted(path.glob("fold_*.pt"))
        found = found or sorted(path.rglob("*.pt"))
        if found:
            verify_checkpoints(path, found)  # manifest.json: only this run's files
            check_fold_table(path, found)
            return found
        raise CheckpointError(f"{path} holds no checkpoints (expected checkpoints/fold_XXX.pt)")
    raise CheckpointError(f"model {path} not found (give a checkpoint file or a train output dir)")


def _fold_table(folder: Path) -> tuple[Path, list[int]] | None:
    """The run's fold numbers from folds.json (train) or data.json (run), if present."""
    for name in ("folds.json", "data.json"):
        table = folder / name
        if table.exists():
            try:
                folds = json.loads(table.read_text(encoding="utf-8")).get("folds")
                return table, [int(f["fold"]) for f in folds]
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
                raise CheckpointError(
                    f"{table} is unreadable as a fold table ({type(exc).__name__}: {exc}); "
                    "re-run training to rewrite it"
                ) from None
    return None


def check_fold_table(folder: Path, checkpoints: list[Path]) -> None:
    """Every fold of the run's fold table has exactly one ``fold_XXX.pt``, and no other."""
    table = _fold_table(folder)
    named = [p for p in checkpoints if re.fullmatch(r"fold_\d+\.pt", p.name)]
    if table is None or not named:
        return
    source, folds = table
    have = {int(p.stem.split("_")[1]): p for p in named}
    missing = [k for k in folds if k not in have]
    if missing:
        raise CheckpointError(
            f"{folder}: fold {missing[0]} of the run's fold table ({source.name}) has no "
            f"checkpoint (expected fold_{missing[0]:03d}.pt); another fold would silently trade "
            "its window. Re-run training"
        )
    extra = sorted(set(have) - set(folds))
    if extra:
        raise CheckpointError(
            f"{have[extra[0]]} is not a fold of the run in {folder} ({source.name} lists folds "
            f"{folds}): it was left by another run; delete it or re-run"
        )


def check_fold_set(predictors: Sequence[Any], names: Sequence[str]) -> None:
    """Fold models must be distinct, contiguous folds: a duplicate or a hole is an error."""
    numbers: dict[int, str] = {}
    for predictor, name in zip(predictors, names, strict=True):
        fold = (getattr(predictor, "fold", None) or {}).get("fold")
        if fold is None:
            continue
        fold = int(fold)
        if fold in numbers:
            raise CheckpointError(
                f"fold {fold} is given twice ({numbers[fold]} and {name}); pass each fold once"
            )
        numbers[fold] = name
    if len(numbers) > 1:
        holes = sorted(set(range(min(numbers), max(numbers) + 1)) - set(numbers))
        if holes:
            raise CheckpointError(
                f"fold {holes[0]} is missing between fold {min(numbers)} and fold "
                f"{max(numbers)}: the previous fold's model would trade its window. Pass every "
                "fold (a train output folder) or a single one"
            )


def load_predictors(models: Any) -> list[Any]:
    """Predictors from a Predictor, a path (file or train dir), or a list of those."""
    from mtl_bt.predictor import Predictor

    items = models if isinstance(models, list | tuple) else [models]
    out: list[Any] = []
    names: list[str] = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            for p in find_checkpoints(item):
                out.append(Predictor.from_checkpoint(p))
                names.append(str(p))
        else:
            out.append(item)
            names.append(f"model {len(names)}")
    if not out:
        raise UserError("no model given: pass a checkpoint or a train output directory")
    check_fold_set(out, names)
    return out


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


def build_signal(cfg: BacktestConfig) -> Any:
    """The signal rule ``cfg`` names, built with its options: an unknown option is a
    ``ConfigError`` naming ``backtest.signal_options.<key>`` (and the closest option)."""
    import difflib
    import inspect

    from mtl_bt import registry
    from mtl_bt.errors import ConfigError

    factory = registry.get("signal", cfg.signal)
    try:
        return factory(**cfg.signal_options)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        try:
            known = [
                p.name
                for p in inspect.signature(factory).parameters.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):
            known = []
        unknown = [k for k in cfg.signal_options if known and k not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"backtest.signal_options.{unknown[0]}: signal {cfg.signal!r} has no option "
                f"{unknown[0]!r}{hint} Its options: {', '.join(known)}"
            ) from None
        raise ConfigError(
            f"backtest.signal_options rejected by the signal {cfg.signal!r}: {exc}"
        ) from None


def strategy_params(cfg: BacktestConfig, predictors: Any, rule: Any) -> dict[str, Any]:
    """``MTLStrategy`` parameters for a backtest config (what ``run_backtest`` passes)."""
    return dict(
        predictor=predictors,
        signal=rule,
        mode=cfg.mode,
        rebalance=cfg.rebalance,
        max_weight=cfg.max_weight,
        max_gross_leverage=cfg.max_gross_leverage,
        allow_short=cfg.allow_short,
        commission=cfg.commission,
        slippage=cfg.slippage,
        min_trade_weight=cfg.min_trade_weight,
        calendar=cfg.calendar,
    )


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
        from mtl_bt.pipeline import clip_frames

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
