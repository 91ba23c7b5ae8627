"""``mtl-bt run``: data -> walk-forward training -> out-of-sample backtest -> report.

Each fold's model trades only the bars of its own test window (the walk-forward strategy swaps
models at fold boundaries), so every number in the report is out of sample. Every artefact is
written atomically; an interrupted run keeps the files it finished and never leaves a
half-written one.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_bt.config import Config, dumps
from mtl_bt.data.source import clip_frames  # noqa: F401 (re-exported: compare uses it)
from mtl_bt.errors import ConfigError, PluginError
from mtl_bt.report.io import write_csv, write_json, write_parquet, write_text

#: artefacts every finished run folder holds (report files only when enabled)
RUN_ARTEFACTS = (
    "config.toml",
    "data.json",
    "train_log.csv",
    "predictions.parquet",
    "fold_metrics.csv",
    "oos_metrics.csv",
    "metrics.json",
    "returns.csv",
    "orders.csv",
    "trades.csv",
)


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, Any]
    buy_and_hold: dict[str, Any] | None
    report: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Pin torch's intra-op threads for the duration of a job (results must not depend on the
    machine's core count), then restore the caller's setting."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n or 1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def data_summary(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Per-symbol first/last bar and counts: the data ranges shown in reports."""
    out: dict[str, Any] = {}
    for symbol, frame in frames.items():
        out[symbol] = {
            "first": frame.index[0].isoformat() if len(frame) else None,
            "last": frame.index[-1].isoformat() if len(frame) else None,
            "bars": int(len(frame)),
            "timeframe": frame.attrs.get("timeframe"),
            "source": frame.attrs.get("source"),
        }
    return out


