"""Backtest vs paper: replay a paper journal's bars as a backtest and find the first difference.

The journal holds every bar the feeds delivered (history, back-fill and live, table
``ohlcv``) and every model event, so the same bars can be backtested with the same
models, each deciding from the bar after its swap (the first from the first decided
bar). Walking the bars in time order, the first bar where the two differ is reported
with the symbol and field (decision, prediction, fill, equity), both values and,
when it can be told, why:

* ``burst``: the paper run got the bar together with newer ones in one poll (after an
  outage, a slow poll or a clock jump): it was back-fill, never decided live, while the
  backtest decides every bar;
* ``swap``: a retrained model was swapped in on the bar before;
* ``dropped bar``: a symbol had no bar at that time in the journal (the feed dropped it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import UserError
from mtl_bt.paper.journal import FILLED
from mtl_bt.paper.report import Journal, read_journal

#: predictions agree to this (the paper run and the backtest compute them the same way; the
#: tolerance absorbs the last bits of float32 inference on other batch shapes)
PRED_RTOL, PRED_ATOL = 1e-5, 1e-7
#: fills and equity agree to this
VALUE_RTOL, VALUE_ATOL = 1e-9, 1e-6


@dataclass
class Divergence:
    bar: pd.Timestamp
    symbol: str
    field: str
    paper: Any
    backtest: Any
    reason: str = ""

    def line(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"first divergence at {self.bar.isoformat()}, {self.symbol}, {self.field}: "
            f"paper {self.paper}, backtest {self.backtest}{why}"
        )


@dataclass
class Reconciled:
    divergence: Divergence | None
    bars: int  # decided bars compared
    fills: int  # fills compared
    models: int  # models used (1 + swaps)


def _models(j: Journal) -> tuple[list[Any], list[tuple[pd.Timestamp, str]]]:
    """The journaled models in order, each with the fold window it decided in."""
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.predictor import Predictor

    step = pd.Timedelta(j.cfg.data.timeframe or "1h")
    swaps = j.models[j.models["event"] == "swap"]
    paths = [j.meta.get("model_path")] + list(swaps["path"])
    starts = [j.bars.index[0]] + [pd.Timestamp(t) + step for t in swaps["datetime"]]
    chain = []
    for k, path in enumerate(paths):
        if not path or not Path(path).exists():
            raise UserError(
                f"reconcile needs the journaled model {path!r} (model {k}); it is missing: "
                "restore it or reconcile a copy of the folder that has it"
            )
        pred = load_predictors(path)[-1] if k == 0 else Predictor.from_checkpoint(path)
        end = starts[k + 1] - step if k + 1 < len(paths) else None
        window = {
            "fold": k,
            "test_start": starts[k].isoformat(),
            "test_end": None if end is None else end.isoformat(),
        }
        pred.fold = {**(pred.fold or {}), **window}
        chain.append(pred)
    return chain, [
        (pd.Timestamp(t), str(p)) for t, p in zip(swaps["datetime"], swaps["path"], strict=False)
    ]


def _backtest(j: Journal, chain: list[Any]) -> Any:
    from mtl_bt.backtesting.runner import run_backtest

    last = j.bars.index[-1]
    frames = {s: f.loc[:last] for s, f in j.frames().items()}
    return run_backtest(frames, chain, j.cfg.backtest, record=True, calendar=j.calendar())


def recorded_decisions(strat: Any) -> dict[pd.Timestamp, dict[str, dict[str, float]]]:
    """A backtest's recorded predictions (``record=True``), per bar and symbol."""
    import backtrader as bt

    out: dict[pd.Timestamp, dict[str, dict[str, float]]] = {}
    for num, assets, preds in strat.predictions_log:
        when = pd.Timestamp(bt.num2date(num)).tz_localize("UTC").round("us")
        out[when] = {
            strat.symbols[a]: {t: float(v[i]) for t, v in preds.items()}
            for i, a in enumerate(assets)
        }
    return out


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def _reason(j: Journal, when: pd.Timestamp, swaps: list[tuple[pd.Timestamp, str]]) -> str:
    step = pd.Timedelta(j.cfg.data.timeframe or "1h")
    rows = j.ohlcv[j.ohlcv["datetime"] == when]
    missing = [s for s in j.cfg.data.symbols if s not in set(rows["symbol"])]
    if missing:
        return f"dropped bar: the journal has no {', '.join(missing)} bar at this time"
    if len(rows) and not rows["live"].astype(bool).any():
        return "burst: this bar arrived with newer ones in one poll and was back-filled, not decided live"
    for t, path in swaps:
        if t + step == when:
            return f"swap: {Path(path).name} decides from this bar"
    return ""


