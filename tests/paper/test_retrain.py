"""Scheduled retraining: a real training job in a separate process while bars keep being
decided; its checkpoint swapped in at a bar boundary and journaled; a failing job keeps the
current model and journals the error."""

from __future__ import annotations

import sqlite3

import pandas as pd
from data_testkit import ExchangeClock
from paper_testkit import START, Lockstep, journal_has, paper_config_dict

from mtl_bt import config as config_mod
from mtl_bt.checkpoint import load as load_checkpoint
from mtl_bt.paper import run_paper
from strategies import RetrainProbe


def _run(url, out, model, clock, **paper):
    data = paper_config_dict(url)
    data["paper"].update(paper)
    cfg = config_mod.from_dict(data)
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=400):
        return run_paper(cfg, model, out, max_bars=400, echo=None, strategy=(RetrainProbe, {}))


def _events(out):
    db = sqlite3.connect(out / "paper.sqlite")
    try:
        return db.execute(
            "SELECT event, datetime, path, sha256, error FROM models ORDER BY seq"
        ).fetchall()
    finally:
        db.close()


def test_retrained_in_background_swapped_at_bar_boundary(exchange, paper_model, tmp_path):
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    out = tmp_path / "paper"
    result = _run(url, out, paper_model, clock, retrain_every=3, train_bars=200, warmup_bars=200)
    events = _events(out)
    kinds = [e[0] for e in events]
    assert kinds[:3] == ["start", "job", "swap"], events
    job, swap = events[1], events[2]
    started, swapped = pd.Timestamp(job[1]), pd.Timestamp(swap[1])
    db = sqlite3.connect(out / "paper.sqlite")
    bars = [pd.Timestamp(t) for (t,) in db.execute("SELECT datetime FROM bars")]
    shas = dict(db.execute("SELECT datetime, model_sha256 FROM bars"))
    # trading went on while the job trained: bars were decided after it started, before the swap
    assert sum(started < t <= swapped for t in bars) >= 1
    assert bars[2] == started  # the job started on the 3rd decided bar
    # the new checkpoint is a real, safely loadable model, published under DIR/models/
    assert swap[2].startswith(str(out / "models")) and len(swap[3]) == 64
    ckpt = load_checkpoint(swap[2])
    assert ckpt.fold["train_end"] is not None
    # the journal names the new model from the bar after the swap on
    after = [t for t in bars if t > swapped]
    assert after and all(shas[t.isoformat()] == swap[3] for t in after)
    assert all(shas[t.isoformat()] != swap[3] for t in bars if t <= swapped)
    assert result.stopped_by == "until" or result.bars == len(bars)


def test_failed_retraining_keeps_model_and_records_error(
    exchange, paper_model, tmp_path, monkeypatch
):
    from mtl_bt.training import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("the trainer broke")

    # the job runs in a forked child of this process, which inherits the replacement
    monkeypatch.setattr(pipeline, "train_walk_forward", broken)
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    out = tmp_path / "paper"
    data = paper_config_dict(url)
    data["paper"].update(retrain_every=2, train_bars=100, warmup_bars=60)
    cfg = config_mod.from_dict(data)
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=400):
        run_paper(cfg, paper_model, out, max_bars=400, echo=None, strategy=(RetrainProbe, {}))
    events = _events(out)
    failed = [e for e in events if e[0] == "failed"]
    assert failed and "RuntimeError: the trainer broke" in failed[0][4]  # the error, journaled
    assert not [e for e in events if e[0] == "swap"]
