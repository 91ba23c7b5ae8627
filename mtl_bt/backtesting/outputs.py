"""Backtest artefacts: metrics.json, returns.csv, orders.csv, trades.csv (atomic writes).

JSON is strict: infinities become the strings "inf"/"-inf", undefined values
(None, NaN) become null (see docs/backtesting.md).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mtl_bt.backtesting.result import BacktestResult


def json_safe(value: Any) -> Any:
    """JSON-valid data: inf -> "inf"/"-inf" strings, NaN -> null, numpy -> Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


def metrics_document(result: BacktestResult) -> dict[str, Any]:
    ppy = result.periods_per_year
    return json_safe(
        {
            "portfolio": result.metrics,
            "per_asset": result.per_asset,
            "periods_per_year": int(ppy) if float(ppy).is_integer() else ppy,
        }
    )


def _iso(index: pd.Series | pd.DatetimeIndex) -> list[str]:
    return [ts.isoformat() for ts in pd.DatetimeIndex(index)]


def write_outputs(result: BacktestResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """metrics.json, returns.csv, orders.csv, trades.csv in ``out_dir`` (each written atomically)."""
    from mtl_bt.atomic import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    returns = pd.DataFrame(
        {"datetime": _iso(result.returns.index), "portfolio_return": result.returns.to_numpy()}
    )
    orders = result.orders.copy()
    orders["datetime"] = _iso(orders["datetime"])
    trades = result.trades.copy()
    for col in ("entry_time", "exit_time"):
        trades[col] = _iso(trades[col])
    text = json.dumps(metrics_document(result), indent=2, allow_nan=False)
    paths = {
        "metrics": atomic_write(out / "metrics.json", lambda p: p.write_text(text + "\n")),
        "returns": atomic_write(
            out / "returns.csv", lambda p: returns.to_csv(p, index=False, float_format="%.17g")
        ),
        "orders": atomic_write(out / "orders.csv", lambda p: orders.to_csv(p, index=False)),
        "trades": atomic_write(out / "trades.csv", lambda p: trades.to_csv(p, index=False)),
    }
    return {k: Path(v) for k, v in paths.items()}
