"""``mtl-bt report`` and ``mtl-bt reconcile`` on real paper folders: a run decided bar by bar
reconciles exactly with a backtest of its journaled bars and model, and its report holds a
backtest's metrics against buy & hold over the same bars; a run with a burst (three bars
closing in one poll) shows the burst as its first divergence."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading

import pandas as pd
from click.testing import CliRunner
from data_testkit import ExchangeClock
from paper_testkit import HOUR, START, journal_has, paper_config_dict

from mtl_bt import config as config_mod
from mtl_bt.cli import main

N = 8


class _Paced:
    """Advance the exchange clock one bar after each decided bar, but ``jump`` bars at once
    at advance number ``at`` (a burst: the bars in between close within one poll)."""

    def __init__(self, clock, db, bars, at=None, jump=3):
        self.clock, self.ready, self.bars, self.at, self.jump = (
            clock,
            journal_has(db),
            bars,
            at,
            jump,
        )
        self.advanced = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.01) and self.advanced < self.bars:
            newest = self.clock.now().floor("1h") - HOUR
            if self.ready(newest):
                self.advanced += 1
                self.clock.advance(HOUR * (self.jump if self.advanced == self.at else 1))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(timeout=5)


def _paper_run(exchange, paper_model, tmp_path, at=None, quiet=True):
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    path = tmp_path / "paper.toml"
    path.write_text(config_mod.dumps(config_mod.from_dict(paper_config_dict(url))))
    out = tmp_path / "paper"
    args = ["paper", str(path), "--model", str(paper_model), "--out", str(out)]
    args += ["--quiet"] if quiet else []
    with _Paced(clock, out / "paper.sqlite", N - 1, at=at):
        result = CliRunner().invoke(main, [*args, "--max-bars", str(N)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_run_without_burst_reconciles_exactly_and_reports_like_a_backtest(
    exchange, paper_model, tmp_path
):
    out, _ = _paper_run(exchange, paper_model, tmp_path)
    result = CliRunner().invoke(main, ["reconcile", str(out)])
    assert result.exit_code == 0, result.output
    assert f"identical: {N} decided bars and" in result.output and "1 model(s)" in result.output

    # the comparison is real: a prediction or an equity changed in a copy is the divergence
    for field, sql in (
        ("prediction ", "UPDATE bars SET strategy_state = ? WHERE datetime = ?"),
        ("equity", "UPDATE bars SET equity = equity + 1 WHERE datetime = ?"),
    ):
        copy = tmp_path / f"copy-{field.strip()}"
        shutil.copytree(out, copy)
        db = sqlite3.connect(copy / "paper.sqlite")
        row = db.execute("SELECT datetime, strategy_state FROM bars LIMIT 1 OFFSET 5")
        when, state = row.fetchone()
        if field == "equity":
            db.execute(sql, (when,))
        else:
            state = json.loads(state)
            task = sorted(state["decision"]["ETH/USDT"])[0]
            state["decision"]["ETH/USDT"][task] += 0.01
            db.execute(sql, (json.dumps(state), when))
        db.commit()
        db.close()
        result = CliRunner().invoke(main, ["reconcile", str(copy)])
        assert result.exit_code == 1, result.output
        symbol = "portfolio" if field == "equity" else "ETH/USDT"
        assert result.output.startswith(f"first divergence at {when}, {symbol}, {field}")

    result = CliRunner().invoke(main, ["report", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists() and "report.html" in result.output
    html = (out / "report.html").read_text()
    assert "Paper run: 8 decided bars" in html and "buy &amp; hold" in html
    metrics = json.loads((out / "metrics.json").read_text())
    equity = pd.read_csv(out / "equity.csv")
    assert metrics["portfolio"]["final_value"] == equity["equity"].iloc[-1]
    returns = pd.read_csv(out / "returns.csv")
    assert list(returns["datetime"]) == [pd.Timestamp(t).isoformat() for t in equity["datetime"]]
    # buy & hold over exactly the decided bars
    bh = pd.read_csv(out / "baselines" / "buy_and_hold" / "returns.csv")
    assert list(bh["datetime"]) == list(returns["datetime"])


def test_burst_is_the_first_divergence(exchange, paper_model, tmp_path):
    out, said = _paper_run(exchange, paper_model, tmp_path, at=3, quiet=False)
    # the run said what happened, with the wall time: the jump and the bars not traded
    assert "ccxt clock jumped forward by 0 days 03:00:00" in said, said
    assert "back-filled 2 bars (gap, 2024-03-01T12:00:00+00:00 .. 2024-03-01T13:00:00" in said
    assert "new paper run in" in said and "BTC/USDT, ETH/USDT, SOL/USDT: LIVE" in said
    result = CliRunner().invoke(main, ["reconcile", str(out)])
    assert result.exit_code == 1, result.output
    first_live = START.floor("1h") - HOUR
    # decided bars 0, 1, 2; the clock then jumps 3 bars: bars 3 and 4 arrive with bar 5
    burst = (first_live + 3 * HOUR).isoformat()
    line = result.output.splitlines()[0]
    assert line.startswith(f"first divergence at {burst}, BTC/USDT, decision: paper not decided, "
                           "backtest decided (burst: ")  # fmt: skip
    assert "identical before it: 3 decided bars" in result.output


def test_report_of_a_folder_that_is_neither_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "is neither a paper folder" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_report_of_a_run_folder_renders_it_again_from_its_files(tmp_path):
    index = pd.date_range("2024-01-01", periods=50, freq="1h", tz="UTC")
    returns = pd.DataFrame({"datetime": index, "portfolio_return": 0.001})
    returns.to_csv(tmp_path / "returns.csv", index=False)
    metrics = {"portfolio": {"sharpe": 1.2345, "final_value": 105.0}, "periods_per_year": 8760}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "sharpe 1.234" in result.output and "report.html" in result.output
    assert "1.234" in (tmp_path / "report.html").read_text()
