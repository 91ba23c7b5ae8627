"""``mtl-bt paper`` with the real MTLStrategy on live feeds (its streaming path): a 3-symbol
run decides each bar once and its fills equal a backtest of the same bars and model."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
from click.testing import CliRunner
from data_testkit import ExchangeClock
from paper_testkit import HOUR, PAIRS, START, Lockstep, journal_has, paper_config_dict

from mtl_bt import config as config_mod
from mtl_bt.cli import main

N = 8


def test_cli_paper_run_equals_backtest(exchange, paper_model, tmp_path, crypto_frames):
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    data = paper_config_dict(url)
    cfg = config_mod.from_dict(data)
    path = tmp_path / "paper.toml"
    path.write_text(config_mod.dumps(cfg))
    out = tmp_path / "paper"
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=N - 1):
        result = CliRunner().invoke(
            main,
            [
                "paper",
                str(path),
                "--model",
                str(paper_model),
                "--out",
                str(out),
                "--max-bars",
                str(N),
            ],
        )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()  # status lines go to stderr
    assert len(lines) == N + 1 and "equity" in lines[0] and "stopped (max_bars)" in lines[-1]
    db = sqlite3.connect(out / "paper.sqlite")
    bars = [pd.Timestamp(t) for (t,) in db.execute("SELECT datetime FROM bars ORDER BY seq")]
    first_live = START.floor("1h") - HOUR
    assert bars == list(pd.date_range(first_live, periods=N, freq="1h"))
    (dups,) = db.execute(
        "SELECT COUNT(*) FROM (SELECT symbol, datetime FROM decided GROUP BY 1, 2 HAVING COUNT(*) > 1)"
    ).fetchone()
    assert dups == 0

    # the backtest: same bars (warm-up included), same model, deciding from the first live bar
    from mtl_bt.backtesting.runner import load_predictors, run_backtest

    predictor = load_predictors(paper_model)[0]
    predictor.fold = {**(predictor.fold or {}), "test_start": first_live.isoformat()}
    first = START.floor("1h") - 60 * HOUR
    frames = {s: crypto_frames[s].loc[first : bars[-1]] for s in PAIRS}
    bt_result = run_backtest(frames, [predictor], cfg.backtest)
    want = bt_result.orders[bt_result.orders["status"] == "completed"].reset_index(drop=True)
    got = pd.read_csv(out / "orders.csv")
    got = got[got["status"] == "completed"].reset_index(drop=True)
    assert len(got) == len(want) > 0
    assert list(got["symbol"]) == list(want["symbol"]) and list(got["side"]) == list(want["side"])
    assert list(pd.to_datetime(got["datetime"], utc=True)) == list(want["datetime"])
    for col in ("size", "price", "commission"):
        np.testing.assert_allclose(got[col], want[col], rtol=0, atol=1e-6)
    equity = pd.read_csv(out / "equity.csv")
    assert abs(equity["equity"].iloc[-1] - bt_result.metrics["final_value"]) < 1e-6


def _cli_run(url, out, model, clock, bars, advance):
    cfg = config_mod.from_dict(paper_config_dict(url))
    path = out.parent / "paper.toml"
    path.write_text(config_mod.dumps(cfg))
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=advance):
        result = CliRunner().invoke(
            main,
            [
                "paper",
                str(path),
                "--model",
                str(model),
                "--out",
                str(out),
                "--max-bars",
                str(bars),
                "--quiet",
            ],
        )
    assert result.exit_code == 0, result.output


def _journal(out):
    db = sqlite3.connect(out / "paper.sqlite")
    try:
        return (
            db.execute("SELECT datetime, cash, equity FROM bars ORDER BY seq").fetchall(),
            db.execute(
                "SELECT created, symbol, side, created_size, status, datetime, size, price, "
                "commission FROM orders ORDER BY id"
            ).fetchall(),
        )
    finally:
        db.close()


def test_mtl_run_stopped_and_resumed_equals_uninterrupted(exchange, paper_model, tmp_path):
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    (tmp_path / "a").mkdir()
    whole = tmp_path / "a" / "paper"
    _cli_run(url, whole, paper_model, clock, N, N - 1)

    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    (tmp_path / "b").mkdir()
    parts = tmp_path / "b" / "paper"
    _cli_run(url, parts, paper_model, clock, N // 2, N // 2 - 1)  # stops with orders open
    bars, orders = _journal(parts)
    assert len(bars) == N // 2 and any(o[4] == "created" for o in orders)
    _cli_run(url, parts, paper_model, clock, N // 2, N // 2)  # same command: resumes
    got, want = _journal(parts), _journal(whole)
    assert got[0] == want[0]
    assert got[1] == want[1]


def test_stale_model_opens_no_new_positions(exchange, paper_model, tmp_path):
    """The guard holds on every bar, the first decided bar of the start and of a resume
    included (it used to run after the strategy had decided: one bar late each time)."""
    from mtl_bt.paper.state import sha256_file

    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    data = paper_config_dict(url)
    data["paper"]["max_model_age"] = "2d"  # trained on bars up to 2024-02-20: stale at once
    cfg = config_mod.from_dict(data)
    path = tmp_path / "paper.toml"
    path.write_text(config_mod.dumps(cfg))
    out = tmp_path / "paper"
    args = ["paper", str(path), "--model", str(paper_model), "--out", str(out), "--quiet"]
    for advance in (N // 2 - 1, N // 2):  # a start, then a resume of the same folder
        with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=advance):
            result = CliRunner().invoke(main, [*args, "--max-bars", str(N // 2)])
        assert result.exit_code == 0, result.output
    db = sqlite3.connect(out / "paper.sqlite")
    assert db.execute("SELECT COUNT(*) FROM bars").fetchone()[0] == N
    stale = db.execute("SELECT datetime, path, sha256, error FROM models WHERE event='stale'")
    stale = stale.fetchall()
    first_live = (START.floor("1h") - HOUR).isoformat()
    # once per model (not again on resume), on the first bar, naming the model in use
    assert len(stale) == 1 and stale[0][0] == first_live, stale
    assert stale[0][1] == str(paper_model) and stale[0][2] == sha256_file(paper_model)
    assert "model.pt trained up to 2024-02-" in stale[0][3] or "trained up to" in stale[0][3]
    # every order, from the very first bar on, only reduces a position held on its bar
    orders = db.execute("SELECT created, symbol, side FROM orders").fetchall()
    for created, symbol, side in orders:
        held = db.execute(
            "SELECT size FROM positions WHERE symbol = ? AND datetime <= ? ORDER BY datetime DESC "
            "LIMIT 1",
            (symbol, created),
        ).fetchone()
        assert held is not None and (held[0] > 0) == (side == "sell"), (created, symbol, side)


def test_ccxt_paper_run_is_annualised_24_7_without_a_weekend_in_its_history(
    exchange, paper_model, tmp_path
):
    """The test market's 60-bar warm-up ends on a Friday and holds no weekend bar: with
    calendar="auto" the streaming path would have to guess, and guessed 'exchange' (4284
    bars a year for a 24/7 crypto market: positions sized sqrt(8760/4284) = 1.43x too
    large). A ccxt paper run is 24/7 unless [backtest] calendar says otherwise."""
    import warnings

    from mtl_bt.paper import run_paper

    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    cfg = config_mod.from_dict(paper_config_dict(url))
    assert cfg.backtest.calendar == "auto" and cfg.data.source == "ccxt"
    out = tmp_path / "paper"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*calendar='auto' chose")
        with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=3):
            result = run_paper(cfg, paper_model, out, max_bars=4, echo=None)
    assert result.bars == 4
