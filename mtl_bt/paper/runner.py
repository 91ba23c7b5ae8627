"""``run_paper``: a strategy on live feeds with Backtrader's simulated broker, journaled.

The broker is set up from ``[backtest]`` exactly as ``mtl-bt backtest`` does
(``make_cerebro``: cash, percent commission, slippage, fills at the next bar's
open). Nothing is sent to an exchange: the only requests are candles and the
exchange's clock. Each decided bar is one transaction in ``DIR/paper.sqlite``;
``orders.csv`` and ``equity.csv`` are exported after each bar.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_bt.errors import ConfigError
from mtl_bt.paper.folder import open_journal, owned_folder, reset_folder
from mtl_bt.paper.journal import PaperJournal
from mtl_bt.paper.state import BarRecord, PaperState, sha256_file

LIVE_SOURCES = ("ccxt", "yfinance")
log = logging.getLogger("mtl_bt.paper")


@dataclass
class PaperResult:
    bars: int  # bars decided by this invocation
    total_bars: int  # bars in the journal
    equity: float | None
    out: Path
    stopped_by: str  # "max_bars", "until", "signal"


def newest_checkpoint(model: str | Path) -> Path:
    """A checkpoint file, or the newest fold model of a train/run output dir."""
    from mtl_bt.backtesting.runner import find_checkpoints

    return find_checkpoints(model)[-1]


def warmup_bars(predictor: Any, cfg: Any) -> int:
    """History a model needs before its first decision (features, lookback, sizing vol)."""
    if cfg.paper.warmup_bars:
        return int(cfg.paper.warmup_bars)
    need = int(predictor.feature_spec.warmup()) + int(predictor.lookback) + 20
    return max(100, 2 * need)


def make_market(cfg: Any, *, warmup: int, until: pd.Timestamp | None, resume_after, **kwargs):
    """The live market of ``cfg.data`` (ccxt or yfinance)."""
    from mtl_bt.feeds import ccxt_market, yfinance_market

    data = cfg.data
    if data.source not in LIVE_SOURCES:
        raise ConfigError(
            f"data.source = {data.source!r} is not a live source; paper trading polls "
            f"{' or '.join(LIVE_SOURCES)} (set data.source and data.options, see docs/paper.md)"
        )
    poll = kwargs.pop("poll_seconds", cfg.paper.poll_seconds)
    common = dict(
        give_up_seconds=kwargs.pop("give_up_seconds", cfg.paper.give_up_seconds),
        poll_seconds=poll,
        warmup_bars=warmup,
        timeout_seconds=cfg.paper.timeout_seconds,
        until=until,
        resume_after=None if resume_after is None else pd.Timestamp(resume_after),
        **kwargs,
    )
    timeframe = data.timeframe or ("1h" if data.source == "ccxt" else "5m")
    if data.source == "ccxt":
        return ccxt_market(list(data.symbols), timeframe, options=dict(data.options), **common)
    return yfinance_market(list(data.symbols), timeframe, options=dict(data.options), **common)


def _start_line(out: Path, resume: Any, model: Any, cash: float) -> str:
    """What a start or a resume continues from: the model, the journal, the positions."""
    name = f"{Path(model.path).name} (sha256 {model.sha256[:12]}"
    name += f", trained up to {model.train_end.isoformat()})" if model.train_end else ")"
    if not resume.bars:
        return f"new paper run in {out}: model {name}, cash {cash:,.2f}"
    held = ", ".join(f"{s} {size:+.6g}" for s, (size, _) in sorted(resume.positions.items()))
    orders = f", {len(resume.open_orders)} open orders" if resume.open_orders else ""
    return (
        f"resuming the paper run in {out}: {resume.bars} bars in the journal (last "
        f"{resume.datetime}), model {name}, cash {resume.cash:,.2f}, positions: "
        f"{held or 'none'}{orders}"
    )


def _echo_bar(echo: Callable[[str], None]) -> Callable[[BarRecord], None]:
    def show(rec: BarRecord) -> None:
        orders = ", ".join(f"{o.side} {o.size:.6g} {o.symbol}" for o in rec.created) or "no orders"
        echo(f"{rec.datetime}  equity {rec.equity:,.2f}  cash {rec.cash:,.2f}  {orders}")

    return show


def run_paper(
    cfg: Any,
    model: str | Path,
    out: str | Path,
    *,
    poll_seconds: float | None = None,
    max_bars: int | None = None,
    until: pd.Timestamp | None = None,
    reset: bool = False,
    give_up_seconds: float | None = None,
    echo: Callable[[str], None] | None = print,
    strategy: tuple[type, dict[str, Any]] | None = None,
    market_kwargs: dict[str, Any] | None = None,
) -> PaperResult:
    """Paper-trade ``cfg`` with ``model`` into ``out`` (see module docstring).

    ``strategy``: (class, params) replacing :class:`PaperMTLStrategy` (tests, users' own).
    """
    from mtl_bt import config as config_mod
    from mtl_bt.backtesting.runner import load_predictors

    checkpoint = newest_checkpoint(model)
    model_sha = sha256_file(checkpoint)
    config_text = config_mod.dumps(cfg)
    predictors = load_predictors(checkpoint)
    # everything the config names is checked before the folder or the journal is touched
    market = make_market(
        cfg,
        warmup=warmup_bars(predictors[0], cfg),
        until=until,
        resume_after=None,
        **({"poll_seconds": poll_seconds} if poll_seconds else {}),
        **({"give_up_seconds": give_up_seconds} if give_up_seconds is not None else {}),
        **(market_kwargs or {}),
    )
    if max_bars is None and until is None:
        market.give_up = None  # runs until stopped: an outage is waited out, however long
    with owned_folder(out) as out:
        if reset:
            reset_folder(out)
        state = open_journal(out)
        try:
            return _run(
                cfg, state, out, market, checkpoint, model_sha, config_text, predictors,
                max_bars=max_bars, echo=echo, strategy=strategy,
            )  # fmt: skip
        finally:
            state.close()


def _claim(state: PaperState, cfg: Any, model_sha: str, config_text: str, out: Path) -> None:
    """A new journal records the run's decision settings and model; a resumed one must have
    the same (operational settings may differ: mtl_bt.paper.settings)."""
    import json

    from mtl_bt.paper import settings

    have = state.meta()
    decision = settings.decision_settings(cfg)
    if have:
        diffs = []
        if have.get("model_sha256") != model_sha:
            diffs.append(f"--model (sha256 {have.get('model_sha256', '?')[:12]}... -> "
                         f"{model_sha[:12]}...)")  # fmt: skip
        if "decision" in have:
            diffs += settings.differences(json.loads(have["decision"]), decision)
        elif have.get("config_sha256") != hashlib.sha256(config_text.encode()).hexdigest():
            diffs.append("the config (a journal from an older mtl-bt: any change)")
        if diffs:
            raise ConfigError(
                f"{out} holds a paper run with other decision settings: {'; '.join(diffs)}. "
                "Resume it with the same config and --model (only operational settings may "
                f"change: {', '.join(settings.OPERATIONAL)}), use another --out, or pass "
                "--reset to start over (its journal is deleted)"
            )
        return
    with state.db:
        state.db.execute("BEGIN IMMEDIATE")
        state.db.executemany(
            "INSERT OR IGNORE INTO meta VALUES (?, ?)",
            [
                ("config_sha256", hashlib.sha256(config_text.encode()).hexdigest()),
                ("decision_sha256", settings.decision_sha256(cfg)),
                ("decision", json.dumps(decision, sort_keys=True)),
                ("model_sha256", model_sha),
                ("config", config_text),
            ],
        )


def _run(
    cfg: Any,
    state: PaperState,
    out: Path,
    market: Any,
    checkpoint: Path,
    model_sha: str,
    config_text: str,
    predictors: list[Any],
    *,
    max_bars: int | None,
    echo: Callable[[str], None] | None,
    strategy: tuple[type, dict[str, Any]] | None,
) -> PaperResult:
    from mtl_bt.backtesting.runner import make_cerebro, strategy_params
    from mtl_bt.paper import settings

    _claim(state, cfg, model_sha, config_text, out)
    with state.db:
        state.db.execute("BEGIN IMMEDIATE")
        state.db.execute("INSERT OR IGNORE INTO meta VALUES ('model_path', ?)", (str(checkpoint),))
    resume = state.resume()
    state.record_session(settings.operational_settings(cfg), resume.bars)
    if resume.bars == 0 and not state.db.execute("SELECT 1 FROM models").fetchone():
        state.record_model("start", str(checkpoint), model_sha, None)
    market.resume_after = None if resume.datetime is None else pd.Timestamp(resume.datetime)
    # features with memory (EWMs) depend on where history starts: a resumed run
    # replays the history from the first run's first bar, so its features are the same
    started = state.meta().get("history_start")
    market.history_start = None if started is None else pd.Timestamp(started)
    cerebro = make_cerebro({}, cfg.backtest)
    for feed in market.feeds():
        cerebro.adddata(feed, name=feed.p.symbol)
    if strategy is None:
        from mtl_bt import registry
        from mtl_bt.paper.strategy import PaperMTLStrategy

        rule = registry.create("signal", cfg.backtest.signal, **cfg.backtest.signal_options)
        params = strategy_params(cfg.backtest, predictors, rule)
        if cfg.backtest.calendar == "auto" and cfg.data.source == "ccxt":
            # crypto venues trade 24/7: a live run decides before it may have seen a
            # weekend bar, and "auto" would annualise a weekday start as an exchange
            params["calendar"] = "24/7"
        strategy = (PaperMTLStrategy, params)
    cerebro.addstrategy(strategy[0], **strategy[1])

    done = {"bars": 0, "why": "until"}
    show = _echo_bar(echo) if echo is not None else None

    def on_bar(rec: BarRecord) -> None:
        state.export(out)
        done["bars"] += 1
        if show is not None:
            show(rec)
        if max_bars is not None and done["bars"] >= max_bars:
            done["why"] = "max_bars"
            cerebro.runstop()

    from mtl_bt.paper.retrain import ModelInUse, Retrainer

    in_use = ModelInUse.of(checkpoint, model_sha, predictors[0])
    last_swap = state.db.execute(
        "SELECT path, sha256 FROM models WHERE event='swap' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    resume_model = None
    if last_swap is not None and Path(last_swap[0]).exists():
        from mtl_bt.predictor import Predictor

        swapped = Predictor.from_checkpoint(last_swap[0])
        in_use = ModelInUse.of(last_swap[0], last_swap[1], swapped)
        resume_model = (swapped, last_swap[1])
    retrainer = Retrainer(cfg, out, state, market.step, in_use, source=market.source)
    log.info(_start_line(out, resume, in_use, cfg.backtest.cash))
    cerebro.addanalyzer(
        PaperJournal,
        state=state,
        resume=resume,
        model_sha256=lambda: retrainer.in_use.sha256,
        on_bar=on_bar,
        retrainer=retrainer if retrainer.enabled or cfg.paper.max_model_age else None,
        resume_model=resume_model,
        meta=lambda: (
            {"history_start": market.history_start.isoformat()}
            if market.history_start is not None
            else {}
        ),
    )

    def stop(signum, frame) -> None:  # after the current bar: Cerebro checks between bars
        done["why"] = "signal"
        cerebro.runstop()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop)
    try:
        cerebro.run()
    finally:
        market.close()
        retrainer.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    state.export(out)
    end = state.resume()
    equity = state.db.execute("SELECT equity FROM bars ORDER BY seq DESC LIMIT 1").fetchone()
    return PaperResult(
        bars=done["bars"],
        total_bars=end.bars,
        equity=None if equity is None else float(equity[0]),
        out=out,
        stopped_by=done["why"],
    )
