"""Scheduled retraining in live time: a separate process, an atomic checkpoint, a swap at a bar.

Every ``[paper] retrain_every`` (a duration such as ``"7d"`` or a bar count) the
run hands the trailing ``train_bars`` bars it has received to a training job in
a **separate process** (the same trainer as ``mtl-bt train``: one purged fold,
purge = the largest task horizon, seed = training.seed + job number). The bar
loop never waits for it. The job writes its checkpoint atomically as
``DIR/models/model_NNN.pt``; at the next bar boundary after it finished the
strategy switches to it (``swap_model``) and the switch is journaled (table
``models``). A failed job keeps the current model and journals the error.
A model whose training data ends more than ``max_model_age`` before the bar
is reported (warning + journal) once; the strategy's ``model_stale`` hook, if
any, can stop new entries.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import UserError
from mtl_bt.paper.state import PaperState, iso, sha256_file

log = logging.getLogger("mtl_bt.paper")


def _train_job(
    config_text: str, frames: dict[str, pd.DataFrame], staging: str, target: str, seed: int
) -> None:
    """Runs in the child process: train one fold on ``frames``, publish atomically."""
    import signal
    import tomllib

    # a forked child inherits the paper loop's SIGINT/SIGTERM handlers (stop after the bar),
    # which would make ``terminate()`` a no-op and leave the job running after the loop ends
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)

    from mtl_bt import config as config_mod
    from mtl_bt.training.pipeline import train_walk_forward

    staging_dir = Path(staging)
    try:
        data = tomllib.loads(config_text)
        cfg = config_mod.from_dict(data)
        n = min(len(f) for f in frames.values())
        from mtl_bt.features import FeatureSpec

        purge = cfg.walk_forward.purge_bars or cfg.max_horizon()
        test = 1
        n -= FeatureSpec.from_config(cfg.features).warmup()
        wf = cfg.walk_forward.model_copy(
            update={
                "scheme": "rolling",
                "train_bars": max(10, n - purge - cfg.walk_forward.embargo_bars - test),
                "test_bars": test,
                "step_bars": None,
                "max_folds": 1,
            }
        )
        training = cfg.training.model_copy(update={"seed": seed})
        cfg = cfg.model_copy(update={"walk_forward": wf, "training": training})
        result = train_walk_forward(cfg, frames, staging_dir / "train")
        checkpoint = Path(result.checkpoints[-1])
        tmp = Path(target + ".tmp")
        shutil.copyfile(checkpoint, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)  # atomic: the run sees no file or a whole checkpoint
    except BaseException:  # noqa: BLE001 - reported to the parent through the error file
        (staging_dir / "error.txt").write_text(traceback.format_exc())
        raise SystemExit(1) from None


def parse_every(value: str | int | None, step: pd.Timedelta) -> int | None:
    """``retrain_every`` as a number of bars."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    from mtl_bt.data.timeframe import parse_timeframe

    return max(1, int(parse_timeframe(str(value)) / step))


