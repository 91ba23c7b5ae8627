"""What a swap does when the retrained model is not a drop-in replacement, through the real
retraining path of ``mtl-bt paper`` (a background job, its checkpoint collected at a bar):

- a model the strategy refuses (another lookback) or a checkpoint that cannot be read is
  journaled as ``failed`` with its error; the run keeps trading with the model it had (every
  later bar decided, by that model, under its sha256) and nothing stops;
- a model whose symbols are in another order than the running one's gets its own asset ids:
  with asset embeddings, every symbol's prediction after the swap is the new model's
  ``Predictor.predict`` with that symbol's id in the new model."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from data_testkit import ExchangeClock
from paper_testkit import (
    HOUR,
    PAIRS,
    START,
    Lockstep,
    close_decisions,
    journal_has,
    paper_config_dict,
)

from mtl_bt import config as config_mod
from mtl_bt.cli import main
from mtl_bt.paper import retrain as retrain_mod
from mtl_bt.paper import run_paper
from mtl_bt.paper.reconcile import recorded_decisions
from mtl_bt.paper.state import sha256_file

N = 8  # decided bars: the job starts on the 3rd
WARMUP = 200


def _read(db_path, sql):
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
    except sqlite3.OperationalError:
        return []
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


class _UntilCollected:
    """``ready(newest)``: the newest bar is decided and, while the first training job runs,
    the clock is held until the job has exited, so the very next bar collects it. Never
    holds longer than ``HOLD`` seconds (the assertions then say what went wrong)."""

    HOLD = 120.0

    def __init__(self, out: Path):
        self.db = out / "paper.sqlite"
        self.decided = journal_has(self.db)
        self.held_since: float | None = None

    def __call__(self, newest: pd.Timestamp) -> bool:
        if not self.decided(newest):
            return False
        kinds = [e for (e,) in _read(self.db, "SELECT event FROM models ORDER BY seq")]
        if "job" not in kinds or "swap" in kinds or "failed" in kinds:
            return True
        if self.held_since is None:
            self.held_since = time.monotonic()
        if time.monotonic() - self.held_since > self.HOLD:
            return True
        return not multiprocessing.active_children()  # the job (this process's child) ended


def _journal(out: Path):
    db = sqlite3.connect(out / "paper.sqlite")
    try:
        events = db.execute(
            "SELECT event, datetime, path, sha256, error FROM models ORDER BY seq"
        ).fetchall()
        bars = [
            (pd.Timestamp(t), sha, json.loads(state))
            for t, sha, state in db.execute(
                "SELECT datetime, model_sha256, strategy_state FROM bars ORDER BY seq"
            )
        ]
    finally:
        db.close()
    return events, bars


def _cli_run(url, clock, tmp_path, checkpoint, sections=None) -> tuple:
    data = paper_config_dict(url)
    data["paper"].update(retrain_every=3, train_bars=200, warmup_bars=WARMUP)
    for key, value in (sections or {}).items():
        data[key].update(value)
    cfg = config_mod.from_dict(data)
    path = tmp_path / "paper.toml"
    path.write_text(config_mod.dumps(cfg))
    out = tmp_path / "paper"
    args = ["paper", str(path), "--model", str(checkpoint), "--out", str(out), "--quiet"]
    with Lockstep(clock, _UntilCollected(out), bars=N - 1):
        result = CliRunner().invoke(main, [*args, "--max-bars", str(N)])
    return result, out, cfg


def _kept_the_model(out, cfg, paper_model, crypto_frames, error: str) -> None:
    """The first job's model was journaled as failed (its error naming ``error``); the run
    went on: N bars, each decided, by the original model (sha256 and predictions)."""
    events, bars = _journal(out)
    assert [e[0] for e in events[:3]] == ["start", "job", "failed"], events
    assert not [e for e in events if e[0] == "swap"], events
    failed = events[2]
    assert failed[2] == str(out / "models" / "model_001.pt")
    assert error in failed[4] and "\n" not in failed[4].strip(), failed[4]
    times = [t for t, _, _ in bars]
    first_live = START.floor("1h") - HOUR
    assert times == list(pd.date_range(first_live, periods=N, freq="1h"))
    refused_at = pd.Timestamp(failed[1])
    assert times[2] < refused_at and sum(t > refused_at for t in times) >= 2
    original = sha256_file(paper_model)
    assert all(sha == original for _, sha, _ in bars)

    from mtl_bt.backtesting.runner import load_predictors, run_backtest

    alone = load_predictors(paper_model)[0]
    alone.fold = {**alone.fold, "test_start": first_live.isoformat()}
    first = START.floor("1h") - WARMUP * HOUR
    frames = {s: crypto_frames[s].loc[first : times[-1]] for s in PAIRS}
    want = recorded_decisions(run_backtest(frames, [alone], cfg.backtest, record=True).strategy)
    for when, _, state in bars:  # every bar, before and after the refusal, by the old model
        assert state["decision"] and close_decisions(state["decision"], want[when]), when


def test_retrained_model_with_another_lookback_is_journaled_failed_and_the_run_goes_on(
    exchange, paper_model, tmp_path, crypto_frames
):
    """The config now asks for a conv encoder over 4 bars (a user edited it): the CLI starts
    (the features and tasks still match the model), the real job trains a lookback-4 model,
    and the strategy refuses it: its feature book holds one row per bar of the old model's."""
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    result, out, cfg = _cli_run(
        url,
        clock,
        tmp_path,
        paper_model,
        {"model": {"sequence": {"encoder": "conv", "lookback": 4}}},
    )
    assert result.exit_code == 0, result.output
    _kept_the_model(out, cfg, paper_model, crypto_frames, "lookback")
    # the refused checkpoint really was the job's lookback-4 model
    from mtl_bt.checkpoint import load as load_checkpoint

    assert load_checkpoint(out / "models" / "model_001.pt").lookback == 4


