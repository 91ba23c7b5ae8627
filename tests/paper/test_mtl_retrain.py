"""A model swap inside the real MTLStrategy: ``mtl-bt paper`` with ``[paper] retrain_every``
trains a real model in a background process while bars keep being decided, swaps it in at
a bar boundary, and every later bar is decided by the NEW model: the predictions journaled
with each bar and the fills equal a backtest of the same bars in which the old model decides
up to the swap and the new one after it (and differ from the old model's own)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from data_testkit import ExchangeClock
from paper_testkit import HOUR, PAIRS, START, Lockstep, journal_has, paper_config_dict
from paper_testkit import close_decisions as _close

from mtl_bt import config as config_mod
from mtl_bt.cli import main
from mtl_bt.errors import CheckpointError
from mtl_bt.paper.reconcile import recorded_decisions as _decisions
from mtl_bt.paper.state import sha256_file

N = 12  # decided bars: the job starts on the 3rd, the swap comes on the 6th
WARMUP = 200


def _read(db_path, sql, args=()):
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
    except sqlite3.OperationalError:
        return []
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


class _Paced:
    """``ready(newest)`` for the exchange clock. The training job is paused (SIGSTOP) as soon
    as it starts and only resumed once two more bars were decided: those bars were decided
    while the job was training, however fast it trains. Then the clock waits until the job
    has published its model and exited, so the swap comes on the very next bar. Never raises
    (it runs in the clock's thread) and never holds the clock longer than ``HOLD`` seconds."""

    HOLD = 60.0

    def __init__(self, out):
        self.db = out / "paper.sqlite"
        self.model = out / "models" / "model_001.pt"
        self.decided = journal_has(self.db)
        self.paused: int | None = None
        self.missed = False  # the job had ended before it could be paused
        self.resumed = False
        self.held_since: float | None = None

    @staticmethod
    def jobs() -> list[multiprocessing.Process]:
        """The run's training jobs: the only processes this test process starts."""
        return multiprocessing.active_children()

    def __call__(self, newest: pd.Timestamp) -> bool:
        if not self.decided(newest):
            return False
        events = _read(self.db, "SELECT event, datetime FROM models ORDER BY seq")
        started = [t for e, t in events if e == "job"]
        if not started or self.missed or any(e == "swap" for e, _ in events):
            return True
        if self.paused is None:
            jobs = self.jobs()
            if not jobs:
                self.missed = True
                return True
            self.paused = jobs[0].pid
            os.kill(self.paused, signal.SIGSTOP)
            return True
        after = _read(self.db, "SELECT COUNT(*) FROM bars WHERE datetime > ?", (started[0],))
        if after[0][0] < 2:
            return True
        self.release()
        if self.held_since is None:
            self.held_since = time.monotonic()
        if time.monotonic() - self.held_since > self.HOLD:
            return True  # something is wrong: let the run end, the assertions say what
        return self.model.exists() and not self.jobs()

    def release(self) -> None:
        if self.paused is not None and not self.resumed:
            self.resumed = True
            try:
                os.kill(self.paused, signal.SIGCONT)
            except ProcessLookupError:
                pass


def test_retrained_model_decides_every_bar_after_the_swap(
    exchange, paper_model, tmp_path, crypto_frames
):
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    data = paper_config_dict(url)
    data["paper"].update(retrain_every=3, train_bars=200, warmup_bars=WARMUP)
    data["training"]["epochs"] = 30  # the job trains for a while: it is caught and paused
    cfg = config_mod.from_dict(data)
    path = tmp_path / "paper.toml"
    path.write_text(config_mod.dumps(cfg))
    out = tmp_path / "paper"
    args = ["paper", str(path), "--model", str(paper_model), "--out", str(out)]
    paced = _Paced(out)
    try:
        with Lockstep(clock, paced, bars=N - 1):
            result = CliRunner().invoke(main, [*args, "--max-bars", str(N), "--quiet"])
    finally:
        paced.release()
    assert result.exit_code == 0, result.output

    db = sqlite3.connect(out / "paper.sqlite")
    events = db.execute("SELECT event, datetime, path, sha256 FROM models ORDER BY seq").fetchall()
    assert [e[0] for e in events[:3]] == ["start", "job", "swap"], events
    bars = [
        (pd.Timestamp(t), sha, json.loads(state))
        for t, sha, state in db.execute(
            "SELECT datetime, model_sha256, strategy_state FROM bars ORDER BY seq"
        )
    ]
    times = [t for t, _, _ in bars]
    first_live = START.floor("1h") - HOUR
    assert times == list(pd.date_range(first_live, periods=N, freq="1h"))
    started, swapped = pd.Timestamp(events[1][1]), pd.Timestamp(events[2][1])
    assert started == times[2] and swapped == times[5], (
        paced.missed,
        paced.paused,
        paced.resumed,
        events,
    )
    # trading went on while the job trained (it was paused for two bars), and the swap came
    # at the first bar boundary after it finished
    assert not paced.missed and paced.resumed and sum(started < t < swapped for t in times) == 2
    # every swap in order: (bar it came on, checkpoint, sha); the journal names the model
    # in use on each bar: the first model up to the first swap, then each swapped-in one
    swaps = [(pd.Timestamp(t), p, s) for e, t, p, s in events if e == "swap"]
    original = sha256_file(paper_model)
    for when, sha, _ in bars:
        used = [s for t, _, s in swaps if t < when]
        assert sha == (used[-1] if used else original), when
    assert swaps[0][2] == sha256_file(swaps[0][1]) != original
    assert sum(t > swapped for t in times) >= 3

    # the backtest of the same bars: the old model decides up to the swap, each new model
    # from the bar after its swap on (its own predictor, loaded from the journaled path)
    from mtl_bt.backtesting.runner import load_predictors, run_backtest
    from mtl_bt.predictor import Predictor

    old = load_predictors(paper_model)[0]
    chain = [old] + [Predictor.from_checkpoint(p) for _, p, _ in swaps]
    starts = [first_live] + [t + HOUR for t, _, _ in swaps]
    for k, pred in enumerate(chain):
        end = starts[k + 1] - HOUR if k + 1 < len(chain) else None
        window = {"fold": k, "test_start": starts[k].isoformat(), "test_end": end}
        pred.fold = {**pred.fold, **window}
    first = START.floor("1h") - WARMUP * HOUR
    frames = {s: crypto_frames[s].loc[first : times[-1]] for s in PAIRS}
    swapped_bt = run_backtest(frames, chain, cfg.backtest, record=True)
    alone = load_predictors(paper_model)[0]
    alone.fold = {**alone.fold, "test_start": first_live.isoformat()}
    old_bt = run_backtest(frames, [alone], cfg.backtest, record=True)
    want, old_only = _decisions(swapped_bt.strategy), _decisions(old_bt.strategy)
    for when, _, state in bars:
        got = state["decision"]
        assert got and _close(got, want[when]), when  # the model the backtest used there
        if when <= swapped:
            assert _close(got, old_only[when]), when
        else:  # decided by the new model, not the old one
            assert not _close(got, old_only[when]), when

    # and the fills equal that backtest's, to 1e-6
    expect = swapped_bt.orders[swapped_bt.orders["status"] == "completed"].reset_index(drop=True)
    got = pd.read_csv(out / "orders.csv")
    got = got[got["status"] == "completed"].reset_index(drop=True)
    assert len(got) == len(expect) > 0
    assert list(got["symbol"]) == list(expect["symbol"])
    assert list(got["side"]) == list(expect["side"])
    for col in ("size", "price", "commission"):
        np.testing.assert_allclose(got[col], expect[col], rtol=0, atol=1e-6)

    # mtl-bt reconcile finds the same from the journal alone: its models, swapped at its bars
    rec = CliRunner().invoke(main, ["reconcile", str(out)])
    assert rec.exit_code == 0, rec.output
    assert f"identical: {N} decided bars" in rec.output and "2 model(s)" in rec.output


def test_swap_to_a_model_with_other_features_is_refused(paper_model, tmp_path):
    """The feature book holds the running model's features: another model's would be wrong."""
    from mtl_bt.checkpoint import load as load_checkpoint
    from mtl_bt.paper.strategy import PaperMTLStrategy
    from mtl_bt.predictor import Predictor

    strat = PaperMTLStrategy.__new__(PaperMTLStrategy)
    strat.predictors = [Predictor.from_checkpoint(paper_model)]
    other = Predictor(load_checkpoint(paper_model))
    other.lookback = 4
    with pytest.raises(CheckpointError, match="lookback"):
        strat.swap_model(other, "0" * 64)
    assert strat.predictors[0] is not other


def test_a_refused_swap_leaves_the_strategy_as_it_was(paper_model):
    """A model refused at the last check (its asset ids: a symbol it was not trained on)
    must not leave the strategy half swapped: model, fold schedule, ids and sha unchanged."""
    import types

    from paper_testkit import PAIRS

    from mtl_bt.checkpoint import load as load_checkpoint
    from mtl_bt.paper.strategy import PaperMTLStrategy
    from mtl_bt.predictor import Predictor

    strat = PaperMTLStrategy.__new__(PaperMTLStrategy)
    strat.predictors = [Predictor.from_checkpoint(paper_model)]
    strat.streaming, strat.preds, strat._raw = True, None, None
    strat.symbols = list(PAIRS)
    strat.datas = [types.SimpleNamespace(_name=s) for s in PAIRS]
    strat.schedule, strat.asset_ids, strat.model_sha256 = "schedule", "ids", "a" * 64
    other = Predictor(load_checkpoint(paper_model))
    other.symbols = list(PAIRS)[:2]  # trained without the third pair, with an embedding
    other._uses_asset = lambda: True
    before = list(strat.predictors)
    with pytest.raises(CheckpointError, match="training set"):
        strat.swap_model(other, "b" * 64)
    assert strat.predictors == before
    assert (strat.schedule, strat.asset_ids, strat.model_sha256) == ("schedule", "ids", "a" * 64)
