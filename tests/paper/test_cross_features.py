"""`mtl-bt paper` (live feeds: the streaming path) with cross-frame features: another
symbol's returns, the market mean and daily context, fed by every pair's polled bars; the
predictions journaled with each decided bar equal a preloaded backtest's on the same bars."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
from click.testing import CliRunner
from data_testkit import ExchangeClock
from paper_testkit import HOUR, PAIRS, START, Lockstep, journal_has, paper_config_dict
from paper_testkit import close_decisions as _close

from mtl_bt import config as config_mod
from mtl_bt.cli import main
from mtl_bt.paper.reconcile import recorded_decisions as _decisions

N = 6
FEATURES = {
    "features": {
        "names": ["log_return", "cross_asset", "market", "higher_tf"],
        "params": {
            "cross_asset": {"of": "BTC/USDT", "params": {"windows": [1, 5]}, "staleness": True},
            "market": {"params": {"windows": [1]}},
            "higher_tf": {"timeframe": "1d", "params": {"windows": [1]}},
        },
    }
}


def test_paper_streams_cross_frame_features_as_the_backtest_computes_them(
    exchange, tmp_path, crypto_frames
):
    from mtl_bt.backtesting.runner import load_predictors, run_backtest
    from mtl_bt.training.pipeline import train_walk_forward

    cfg = config_mod.from_dict(paper_config_dict("http://unused", **FEATURES))
    end = pd.Timestamp("2024-02-20", tz="UTC")
    train = {s: crypto_frames[s].loc[:end].iloc[-400:] for s in PAIRS}
    model = train_walk_forward(cfg, train, tmp_path / "model").checkpoints[-1]
    predictor = load_predictors(model)[0]
    assert "x_btc_usdt_log_return_1" in predictor.feature_columns
    assert "mkt_log_return_1" in predictor.feature_columns
    assert "tf1d_log_return_1" in predictor.feature_columns

    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    cfg = config_mod.from_dict(paper_config_dict(url, **FEATURES))
    path = tmp_path / "paper.toml"
    path.write_text(config_mod.dumps(cfg))
    out = tmp_path / "paper"
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=N - 1):
        args = ["paper", str(path), "--model", str(model), "--out", str(out)]
        result = CliRunner().invoke(main, [*args, "--max-bars", str(N), "--quiet"])
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(out / "paper.sqlite")
    bars = [
        (pd.Timestamp(t), json.loads(state)["decision"])
        for t, state in db.execute("SELECT datetime, strategy_state FROM bars ORDER BY seq")
    ]
    db.close()
    first_live = START.floor("1h") - HOUR
    assert [t for t, _ in bars] == list(pd.date_range(first_live, periods=N, freq="1h"))

    predictor.fold = {**(predictor.fold or {}), "test_start": first_live.isoformat()}
    first = START.floor("1h") - 60 * HOUR
    frames = {s: crypto_frames[s].loc[first : bars[-1][0]] for s in PAIRS}
    want = _decisions(run_backtest(frames, [predictor], cfg.backtest, record=True).strategy)
    for when, got in bars:
        assert got and _close(got, want[when]), (when, got, want[when])