def reconcile(folder: str | Path) -> Reconciled:
    """Replay the journal (module docstring); ``divergence`` None when identical."""
    j = read_journal(folder)
    if j.bars.empty:
        raise UserError(f"{Path(folder) / 'paper.sqlite'} holds no decided bar: nothing to replay")
    if j.ohlcv.empty:
        raise UserError(
            f"{Path(folder) / 'paper.sqlite'} holds no bars (written by an mtl-bt from before "
            "bars were journaled): it cannot be replayed"
        )
    states = j.bars["strategy_state"]
    if not all(isinstance(s, dict) and "decision" in s for s in states):
        raise UserError(
            "reconcile replays MTLStrategy; this journal was written by another strategy "
            "(its bars hold no predictions)"
        )
    chain, swaps = _models(j)
    result = _backtest(j, chain)
    want = recorded_decisions(result.strategy)
    got = {t: s["decision"] for t, s in states.items()}
    bt_fills = result.orders[result.orders["status"] == "completed"]
    paper_fills = j.orders[j.orders["status"].isin(FILLED)].copy()
    paper_fills["datetime"] = pd.to_datetime(paper_fills["datetime"], utc=True)
    equity = result.equity
    symbols = list(j.cfg.data.symbols)
    first = j.bars.index[0]
    times = sorted({t for t in want if t >= first} | set(got))
    compared = fills = 0

    def diverged(when, symbol, field, paper, backtest) -> Reconciled:
        reason = _reason(j, when, swaps)
        div = Divergence(when, symbol, field, paper, backtest, reason)
        return Reconciled(div, compared, fills, len(chain))

    for when in times:
        # fills at this bar (orders of the bar before, filled at this bar's open)
        a = paper_fills[paper_fills["datetime"] == when]
        b = bt_fills[bt_fills["datetime"] == when]
        a_key = sorted(
            zip(a["symbol"], a["side"], a["size"], a["price"], a["commission"], strict=False)
        )
        b_key = sorted(
            zip(b["symbol"], b["side"], b["size"], b["price"], b["commission"], strict=False)
        )
        for x, y in zip(a_key, b_key, strict=False):
            if x[:2] != y[:2]:
                return diverged(when, x[0], "fill", f"{x[1]} {x[0]}", f"{y[1]} {y[0]}")
            for k, name in ((2, "fill size"), (3, "fill price"), (4, "commission")):
                if not _close(float(x[k]), float(y[k]), VALUE_RTOL, VALUE_ATOL):
                    return diverged(when, x[0], name, float(x[k]), float(y[k]))
            fills += 1
        if len(a_key) != len(b_key):
            more = a_key[len(b_key) :] or b_key[len(a_key) :]
            return diverged(when, more[0][0], "fills", f"{len(a_key)} fills", f"{len(b_key)} fills")
        # the decision of this bar
        if when not in got:
            return diverged(when, symbols[0], "decision", "not decided", "decided")
        if when not in want:
            return diverged(when, symbols[0], "decision", "decided", "not decided")
        for symbol in symbols:
            p, q = got[when].get(symbol), want[when].get(symbol)
            if (p is None) != (q is None):
                return diverged(
                    when, symbol, "decision", "predicted" if p else "-", "predicted" if q else "-"
                )
            for task in sorted(p or {}):
                x, y = float(p[task]), float(q.get(task, np.nan))
                if not _close(x, y, PRED_RTOL, PRED_ATOL):
                    return diverged(when, symbol, f"prediction {task}", x, y)
        if when in equity.index:
            x, y = float(j.bars.loc[when, "equity"]), float(equity.loc[when])
            if not _close(x, y, VALUE_RTOL, VALUE_ATOL):
                return diverged(when, "portfolio", "equity", x, y)
        compared += 1
    return Reconciled(None, compared, fills, len(chain))
