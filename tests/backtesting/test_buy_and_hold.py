"""Buy-and-hold is never silently empty (issue #17, item 3): an order the broker refuses
after a gap up is sized again and sent on the next bar; refusals are counted and shown."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtl_bt.backtesting import run_buy_and_hold
from mtl_bt.config import BacktestConfig


def _bars(opens, closes, start="2024-01-01", symbol="AAA") -> pd.DataFrame:
    opens, closes = np.asarray(opens, float), np.asarray(closes, float)
    index = pd.date_range(start, periods=len(opens), freq="1D", tz="UTC", name="datetime")
    frame = pd.DataFrame(
        {
            "open": opens,
            "high": np.maximum(opens, closes) * 1.001,
            "low": np.minimum(opens, closes) * 0.999,
            "close": closes,
            "volume": 1000.0,
        },
        index=index,
    )
    frame.attrs.update(symbol=symbol, timeframe="1d", source="test")
    return frame


def _gap_up() -> pd.DataFrame:
    """Sized on bar 0's close (100), the buy fills at bar 1's open: 6% higher."""
    closes = [100.0, 106.0, 107.0, 108.0, 110.0, 109.0, 111.0, 112.0, 113.0, 114.0]
    opens = [100.0, 106.0, 106.5, 107.5, 109.0, 109.5, 110.0, 111.5, 112.5, 113.5]
    return _bars(opens, closes)


def test_a_margin_rejected_buy_is_resized_and_filled_next_bar():
    result = run_buy_and_hold({"AAA": _gap_up()}, BacktestConfig())
    statuses = list(result.orders["status"])
    assert statuses[0] == "margin" and statuses[-1] == "completed"  # refused, then bought
    assert result.metrics["exposure"] > 0.5
    assert result.equity.iloc[-1] > 10_400  # it held the asset's rise, not cash
    assert result.metrics["rejected_orders"] == 1
    assert result.strategy.resized == 1


def test_every_asset_of_a_portfolio_is_bought_even_when_cash_runs_short():
    frames = {
        "AAA": _gap_up(),
        "BBB": _bars([50.0] + [53.0] * 9, [50.0] + [53.0] * 9, symbol="BBB"),
    }
    result = run_buy_and_hold(frames, BacktestConfig())
    done = result.orders[result.orders["status"] == "completed"]
    assert sorted(done["symbol"]) == ["AAA", "BBB"]
    assert result.metrics["rejected_orders"] >= 1


def test_refused_orders_are_in_the_run_summary_and_the_report_table():
    from mtl_bt.backtesting.runner import metrics_document
    from mtl_bt.cli.run_cmd import metrics_text, rejected_line
    from mtl_bt.report.run_report import metrics_table

    doc = metrics_document(run_buy_and_hold({"AAA": _gap_up()}, BacktestConfig()))
    assert "Rejected orders" in metrics_text(doc, doc)
    line = rejected_line("buy & hold", doc, "x/orders.csv")
    assert line.startswith("warning: the broker refused 1 order(s) of buy & hold")
    assert rejected_line("buy & hold", {"portfolio": {"rejected_orders": 0}}, "x") == ""
    table = metrics_table({"buy & hold": doc["portfolio"]})
    assert table.set_index("metric").loc["Rejected orders", "buy & hold"] == 1
