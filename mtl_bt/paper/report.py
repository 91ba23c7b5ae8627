"""A paper folder's report: the backtest's artefacts (metrics.json, returns.csv, buy & hold
over the same bars, report.html) computed from the journal alone.

The journal holds every bar the feeds delivered (table ``ohlcv``, with its ``live`` flag),
every decided bar's cash and equity, and every order and fill, so the metrics are those
of what the paper run did, and the buy-and-hold baseline is a real Backtrader run of the
project's ``BuyAndHold`` over exactly the bars the paper run decided, with the same costs.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import OutputError
from mtl_bt.paper.journal import FILLED

_OHLCV = ["open", "high", "low", "close", "volume"]


@dataclass
class Journal:
    """A paper journal read into frames (read-only; a run may be writing it)."""

    folder: Path
    cfg: Any
    config_text: str
    meta: dict[str, str]
    bars: pd.DataFrame  # index: bar time; cash, equity, model_sha256, strategy_state (dict)
    orders: pd.DataFrame
    positions: pd.DataFrame
    models: pd.DataFrame
    ohlcv: pd.DataFrame  # symbol, datetime, OHLCV, live

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every bar the run was fed, per symbol (history, back-fill and live bars)."""
        out = {}
        for symbol, rows in self.ohlcv.groupby("symbol", sort=False):
            frame = rows.set_index("datetime")[_OHLCV].sort_index()
            frame.index.name = "datetime"
            frame.attrs = {"symbol": symbol, "timeframe": self.cfg.data.timeframe}
            out[symbol] = frame
        return {s: out[s] for s in self.cfg.data.symbols if s in out}

    def calendar(self) -> str:
        """The calendar the paper run annualised with (a ccxt run is 24/7 unless told)."""
        bt = self.cfg.backtest
        if bt.calendar == "auto" and self.cfg.data.source == "ccxt":
            return "24/7"
        return bt.calendar


def read_journal(folder: str | Path) -> Journal:
    from mtl_bt import config as config_mod
    from mtl_bt.paper.folder import JOURNAL

    folder = Path(folder)
    path = folder / JOURNAL
    if not path.exists() or path.stat().st_size == 0:
        raise OutputError(f"{path} is missing or empty: {folder} is not a paper run folder")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        meta = dict(db.execute("SELECT key, value FROM meta"))
        bars = pd.read_sql_query(
            "SELECT datetime, cash, equity, model_sha256, strategy_state FROM bars ORDER BY seq",
            db,
        )
        orders = pd.read_sql_query("SELECT * FROM orders ORDER BY id", db)
        positions = pd.read_sql_query("SELECT * FROM positions", db)
        models = pd.read_sql_query("SELECT * FROM models ORDER BY seq", db)
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        ohlcv = (
            pd.read_sql_query("SELECT * FROM ohlcv ORDER BY datetime", db)
            if "ohlcv" in tables
            else pd.DataFrame(columns=["symbol", "datetime", *_OHLCV, "live"])
        )
        db.close()
    except sqlite3.DatabaseError as exc:
        raise OutputError(
            f"{path} cannot be read ({exc}); restore it from a backup (see docs/paper.md)"
        ) from None
    if "config" not in meta:
        raise OutputError(f"{path} holds no run yet (no config in its meta table)")
    cfg = config_mod.from_dict(__import__("tomllib").loads(meta["config"]))
    bars["datetime"] = pd.to_datetime(bars["datetime"], utc=True)
    bars = bars.set_index("datetime")
    bars["strategy_state"] = [json.loads(s) for s in bars["strategy_state"]]
    ohlcv["datetime"] = pd.to_datetime(ohlcv["datetime"], utc=True)
    return Journal(folder, cfg, meta["config"], meta, bars, orders, positions, models, ohlcv)


def _trade_pnl(fills: pd.DataFrame) -> list[float]:
    """Net P&L of every closed trade (flat to flat, per symbol): cash in minus cash out
    minus commissions."""
    out = []
    for _, rows in fills.groupby("symbol", sort=False):
        size, pnl = 0.0, 0.0
        for side, qty, price, comm in rows[["side", "size", "price", "commission"]].itertuples(
            index=False
        ):
            signed = qty if side == "buy" else -qty
            size += signed
            pnl += -signed * price - comm
            if abs(size) < 1e-12:
                out.append(pnl)
                size, pnl = 0.0, 0.0
    return out