def _truncated_job(source: Path):
    """A training job that publishes (atomically, as the real one) a checkpoint cut off in
    the middle: what a full disk or a broken copy leaves. Only the job is replaced; the
    retrainer collects it and the strategy is asked to swap as for a real one."""

    def job(config_text, frames, staging, target, seed, *rest):
        data = source.read_bytes()
        tmp = Path(target + ".tmp")
        tmp.write_bytes(data[: len(data) // 2])
        tmp.replace(target)

    return job


def test_unreadable_retrained_checkpoint_is_journaled_failed_and_the_run_goes_on(
    exchange, paper_model, tmp_path, crypto_frames, monkeypatch
):
    # the job runs in a forked child of this process, which inherits the replacement
    monkeypatch.setattr(retrain_mod, "_train_job", _truncated_job(Path(paper_model)))
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    result, out, cfg = _cli_run(url, clock, tmp_path, paper_model)
    assert result.exit_code == 0, result.output
    _kept_the_model(out, cfg, paper_model, crypto_frames, "cannot be read")


def test_any_error_while_swapping_is_journaled_failed_and_the_run_goes_on(
    exchange, paper_model, tmp_path, crypto_frames, monkeypatch
):
    """Not only a refusal (a UserError): any exception while loading or swapping the new
    model (here a bug inside swap_model) is a failed job, never a stopped loop."""
    from mtl_bt.paper.strategy import PaperMTLStrategy

    def broken(self, predictor, sha256):
        raise RuntimeError("a bug while swapping")

    monkeypatch.setattr(PaperMTLStrategy, "swap_model", broken)
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    result, out, cfg = _cli_run(url, clock, tmp_path, paper_model)
    assert result.exit_code == 0, result.output
    _kept_the_model(out, cfg, paper_model, crypto_frames, "RuntimeError: a bug while swapping")


# -- asset ids after a swap -------------------------------------------------------------


@pytest.fixture(scope="module")
def reversed_embedding_model(tmp_path_factory, crypto_frames):
    """A real model with an asset embedding, trained on the pairs listed in reverse order:
    its symbols are [SOL, ETH, BTC], so its asset ids are the reverse of the config's."""
    from mtl_bt.training.pipeline import train_walk_forward

    data = paper_config_dict("http://unused")
    data["model"]["asset_embedding"] = 4
    data["data"]["symbols"] = list(reversed(list(PAIRS)))
    cfg = config_mod.from_dict(data)
    end = pd.Timestamp("2024-02-20", tz="UTC")
    frames = {s: crypto_frames[s].loc[:end].iloc[-400:] for s in reversed(list(PAIRS))}
    out = tmp_path_factory.mktemp("embedding_model")
    return train_walk_forward(cfg, frames, out).checkpoints[-1]


def test_swapped_in_model_with_other_symbol_order_gets_its_own_asset_ids(
    exchange, reversed_embedding_model, tmp_path, crypto_frames
):
    """The run's model lists [SOL, ETH, BTC]; the job trains on the feeds in the config's
    order [BTC, ETH, SOL]. After the swap each symbol must be predicted with its id in the
    NEW model (ids kept from the old one would give BTC the embedding row of SOL)."""
    from mtl_bt.predictor import Predictor

    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    data = paper_config_dict(url)
    data["model"]["asset_embedding"] = 4
    data["paper"].update(retrain_every=3, train_bars=200, warmup_bars=WARMUP)
    cfg = config_mod.from_dict(data)
    out = tmp_path / "paper"
    with Lockstep(clock, _UntilCollected(out), bars=N - 1):
        result = run_paper(cfg, reversed_embedding_model, out, max_bars=N, echo=None)
    assert result.bars == N
    events, bars = _journal(out)
    assert [e[0] for e in events[:3]] == ["start", "job", "swap"], events

    old = Predictor.from_checkpoint(reversed_embedding_model)
    models = {sha256_file(reversed_embedding_model): old}
    for event, _, path, sha, _ in events:
        if event == "swap":
            models[sha] = Predictor.from_checkpoint(path)
    new = models[events[2][3]]
    assert old.symbols == list(reversed(list(PAIRS))) and new.symbols == list(PAIRS)
    swapped = pd.Timestamp(events[2][1])
    assert sum(t > swapped for t, _, _ in bars) >= 2

    first = START.floor("1h") - WARMUP * HOUR
    wrong_somewhere = False
    for when, sha, state in bars:
        pred = models[sha]
        assert (pred is old) == (when <= swapped), when
        for symbol in PAIRS:
            feats = pred.features(crypto_frames[symbol].loc[first:when])
            x = feats.loc[[when]].to_numpy()
            (sid,) = pred.asset_ids([symbol])
            want = pred.predict(x, np.array([sid]))
            got = state["decision"][symbol]
            for task, value in want.items():
                assert got[task] == pytest.approx(float(value[0]), rel=1e-5, abs=1e-7), (
                    when,
                    symbol,
                    task,
                )
            if pred is new:  # the old model's id for this symbol would predict otherwise
                (stale,) = old.asset_ids([symbol])
                other = pred.predict(x, np.array([stale]))
                wrong_somewhere |= any(
                    not np.allclose(other[t], want[t], rtol=1e-5, atol=1e-7) for t in want
                )
    assert wrong_somewhere  # the test can tell the right ids from the old model's
