"""Trading performance metrics on a per-bar return series (pure numpy).

Why our own: Backtrader's SharpeRatio defaults to yearly returns and a 1%
risk-free rate and returns None on short runs, DrawDown is in percent, and
there is no Sortino or profit factor. Every function here takes simple
(arithmetic) per-bar returns and ``periods_per_year`` so that hourly 24/7 bars
are annualised with 8760 and daily stock bars with 252.

Conventions (documented in docs/backtesting.md):
- A metric that is undefined returns ``None`` (fewer than 2 returns, zero
  variance, no trades, no drawdown for Calmar).
- ``inf`` is returned where the limit is genuinely infinite: profit factor with
  profit but no losing trade, Sortino with positive mean and no downside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

PORTFOLIO_KEYS = (
    "sharpe",
    "sortino",
    "max_drawdown",
    "profit_factor",
    "win_rate",
    "cagr",
    "annual_volatility",
    "calmar",
    "num_trades",
    "exposure",
    "turnover",
    "gross_sharpe",
    "gross_cagr",
    "cost_drag",
)


def _arr(values: Sequence[float] | np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(out)):
        raise ValueError("returns must be finite (drop warm-up NaNs before computing metrics)")
    return out


def periodic_rate(annual_rate: float, periods_per_year: float) -> float:
    """Per-bar rate compounding to ``annual_rate`` over one year."""
    return (1.0 + annual_rate) ** (1.0 / periods_per_year) - 1.0


def sharpe_ratio(
    returns: Sequence[float] | np.ndarray, periods_per_year: float, risk_free: float = 0.0
) -> float | None:
    """mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year); None if undefined."""
    r = _arr(returns)
    if r.size < 2:
        return None
    excess = r - periodic_rate(risk_free, periods_per_year)
    if np.all(excess == excess[0]):  # constant: std is 0 (numpy may leave rounding dust)
        return None
    sd = float(np.std(excess, ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return None
    return float(np.mean(excess) / sd * math.sqrt(periods_per_year))


def downside_deviation(returns: Sequence[float] | np.ndarray, target: float = 0.0) -> float:
    """Target downside deviation sqrt(mean(min(r - target, 0)^2)) over ALL periods."""
    r = _arr(returns)
    if r.size == 0:
        return float("nan")
    shortfall = np.minimum(r - target, 0.0)
    return float(np.sqrt(np.mean(shortfall * shortfall)))


def sortino_ratio(
    returns: Sequence[float] | np.ndarray, periods_per_year: float, risk_free: float = 0.0
) -> float | None:
    """Sortino & Price: mean(r - t) / downside_deviation(r, t) * sqrt(ppy), t = per-bar rf.

    No downside at all: ``inf`` when the mean excess is positive, else None.
    """
    r = _arr(returns)
    if r.size < 2:
        return None
    target = periodic_rate(risk_free, periods_per_year)
    mean = float(np.mean(r - target))
    dd = downside_deviation(r, target)
    if dd == 0.0:
        return math.inf if mean > 0 else None
    return mean / dd * math.sqrt(periods_per_year)


def annual_volatility(
    returns: Sequence[float] | np.ndarray, periods_per_year: float
) -> float | None:
    """std(r, ddof=1) * sqrt(periods_per_year)."""
    r = _arr(returns)
    if r.size < 2:
        return None
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def equity_curve(returns: Sequence[float] | np.ndarray) -> np.ndarray:
    """Compounded equity after each bar, starting from 1 before the first bar."""
    return np.cumprod(1.0 + _arr(returns))


def drawdowns(returns: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-bar drawdown as a positive fraction below the running peak (peak includes 1.0)."""
    eq = equity_curve(returns)
    if eq.size == 0:
        return eq
    peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))[1:]
    return 1.0 - eq / peak


def max_drawdown(returns: Sequence[float] | np.ndarray) -> float:
    """Largest peak-to-trough loss as a positive fraction (0 when never under water)."""
    dd = drawdowns(returns)
    return float(dd.max()) if dd.size else 0.0


def drawdown_duration(
    returns: Sequence[float] | np.ndarray, index: Sequence[Any] | None = None
) -> tuple[int, Any]:
    """Longest under-water spell: (bars under water, time from peak to recovery).

    The time runs from the peak bar (the bar before the spell; the start of the
    series if the spell starts at the first bar, which needs ``index``) to the
    first bar back at the peak, or to the last bar if never recovered. Time is
    None without ``index``.
    """
    dd = drawdowns(returns)
    best_len, best_start = 0, -1
    run = 0
    for i, under in enumerate(dd > 0):
        run = run + 1 if under else 0
        if run > best_len:
            best_len, best_start = run, i - run + 1
    if best_len == 0 or index is None:
        return best_len, (None if index is None else index[0] - index[0])
    end = min(best_start + best_len, len(dd) - 1)
    start = max(best_start - 1, 0)
    return best_len, index[end] - index[start]