class Retrainer:
    """Schedules jobs, watches them, swaps finished models in (driven by the journal)."""

    def __init__(self, cfg: Any, out: Path, state: PaperState, step: pd.Timedelta, seed0: int = 1):
        from mtl_bt import config as config_mod

        self.every = parse_every(cfg.paper.retrain_every, step)
        self.train_bars = int(cfg.paper.train_bars)
        from mtl_bt.data.timeframe import parse_timeframe

        self.max_age = parse_timeframe(cfg.paper.max_model_age) if cfg.paper.max_model_age else None
        self.current_sha: str | None = None
        self.config_text = config_mod.dumps(cfg)
        self.seed0 = int(cfg.training.seed) + seed0
        self.models = out / "models"
        self.state = state
        self.step = step
        self.job: tuple[multiprocessing.Process, int, Path, Path, str] | None = None
        self.jobs = int(
            state.db.execute("SELECT COUNT(*) FROM models WHERE event='job'").fetchone()[0]
        )
        self.since = 0  # decided bars since the last job started
        self.stale_reported = False
        self.strategy_ref: Any = None

    @property
    def enabled(self) -> bool:
        return self.every is not None

    def on_bar(self, strategy: Any, when: pd.Timestamp, predictor: Any) -> None:
        """At a decided bar: swap in a finished job's model, start a due job, check age."""
        self.strategy_ref = strategy
        self._collect(strategy, when)
        self.since += 1
        if self.enabled and self.job is None and self.since >= self.every:
            self._start(strategy, when)
        self._check_age(when, predictor)

    def _frames(self, strategy: Any) -> dict[str, pd.DataFrame]:
        from mtl_bt.backtesting.bars import datenum_index

        out = {}
        for d in strategy.datas:
            size = min(len(d), self.train_bars)
            index = datenum_index(np.asarray(d.datetime.get(size=size)))
            frame = pd.DataFrame(
                {
                    c: np.asarray(getattr(d, c).get(size=size), dtype=np.float64)
                    for c in ("open", "high", "low", "close", "volume")
                },
                index=pd.DatetimeIndex(index, name="datetime"),
            )
            frame.attrs = {"symbol": d._name, "timeframe": None, "source": "paper"}
            out[d._name] = frame
        return out

    def _start(self, strategy: Any, when: pd.Timestamp) -> None:
        self.jobs += 1
        n = self.jobs
        staging = self.models / f".job_{n:03d}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        target = self.models / f"model_{n:03d}.pt"
        # fork: the child starts in milliseconds with torch already imported (it only trains
        # and never touches the parent's threads); spawn where fork does not exist
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        proc = ctx.Process(
            target=_train_job,
            args=(
                self.config_text,
                self._frames(strategy),
                str(staging),
                str(target),
                self.seed0 + n,
            ),
            daemon=True,
        )
        proc.start()
        self.job = (proc, n, staging, target, iso(when))
        self.since = 0
        self.state.record_model("job", str(target), None, iso(when))
        log.info("retraining job %d started at %s", n, iso(when))

    def _collect(self, strategy: Any, when: pd.Timestamp) -> None:
        if self.job is None:
            return
        proc, n, staging, target, started = self.job
        if proc.is_alive():
            return
        proc.join()
        self.job = None
        error_file = staging / "error.txt"
        if proc.exitcode == 0 and target.exists():
            from mtl_bt.predictor import Predictor

            swap = getattr(strategy, "swap_model", None)
            if swap is None:
                self.state.record_model(
                    "failed", str(target), None, iso(when), "strategy has no swap_model"
                )
                return
            try:  # a model the strategy cannot use is a failed job, never a stopped loop
                predictor = Predictor.from_checkpoint(target)
                sha = sha256_file(target)
                swap(predictor, sha)
            except Exception as exc:  # noqa: BLE001 - any refusal or load error: keep trading
                text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                self.state.record_model("failed", str(target), None, iso(when), text)
                log.warning("retrained model %s not used: %s", target.name, text)
                shutil.rmtree(staging, ignore_errors=True)
                return
            self.current_sha = sha
            self.state.record_model("swap", str(target), sha, iso(when))
            self.stale_reported = False
            fresh = getattr(strategy, "model_stale", None)
            if fresh is not None:
                fresh(False)
            log.info("model %s in use from the bar after %s", target.name, iso(when))
        else:
            text = error_file.read_text() if error_file.exists() else f"exit code {proc.exitcode}"
            last = text.strip().splitlines()[-1] if text.strip() else text
            self.state.record_model("failed", str(target), None, iso(when), text)
            log.warning("retraining job %d failed (%s); keeping the current model", n, last)
            failed = getattr(strategy, "retrain_failed", None)
            if failed is not None:
                failed(last)
        shutil.rmtree(staging, ignore_errors=True)

    def _check_age(self, when: pd.Timestamp, predictor: Any) -> None:
        if self.max_age is None or self.stale_reported:
            return
        fold = dict(getattr(predictor, "fold", None) or {})
        end = fold.get("train_end")
        if not end:
            return
        end = pd.Timestamp(end)
        end = end.tz_localize("UTC") if end.tz is None else end
        if when - end > self.max_age:
            self.stale_reported = True
            self.state.record_model("stale", None, None, iso(when), f"trained up to {end}")
            stale = getattr(self.strategy_ref, "model_stale", None)
            if stale is not None:
                stale(True)
            log.warning(
                "the model was trained on bars up to %s, older than max_model_age: no new entries",
                end,
            )

    def close(self) -> None:
        if self.job is not None:
            proc = self.job[0]
            proc.terminate()
            proc.join(timeout=10)
            if proc.is_alive():  # never outlive the paper loop
                proc.kill()
                proc.join(timeout=10)