def _fold_rows(folds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("fold", "train_start", "train_end", "test_start", "test_end", "n_fit", "epochs_run")
    return [{k: f.get(k) for k in keys if k in f} for f in folds]


def check_config(config: Config) -> None:
    """Build every plugin item the config names, with its options, before any data is loaded
    or any model trained: the source, features, tasks, weighting, architecture, signal rule.
    A typo (``target_voll``) is a one-line error now, not a traceback after training."""
    from mtl_bt.backtesting.runner import build_signal
    from mtl_bt.data.loader import make_source
    from mtl_bt.training import build_components

    source = make_source(config.data.source)
    if getattr(source, "cacheable", False):  # network sources check their options here
        source.cache_namespace(dict(config.data.options))
    build_components(config)
    signal = build_signal(config.backtest)
    heads = getattr(signal, "heads", None)  # the rule's choice of task heads, e.g. return@h
    if callable(heads):
        try:
            heads(config.task_names())
        except PluginError as exc:  # a horizon no task predicts: refused before training
            raise ConfigError(
                f"backtest.signal_options: {exc}; the tasks are {config.task_names()} - add "
                "that horizon to the return task's horizons, or trade one of them"
            ) from None


def load_data(config: Config, *, no_cache: bool = False, progress: bool = False):
    from mtl_bt.data import load_frames

    return load_frames(config.data, no_cache=no_cache, progress=progress)


def oos_start(folds: list[dict[str, Any]]) -> pd.Timestamp | None:
    """First out-of-sample bar (start of fold 0's test window)."""
    if not folds:
        return None
    return pd.Timestamp(min(pd.Timestamp(f["test_start"]) for f in folds))


def _tty_progress(progress: bool) -> bool:
    return progress and sys.stderr.isatty()


def backtest_strategy(
    config: Config,
    frames: Mapping[str, pd.DataFrame],
    checkpoints: list[Path],
    progress: bool = False,
):
    """The walk-forward backtest: every fold's model on its own test window."""
    from mtl_bt.backtesting import run_backtest

    return run_backtest(frames, checkpoints, config.backtest, progress=_tty_progress(progress))


def backtest_buy_and_hold(
    config: Config, frames: Mapping[str, pd.DataFrame], progress: bool = False
):
    """Equal-weight buy-and-hold with the same costs (frames already clipped to the OOS bars)."""
    from mtl_bt.backtesting import run_buy_and_hold

    return run_buy_and_hold(frames, config.backtest, progress=_tty_progress(progress))


def write_evaluation(config: Config, out: Path, frames: Mapping[str, pd.DataFrame], train: Any):
    """The out-of-sample task evaluation of a trained run: EWMA / HAR-RV volatility forecasts
    added to ``predictions.parquet`` (same rows), ``oos_metrics.csv`` (the configured tasks
    score plugin kinds) and ``data.json`` (data ranges and folds)."""
    from mtl_bt.metrics.volatility import add_anchored, add_baselines
    from mtl_bt.report.oos import oos_metrics
    from mtl_bt.tasks import build_tasks

    tasks = {t.name: t for t in build_tasks(config.tasks)}
    predictions = add_anchored(train.predictions, frames, tasks)
    predictions = add_baselines(predictions, frames, train.folds)
    if predictions is not train.predictions:
        write_parquet(out / "predictions.parquet", predictions)
    write_csv(out / "oos_metrics.csv", oos_metrics(predictions, tasks=tasks))
    write_json(
        out / "data.json",
        {
            "symbols": data_summary(frames),
            "folds": _fold_rows(train.folds),
            "summary": {k: v for k, v in train.summary.items() if k != "feature_columns"},
        },
    )


def run(
    config: Config,
    out_dir: str | Path,
    *,
    frames: Mapping[str, pd.DataFrame] | None = None,
    no_cache: bool = False,
    progress: bool = False,
    report: bool = True,
    buy_and_hold: bool = True,
    log: Callable[[str], None] | None = None,
    trained: Any = None,
    name: str | None = None,
) -> RunResult:
    """Run the whole job into ``out_dir``; ``frames`` skips loading (compare shares one load).

    ``trained``: a ``TrainResult`` already written into ``out_dir`` (compare trains each fold
    in its own job and joins them with ``merge_trained``); training is then skipped.
    ``name``: the run's name in the report (default: the folder's; the CLI writes into a
    staging folder, see ``mtl_bt.rundir``).
    """
    from mtl_bt.backtesting import write_outputs
    from mtl_bt.backtesting.runner import metrics_document
    from mtl_bt.training import train_walk_forward

    say = log or (lambda _msg: None)
    if trained is None:
        check_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    write_text(out / "config.toml", dumps(config))

    t = time.perf_counter()
    if frames is None:
        say("loading data")
        frames = load_data(config, no_cache=no_cache, progress=progress)
        from mtl_bt.data.validate import warn_large_gaps

        warn_large_gaps(frames)
    seconds["data"] = time.perf_counter() - t

    t = time.perf_counter()
    if trained is None:
        say(
            f"training {config.model.architecture} + {config.weighting.name} on "
            f"{len(frames)} symbol(s), tasks {', '.join(config.task_names())}"
        )
        with torch_threads(config.training.threads):
            train = train_walk_forward(config, frames, out_dir=out, progress=progress, log=say)
    else:
        train = trained
    seconds["train"] = time.perf_counter() - t
    say(f"trained {len(train.checkpoints)} fold model(s) in {seconds['train']:.1f}s")
    write_evaluation(config, out, frames, train)

    t = time.perf_counter()
    say(f"backtesting {len(train.checkpoints)} fold model(s) out of sample")
    with torch_threads(config.training.threads):
        result = backtest_strategy(config, frames, train.checkpoints, progress)
    write_outputs(result, out)
    metrics = metrics_document(result)
    bh_metrics = None
    if buy_and_hold:
        start = oos_start(train.folds)
        bh = backtest_buy_and_hold(config, clip_frames(frames, start), progress)
        write_outputs(bh, out / "baselines" / "buy_and_hold")
        bh_metrics = metrics_document(bh)
    seconds["backtest"] = time.perf_counter() - t
    say(f"backtests done in {seconds['backtest']:.1f}s")

    written: dict[str, Path] = {}
    if report:
        from mtl_bt.report.run_report import write_run_report

        t = time.perf_counter()
        written = write_run_report(
            out,
            f"mtl-bt run report: {name or out.name}",
            plots_on=config.report.plots,
            html=config.report.html,
        )
        seconds["report"] = time.perf_counter() - t
    return RunResult(out, metrics, bh_metrics, written, seconds)