def cagr(returns: Sequence[float] | np.ndarray, periods_per_year: float) -> float | None:
    """Compound annual growth: E_n ** (ppy / n) - 1 (years = bars / ppy); -1 if wiped out."""
    r = _arr(returns)
    if r.size == 0:
        return None
    total = float(np.prod(1.0 + r))
    if total <= 0:
        return -1.0
    try:
        return total ** (periods_per_year / r.size) - 1.0
    except OverflowError:  # a few bars of big gains annualised from hourly bars
        return math.inf


def calmar_ratio(returns: Sequence[float] | np.ndarray, periods_per_year: float) -> float | None:
    """CAGR / max drawdown over the whole run; None without a drawdown."""
    mdd = max_drawdown(returns)
    growth = cagr(returns, periods_per_year)
    if mdd == 0.0 or growth is None:
        return None
    return growth / mdd


def profit_factor(trade_pnl: Sequence[float] | np.ndarray) -> float | None:
    """Gross profit / gross loss of closed trades (net of commission).

    None without trades or when every trade is exactly 0; ``inf`` with profit
    and no loss.
    """
    pnl = _arr(trade_pnl)
    if pnl.size == 0:
        return None
    gains = float(pnl[pnl > 0].sum())
    losses = float(-pnl[pnl < 0].sum())
    if losses == 0.0:
        return math.inf if gains > 0 else None
    return gains / losses


def turnover(
    traded_value: Sequence[float] | np.ndarray,
    prev_value: Sequence[float] | np.ndarray,
    periods_per_year: float,
) -> float | None:
    """Annualised **two-way** turnover: ``sum_t(traded_t / V_{t-1}) / n * P``.

    ``traded_t`` is the notional bought plus the notional sold on bar t, so selling all
    of asset A and buying B with the proceeds counts 2.0 (1.0 out, 1.0 in); divide by 2
    for the one-way convention. None without bars.
    """
    traded = _arr(traded_value)
    prev = _arr(prev_value)
    if traded.size == 0:
        return None
    return float((traded / prev).sum() / traded.size * periods_per_year)


def gross_returns(
    net_returns: Sequence[float] | np.ndarray,
    costs: Sequence[float] | np.ndarray,
    prev_value: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Per-bar returns before costs: ``r_t + cost_t / V_{t-1}`` (commission and slippage
    paid on bar t added back; the book's path is the one actually traded)."""
    return _arr(net_returns) + _arr(costs) / _arr(prev_value)


def cost_drag(
    costs: Sequence[float] | np.ndarray,
    prev_value: Sequence[float] | np.ndarray,
    periods_per_year: float,
) -> float | None:
    """Costs per year as a fraction of portfolio value: ``sum_t(cost_t / V_{t-1}) / n * P``
    (the arithmetic annual return lost to commission and slippage)."""
    c = _arr(costs)
    if c.size == 0:
        return None
    return float((c / _arr(prev_value)).sum() / c.size * periods_per_year)


def win_rate(trade_pnl: Sequence[float] | np.ndarray) -> float | None:
    """Fraction of closed trades with pnl > 0; None without trades."""
    pnl = _arr(trade_pnl)
    if pnl.size == 0:
        return None
    return float(np.mean(pnl > 0))


def summary(
    returns: Sequence[float] | np.ndarray,
    periods_per_year: float,
    *,
    risk_free: float = 0.0,
    trade_pnl: Sequence[float] | np.ndarray = (),
    exposure: float | None = None,
    turnover: float | None = None,
    index: Sequence[Any] | None = None,
    gross: Sequence[float] | np.ndarray | None = None,
    costs_per_year: float | None = None,
) -> dict[str, Any]:
    """All portfolio metrics (PORTFOLIO_KEYS plus drawdown durations) in one dict.

    ``gross``: the same bars' returns before costs (``gross_returns``); without it the
    gross metrics are None. ``costs_per_year``: ``cost_drag`` of the run.
    """
    r = _arr(returns)
    g = None if gross is None else _arr(gross)
    bars, span = drawdown_duration(r, index)
    return {
        "sharpe": sharpe_ratio(r, periods_per_year, risk_free),
        "sortino": sortino_ratio(r, periods_per_year, risk_free),
        "max_drawdown": max_drawdown(r),
        "profit_factor": profit_factor(trade_pnl),
        "win_rate": win_rate(trade_pnl),
        "cagr": cagr(r, periods_per_year),
        "annual_volatility": annual_volatility(r, periods_per_year),
        "calmar": calmar_ratio(r, periods_per_year),
        "num_trades": int(np.asarray(trade_pnl).size),
        "exposure": exposure,
        "turnover": turnover,
        "gross_sharpe": None if g is None else sharpe_ratio(g, periods_per_year, risk_free),
        "gross_cagr": None if g is None else cagr(g, periods_per_year),
        "cost_drag": costs_per_year,
        "gross_total_return": None if g is None or not g.size else float(np.prod(1.0 + g) - 1.0),
        "max_drawdown_bars": bars,
        "max_drawdown_duration": None if span is None else str(span),
        "total_return": float(np.prod(1.0 + r) - 1.0) if r.size else None,
        "num_bars": int(r.size),
    }
