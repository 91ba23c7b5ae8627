"""Scheduled retraining in live time: a separate process, an atomic checkpoint, a swap at a bar.

Every ``[paper] retrain_every`` (a duration such as ``"7d"`` or a bar count) a
training job starts in a **separate process** (the same trainer as ``mtl-bt
train``: one purged fold, purge = the largest task horizon, seed = training.seed
+ job number) on the trailing ``train_bars`` bars of the source's history: the
bars the run received, completed from the source (its cache first, then its REST
download), not only this session's bars. With fewer than half of ``train_bars``
available the job is skipped (journaled ``skipped``, tried again when next due);
otherwise it trains on what there is and says how many. The job dies with the run
(PR_SET_PDEATHSIG on Linux, a watchdog elsewhere); a resumed run removes what a
killed run's job left. The bar loop never waits for it. The job writes its checkpoint atomically as
``DIR/models/model_NNN.pt``; at the next bar boundary after it finished the
strategy switches to it (``swap_model``) and the switch is journaled (table
``models``). A failed job keeps the current model and journals the error.
The model-age guard runs **before** the strategy decides each live bar (the
journal calls :meth:`Retrainer.before_bar` ahead of the strategy's ``next``),
so it holds on the first bar after a start or a resume too: a model whose
training data ends more than ``max_model_age`` before the bar is stale, the
strategy's ``model_stale(True)`` hook stops new entries, and a ``stale`` event
naming that model (path, sha256, end of its training data) is journaled once per
model. The age is always that of the model in use on the bar (after a swap, the
new one).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import UserError
from mtl_bt.paper.state import PaperState, iso, sha256_file

log = logging.getLogger("mtl_bt.paper")


#: a job trains when at least this fraction of ``train_bars`` is available, else it is skipped
MIN_TRAIN_FRACTION = 0.5
#: exit code of a job skipped for too little history (not a failure: retried when next due)
SKIPPED = 3


def _die_with_parent(parent: int) -> None:
    """The job must not outlive the paper run (a SIGKILLed run cannot stop it): on Linux the
    kernel kills it when its parent dies (PR_SET_PDEATHSIG); elsewhere a watchdog thread
    ends it once it has been re-parented."""
    import signal
    import sys
    import threading
    import time

    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the run died before the signal was armed
        os._exit(1)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="mtl-bt-job-watchdog", daemon=True).start()


def history_frames(
    cfg: Any, frames: dict[str, pd.DataFrame], source: Any, bars: int, step: pd.Timedelta
) -> dict[str, pd.DataFrame]:
    """The trailing ``bars`` bars per symbol: the source's history (cache first, then its REST
    download) under the bars the run received (those win where both have a bar). Without a
    source, or when it cannot be reached, the run's own bars."""
    if source is None or not frames:
        return frames
    end = max(f.index[-1] for f in frames.values() if len(f)) + step
    try:
        loaded = source.history(list(frames), end - bars * step, end)
    except Exception as exc:  # noqa: BLE001 - the run's own bars are still a history
        log.warning("retraining: the source's history could not be read (%s); using the run's", exc)
        return frames
    out = {}
    for symbol, own in frames.items():
        more = loaded.get(symbol)
        if more is None or more.empty:
            out[symbol] = own
            continue
        more = more[list(own.columns)].astype(np.float64)
        both = pd.concat([more[more.index < end], own])
        both = both[~both.index.duplicated(keep="last")].sort_index()
        frame = both.iloc[-bars:]
        frame.index.name = own.index.name
        frame.attrs = dict(own.attrs)
        out[symbol] = frame
    return out