def paper_metrics(j: Journal) -> tuple[pd.Series, dict[str, Any], float]:
    """(returns per decided bar, portfolio metrics as a backtest reports them, bars/year)."""
    from mtl_bt.backtesting.calendar import periods_per_year
    from mtl_bt.metrics import performance as perf

    times = j.bars.index
    equity = j.bars["equity"].to_numpy(np.float64)
    cash0 = float(j.cfg.backtest.cash)
    prev = np.concatenate([[cash0], equity[:-1]])
    rets = equity / prev - 1.0
    ppy = periods_per_year(j.cfg.data.timeframe or "1h", j.calendar())
    fills = j.orders[j.orders["status"].isin(FILLED)].copy()
    fills["datetime"] = pd.to_datetime(fills["datetime"], utc=True)
    fills["value"] = fills["size"] * fills["price"]
    at = fills.groupby("datetime")[["value", "commission"]].sum()
    traded = at["value"].reindex(times).fillna(0.0).to_numpy()
    costs = at["commission"].reindex(times).fillna(0.0).to_numpy()
    held = pd.to_datetime(j.positions["datetime"], utc=True).unique()
    exposure = float(np.isin(times, held).mean()) if len(times) else None
    metrics = perf.summary(
        rets,
        ppy,
        risk_free=j.cfg.backtest.risk_free,
        trade_pnl=np.asarray(_trade_pnl(fills), dtype=np.float64),
        exposure=exposure,
        turnover=perf.turnover(traded, prev, ppy),
        index=times,
        gross=perf.gross_returns(rets, costs, prev),
        costs_per_year=perf.cost_drag(costs, prev, ppy),
    )
    metrics["costs"] = float(costs.sum())
    metrics["rejected_orders"] = int(j.orders["status"].isin(["rejected", "margin"]).sum())
    metrics["final_value"] = float(equity[-1]) if len(equity) else cash0
    return pd.Series(rets, index=times, name="portfolio_return"), metrics, ppy


def write_paper_report(folder: str | Path, *, plots_on: bool = True) -> dict[str, Path]:
    """metrics.json, returns.csv, baselines/buy_and_hold/, config.toml and report.html in the
    paper folder, from its journal (see module docstring)."""
    from mtl_bt.atomic import atomic_write
    from mtl_bt.backtesting.outputs import json_safe, write_outputs
    from mtl_bt.backtesting.runner import run_buy_and_hold
    from mtl_bt.report.run_report import write_run_report

    j = read_journal(folder)
    folder = j.folder
    if j.bars.empty:
        raise OutputError(f"{folder / 'paper.sqlite'} holds no decided bar yet: nothing to report")
    returns, metrics, ppy = paper_metrics(j)
    doc = {
        "portfolio": metrics,
        "per_asset": {},
        "periods_per_year": int(ppy) if float(ppy).is_integer() else ppy,
        "source": "paper journal",
    }
    text = json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"
    atomic_write(folder / "metrics.json", lambda p: p.write_text(text))
    frame = pd.DataFrame(
        {"datetime": [t.isoformat() for t in returns.index], "portfolio_return": returns.values}
    )
    atomic_write(
        folder / "returns.csv", lambda p: frame.to_csv(p, index=False, float_format="%.17g")
    )
    atomic_write(folder / "config.toml", lambda p: p.write_text(j.config_text))
    frames = j.frames()
    first, last = j.bars.index[0], j.bars.index[-1]
    frames = {s: f.loc[first:last] for s, f in frames.items() if len(f.loc[first:last])}
    intro = (
        f"Paper run: {len(j.bars)} decided bars from {first.isoformat()} to {last.isoformat()} "
        "(live candles, simulated fills), from its journal; buy & hold covers the same bars "
        "with the same costs."
    )
    if frames:
        cfg = j.cfg.backtest.model_copy(update={"calendar": j.calendar()})
        write_outputs(run_buy_and_hold(frames, cfg), folder / "baselines" / "buy_and_hold")
    else:
        intro += " The journal holds no bars (an older mtl-bt): no buy & hold baseline."
    written = write_run_report(
        folder, f"mtl-bt paper report: {folder.name}", plots_on=plots_on, intro=intro
    )
    written["metrics.json"] = folder / "metrics.json"
    return written
