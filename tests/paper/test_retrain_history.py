"""Retraining jobs: they train on the trailing ``train_bars`` of the source's history (not only
the bars of this session), with the documented seed; with too little history they are
skipped, saying how many bars there were; a job dies with its run, and what a killed run's
job left behind is removed on resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pandas as pd
from data_testkit import ExchangeClock
from paper_testkit import HOUR, START, Lockstep, journal_has, paper_config_dict
from test_crash import _Child
from test_swap_checks import _UntilCollected

from mtl_bt import config as config_mod
from mtl_bt.checkpoint import load as load_checkpoint
from mtl_bt.paper import run_paper
from strategies import Momentum, RetrainProbe


def _events(out: Path):
    db = sqlite3.connect(out / "paper.sqlite")
    try:
        return db.execute("SELECT event, datetime, path, error FROM models ORDER BY seq").fetchall()
    finally:
        db.close()


def test_job_trains_on_train_bars_of_the_source_history_with_the_documented_seed(
    exchange, paper_model, tmp_path
):
    """60 bars of warm-up and 2 decided bars: the session holds 62 bars, train_bars is 300.
    The job completes the history from the source and trains on 300 bars per symbol."""
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    data = paper_config_dict(url)
    data["paper"].update(retrain_every=2, train_bars=300, warmup_bars=60)
    data["training"]["seed"] = 7
    cfg = config_mod.from_dict(data)
    out = tmp_path / "paper"
    with Lockstep(clock, _UntilCollected(out), bars=40):
        run_paper(cfg, paper_model, out, max_bars=40, echo=None, strategy=(RetrainProbe, {}))
    kinds = [e[0] for e in _events(out)]
    assert kinds[:3] == ["start", "job", "swap"], _events(out)
    ckpt = load_checkpoint(out / "models" / "model_001.pt")
    fold = ckpt.fold
    span = (pd.Timestamp(fold["train_end"]) - pd.Timestamp(fold["train_start"])) / HOUR + 1
    assert span == 300, fold  # the fold's train window: train_bars of history, not 62
    assert ckpt.config["training"]["seed"] == 7 + 1  # training.seed + job number (docs)


def test_job_with_too_little_history_is_skipped_saying_how_many_bars(
    exchange, paper_model, tmp_path
):
    """The exchange lists the pairs from 2023-12-31 (about 1,460 hourly bars before the
    start): fewer than half of train_bars = 5000, so the job is skipped, not trained on a
    fraction of what was asked for, and the journal says how many bars there were."""
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    data = paper_config_dict(url)
    data["paper"].update(retrain_every=2, train_bars=5000, warmup_bars=60)
    cfg = config_mod.from_dict(data)
    out = tmp_path / "paper"
    with Lockstep(clock, _UntilCollected(out), bars=3):
        run_paper(cfg, paper_model, out, max_bars=4, echo=None, strategy=(Momentum, {}))
    events = _events(out)
    skipped = [e for e in events if e[0] == "skipped"]
    assert len(skipped) == 1 and not [e for e in events if e[0] in ("swap", "failed")], events
    text = skipped[0][3]
    bars = int(text.split("skipped: ")[1].split(" bars")[0])
    assert 1300 < bars < 1500 and "fewer than 50% of train_bars = 5000" in text, text
    assert not (out / "models" / "model_001.pt").exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "\nState:\tZ" not in fh.read()
    except FileNotFoundError:
        return False


def test_job_dies_with_its_run_and_its_leftovers_are_removed_on_resume(
    exchange, paper_model, tmp_path
):
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    data = paper_config_dict(url)
    data["paper"].update(retrain_every=2, train_bars=200, warmup_bars=200)
    data["training"]["epochs"] = 5000  # trains far longer than the test waits
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(data))
    out = tmp_path / "paper"
    until = START.floor("1h") + 40 * HOUR
    pid_file = out / "models" / ".job_001" / "pid"
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=1):
        child = _Child([str(cfg_path), str(paper_model), str(out), until.isoformat()])
        try:
            deadline = time.monotonic() + 90
            while not pid_file.exists():
                assert time.monotonic() < deadline and child.poll() is None, child.error()
                time.sleep(0.05)
            time.sleep(0.2)
            job = int(pid_file.read_text())
            assert _alive(job)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(job) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(job)
    if alive:
        os.kill(job, signal.SIGKILL)  # leave nothing running, then fail
    assert not alive, "the training job outlived its killed run"
    assert (out / "models" / ".job_001").exists()
    (out / "models" / "model_001.pt").write_bytes(b"as if the orphan had finished")
    # resume: the leftovers go before anything else happens
    cfg = config_mod.from_dict(data)
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=1):
        run_paper(cfg, paper_model, out, max_bars=1, echo=None, strategy=(Momentum, {}))
    assert not list((out / "models").glob(".job_*"))
    assert not (out / "models" / "model_001.pt").exists()