def _train_job(
    config_text: str,
    frames: dict[str, pd.DataFrame],
    staging: str,
    target: str,
    seed: int,
    source: Any = None,
    parent: int | None = None,
) -> None:
    """Runs in the child process: train one fold on the trailing ``train_bars`` of the
    history, publish atomically (module docstring)."""
    import signal
    import tomllib

    # a forked child inherits the paper loop's SIGINT/SIGTERM handlers (stop after the bar),
    # which would make ``terminate()`` a no-op and leave the job running after the loop ends
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    if parent is not None:
        _die_with_parent(parent)
    staging_dir = Path(staging)
    (staging_dir / "pid").write_text(str(os.getpid()))

    from mtl_bt import config as config_mod
    from mtl_bt.training.pipeline import train_walk_forward

    try:
        data = tomllib.loads(config_text)
        cfg = config_mod.from_dict(data)
        from mtl_bt.data.timeframe import parse_timeframe
        from mtl_bt.features import FeatureSpec

        purge = cfg.walk_forward.purge_bars or cfg.max_horizon()
        test = 1
        extra = FeatureSpec.from_config(cfg.features).warmup() + purge
        extra += cfg.walk_forward.embargo_bars + test
        want = int(cfg.paper.train_bars)
        if source is not None:
            step = parse_timeframe(cfg.data.timeframe or "1h")
            frames = history_frames(cfg, frames, source, want + extra, step)
        have = min(len(f) for f in frames.values()) - extra
        (staging_dir / "bars").write_text(str(have))
        if have < max(10, MIN_TRAIN_FRACTION * want):
            (staging_dir / "error.txt").write_text(
                f"skipped: {max(have, 0)} bars per symbol to train on, fewer than "
                f"{MIN_TRAIN_FRACTION:.0%} of train_bars = {want}; retried when next due"
            )
            raise SystemExit(SKIPPED)
        wf = cfg.walk_forward.model_copy(
            update={
                "scheme": "rolling",
                "train_bars": min(want, have),
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
    except SystemExit:
        raise
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


@dataclass(frozen=True)
class ModelInUse:
    """The model deciding the bars: its checkpoint, sha256 and the end of its training data."""

    path: str
    sha256: str
    train_end: pd.Timestamp | None

    @classmethod
    def of(cls, path: str | Path, sha256: str, predictor: Any) -> ModelInUse:
        end = dict(getattr(predictor, "fold", None) or {}).get("train_end")
        if end:
            end = pd.Timestamp(end)
            end = end.tz_localize("UTC") if end.tz is None else end
        return cls(str(path), sha256, end or None)


class Retrainer:
    """Schedules jobs, watches them, swaps finished models in, guards the model's age
    (driven by the journal)."""

    def __init__(
        self,
        cfg: Any,
        out: Path,
        state: PaperState,
        step: pd.Timedelta,
        model: ModelInUse,
        source: Any = None,
    ):
        from mtl_bt import config as config_mod

        self.every = parse_every(cfg.paper.retrain_every, step)
        self.train_bars = int(cfg.paper.train_bars)
        from mtl_bt.data.timeframe import parse_timeframe

        self.max_age = parse_timeframe(cfg.paper.max_model_age) if cfg.paper.max_model_age else None
        self.in_use = model
        self.stale: bool | None = None  # what the strategy was last told
        self.config_text = config_mod.dumps(cfg)
        self.seed0 = int(cfg.training.seed)  # job n trains with training.seed + n
        self.source = source
        from mtl_bt.features import FeatureSpec

        # bars a job needs beyond train_bars: feature warm-up, purge, embargo, one test bar
        self.extra = FeatureSpec.from_config(cfg.features).warmup() + 1
        self.extra += cfg.walk_forward.purge_bars or cfg.max_horizon()
        self.extra += cfg.walk_forward.embargo_bars
        self.models = out / "models"
        self.state = state
        self.step = step
        self.job: tuple[multiprocessing.Process, int, Path, Path, str] | None = None
        self.jobs = int(
            state.db.execute("SELECT COUNT(*) FROM models WHERE event='job'").fetchone()[0]
        )
        self.since = 0  # decided bars since the last job started
        self._clean_leftovers()
        #: models already reported stale (one ``stale`` event per model, across resumes)
        self.reported = {
            sha for (sha,) in state.db.execute("SELECT sha256 FROM models WHERE event='stale'")
        }

    def _clean_leftovers(self) -> None:
        """A run killed while a job trained leaves its staging folder and maybe a model no
        one will use (the job died with the run, or finished after it): both go."""
        if not self.models.exists():
            return
        for leftover in self.models.glob(".job_*"):
            shutil.rmtree(leftover, ignore_errors=True)
            log.info("removed %s, left by a job of a run that stopped", leftover)
        for tmp in self.models.glob("*.pt.tmp"):
            tmp.unlink(missing_ok=True)
        done = {p for (p,) in self.state.db.execute(
            "SELECT path FROM models WHERE event IN ('swap', 'failed', 'skipped')"
        )}  # fmt: skip
        for (path,) in self.state.db.execute("SELECT path FROM models WHERE event='job'"):
            if path not in done and Path(path).exists():
                Path(path).unlink()
                log.info("removed %s: its job's run stopped before it could be used", path)

    @property
    def enabled(self) -> bool:
        return self.every is not None

    def before_bar(self, strategy: Any, when: pd.Timestamp) -> None:
        """Before the strategy decides the live bar ``when``: the model-age guard."""
        if self.max_age is None:
            return
        model = self.in_use
        stale = model.train_end is not None and when - model.train_end > self.max_age
        if stale != self.stale:
            self.stale = stale
            hook = getattr(strategy, "model_stale", None)
            if hook is not None:
                hook(stale)
        if stale and model.sha256 not in self.reported:
            self.reported.add(model.sha256)
            name = Path(model.path).name
            text = (
                f"{name} trained up to {model.train_end.isoformat()}, "
                f"{when - model.train_end} before this bar > max_model_age"
            )
            self.state.record_model("stale", model.path, model.sha256, iso(when), text)
            log.warning("%s: %s: no new entries", iso(when), text)

    def on_bar(self, strategy: Any, when: pd.Timestamp) -> None:
        """After a decided bar: swap in a finished job's model (it decides from the next
        bar on), start a due job."""
        self._collect(strategy, when)
        self.since += 1
        if self.enabled and self.job is None and self.since >= self.every:
            self._start(strategy, when)

    def _frames(self, strategy: Any) -> dict[str, pd.DataFrame]:
        from mtl_bt.backtesting.bars import datenum_index

        out = {}
        for d in strategy.datas:
            size = min(len(d), self.train_bars + self.extra)
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
                self.source,
                os.getpid(),
            ),
            daemon=True,
        )
        proc.start()
        self.job = (proc, n, staging, target, iso(when))
        self.since = 0
        self.state.record_model("job", str(target), None, iso(when))
        log.info(
            "retraining job %d started at %s (seed %d, the trailing train_bars = %d bars of "
            "the history)",
            n, iso(when), self.seed0 + n, self.train_bars,
        )  # fmt: skip

    def _collect(self, strategy: Any, when: pd.Timestamp) -> None:
        if self.job is None:
            return
        proc, n, staging, target, started = self.job
        if proc.is_alive():
            return
        proc.join()
        self.job = None
        error_file = staging / "error.txt"
        bars = staging / "bars"
        if bars.exists():
            log.info("retraining job %d trained on %s bars per symbol", n, bars.read_text())
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
            self.in_use = ModelInUse.of(target, sha, predictor)
            self.state.record_model("swap", str(target), sha, iso(when))
            log.info("model %s in use from the bar after %s", target.name, iso(when))
        elif proc.exitcode == SKIPPED and error_file.exists():
            text = error_file.read_text().strip()
            self.state.record_model("skipped", str(target), None, iso(when), text)
            log.warning("retraining job %d %s; keeping the current model", n, text)
        else:
            text = error_file.read_text() if error_file.exists() else f"exit code {proc.exitcode}"
            last = text.strip().splitlines()[-1] if text.strip() else text
            self.state.record_model("failed", str(target), None, iso(when), text)
            log.warning("retraining job %d failed (%s); keeping the current model", n, last)
            failed = getattr(strategy, "retrain_failed", None)
            if failed is not None:
                failed(last)
        shutil.rmtree(staging, ignore_errors=True)

    def close(self) -> None:
        if self.job is not None:
            proc = self.job[0]
            proc.terminate()
            proc.join(timeout=10)
            if proc.is_alive():  # never outlive the paper loop
                proc.kill()
                proc.join(timeout=10)
