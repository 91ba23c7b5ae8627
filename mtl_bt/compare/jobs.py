"""Job functions executed by workers (importable by name, e.g. "mtl_bt.compare.jobs:train_fold").

A (variant, seed) is run as one ``train_fold`` job per walk-forward fold, all in parallel,
then one ``backtest_run`` job that joins the fold models and backtests them out of sample.
Each is a pure function of its parameters and the shared payload: torch threads are pinned
from the config (default 1), so local processes and Ray workers produce the same numbers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def train_fold(shared: dict[str, Any], workdir: Path, *, config: dict[str, Any], fold: int) -> None:
    """Train fold ``fold`` of ``config`` on the shared frames; its run files go to ``workdir``."""
    from mtl_bt.config import from_dict
    from mtl_bt.pipeline import torch_threads
    from mtl_bt.training import train_walk_forward

    cfg = from_dict(config, "(compare job)")
    with torch_threads(cfg.training.threads):
        # a worker runs many fold jobs on the same frames: features and targets once
        train_walk_forward(cfg, shared["frames"], out_dir=workdir, folds=[fold], reuse_dataset=True)


def backtest_run(
    shared: dict[str, Any],
    workdir: Path,
    *,
    config: dict[str, Any],
    fold_jobs: list[str],
    fold_digests: list[str],
) -> None:
    """Join the fold jobs' files (``shared["fold_files"][name]``) into one run folder and
    backtest it: the same files ``mtl-bt run`` writes, without the report.

    ``fold_digests`` is not read: it makes this job's digest change when a fold retrains.
    """
    from mtl_bt import pipeline
    from mtl_bt.config import from_dict
    from mtl_bt.training.pipeline import merge_trained

    cfg = from_dict(config, "(compare job)")
    with tempfile.TemporaryDirectory(prefix="mtl-bt-folds-") as tmp:
        dirs = []
        for k, name in enumerate(fold_jobs):
            folder = Path(tmp) / f"{k:03d}"
            for rel, data in shared["fold_files"][name].items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(data)
            dirs.append(folder)
        trained = merge_trained(dirs, workdir)
    pipeline.run(
        cfg, workdir, frames=shared["frames"], report=False, buy_and_hold=False, trained=trained
    )


def evaluate_run(
    shared: dict[str, Any],
    workdir: Path,
    *,
    config: dict[str, Any],
    fold_jobs: list[str],
    fold_digests: list[str],
) -> None:
    """Join the fold jobs of a single-task model the rule cannot trade alone (no return
    head) and evaluate it out of sample (predictions, oos_metrics.csv), without a backtest:
    it is traded as a member of the single-task ensemble."""
    from mtl_bt import pipeline
    from mtl_bt.config import dumps, from_dict

    cfg = from_dict(config, "(compare job)")
    with tempfile.TemporaryDirectory(prefix="mtl-bt-folds-") as tmp:
        trained = _join_folds(shared, fold_jobs, Path(tmp), workdir)
    pipeline.write_text(workdir / "config.toml", dumps(cfg))
    pipeline.write_evaluation(cfg, workdir, shared["frames"], trained)


def _join_folds(shared: dict[str, Any], names: list[str], tmp: Path, out: Path):
    """Write fold jobs' files under ``tmp`` and merge them into the run folder ``out``."""
    from mtl_bt.training.pipeline import merge_trained

    dirs = []
    for k, name in enumerate(names):
        folder = tmp / f"{k:03d}"
        for rel, data in shared["fold_files"][name].items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        dirs.append(folder)
    return merge_trained(dirs, out)


def backtest_ensemble(
    shared: dict[str, Any],
    workdir: Path,
    *,
    config: dict[str, Any],
    members: dict[str, list[str]],
    member_digests: list[str],
) -> None:
    """Backtest the single-task ensemble of one (architecture, seed): per fold, the fold
    models of every single-task run (``members``: task -> its fold job names) joined into
    one ``EnsemblePredictor``, traded by the configured rule exactly as the MTL model is.

    Writes the files of ``mtl-bt run`` (predictions joined over the members); the members'
    own run folders live under ``members/<task>/``. ``member_digests`` is not read: it
    changes this job's digest when a member retrains.
    """
    from dataclasses import replace

    from mtl_bt import pipeline
    from mtl_bt.compare.ensemble import EnsemblePredictor, merge_predictions
    from mtl_bt.config import from_dict
    from mtl_bt.predictor import Predictor

    cfg = from_dict(config, "(compare job)")
    trained = {}
    with tempfile.TemporaryDirectory(prefix="mtl-bt-members-") as tmp:
        for i, (task, names) in enumerate(members.items()):
            out = workdir / "members" / task
            trained[task] = _join_folds(shared, names, Path(tmp) / f"m{i}", out)
    order = [t for t in cfg.task_names() if t in trained]
    first = trained[order[0]]
    n_folds = len(first.checkpoints)
    if any(len(t.checkpoints) != n_folds for t in trained.values()):
        raise RuntimeError("single-task members have different fold counts; retrain them")
    models = [
        EnsemblePredictor(
            [Predictor.from_checkpoint(trained[t].checkpoints[k]) for t in order], order
        )
        for k in range(n_folds)
    ]
    predictions = merge_predictions(
        [trained[t].predictions[["datetime", "symbol", "fold", t, f"target_{t}"]] for t in order]
    )
    summary = {**first.summary, "tasks": order, "members": {t: f"members/{t}" for t in order}}
    joined = replace(
        first,
        checkpoints=models,
        predictions=predictions,
        task_names=order,
        summary=summary,
        out_dir=workdir,
    )
    import pandas as pd

    pipeline.write_parquet(workdir / "predictions.parquet", predictions)
    for table in ("train_log", "fold_metrics"):  # the members' tables, with a member column
        parts = [getattr(trained[t], table).assign(member=t) for t in order]
        pipeline.write_csv(workdir / f"{table}.csv", pd.concat(parts, ignore_index=True))
    pipeline.run(
        cfg, workdir, frames=shared["frames"], report=False, buy_and_hold=False, trained=joined
    )


def _fold_predictors(shared: dict[str, Any], names: list[str], tmp: Path) -> tuple[Any, list[Any]]:
    """The joined ``TrainResult`` of fold jobs (written under ``tmp``) and its fold models
    loaded into memory (they outlive ``tmp``)."""
    from mtl_bt.predictor import Predictor

    trained = _join_folds(shared, names, tmp / "folds", tmp / "run")
    return trained, [Predictor.from_checkpoint(c) for c in trained.checkpoints]


def backtest_baseline(
    shared: dict[str, Any],
    workdir: Path,
    *,
    config: dict[str, Any],
    fold_jobs: list[str],
    fold_digests: list[str],
    model: str,
) -> None:
    """One simple baseline (``model``: ``linear`` or ``lightgbm``) of one seed: fitted per fold
    on the MTL run's own rows (``mtl_bt.compare.baselines.fit_baselines``), evaluated out of
    sample and traded by the configured rule through the borrowed fold models' feature
    pipeline and dates (``BaselinePredictor``). Writes the files of ``mtl-bt run``."""
    from dataclasses import replace

    import pandas as pd

    from mtl_bt import pipeline
    from mtl_bt.compare.baselines import BaselinePredictor, fit_baselines, traded_precomputed
    from mtl_bt.config import from_dict

    cfg = traded_precomputed(from_dict(config, "(compare job)"))
    with tempfile.TemporaryDirectory(prefix="mtl-bt-baseline-") as tmp:
        trained, predictors = _fold_predictors(shared, fold_jobs, Path(tmp))
    fitted = fit_baselines(cfg, shared["frames"], [model])
    by_fold = {fb.fold: fb for fb in fitted.folds}
    models = [BaselinePredictor(p, by_fold[int(p.fold["fold"])], model) for p in predictors]
    predictions = fitted.predictions.drop(columns="model")
    fold_metrics = fitted.metrics.drop(columns="model")
    names = [t for t in trained.task_names if t in predictions]
    summary = {**trained.summary, "tasks": names, "baseline": model}
    joined = replace(
        trained,
        checkpoints=models,
        predictions=predictions,
        fold_metrics=fold_metrics,
        train_log=pd.DataFrame(),
        task_names=names,
        summary=summary,
        out_dir=workdir,
        models=[],
    )
    pipeline.write_parquet(workdir / "predictions.parquet", predictions)
    pipeline.write_csv(workdir / "fold_metrics.csv", fold_metrics)
    pipeline.run(
        cfg, workdir, frames=shared["frames"], report=False, buy_and_hold=False, trained=joined
    )


def placebo_run(
    shared: dict[str, Any],
    workdir: Path,
    *,
    config: dict[str, Any],
    fold_jobs: list[str],
    fold_digests: list[str],
    draws: int,
    seed: int = 0,
) -> None:
    """Placebo backtests of one (variant, seed) (``mtl_bt.compare.placebo.study``): its fold
    models with their predictions block-shuffled in time (``draws`` times) and lagged, the
    rule and costs unchanged; writes ``placebo.json``."""
    import json

    from mtl_bt.compare.placebo import study
    from mtl_bt.config import from_dict
    from mtl_bt.pipeline import torch_threads, write_text

    cfg = from_dict(config, "(compare job)")
    with tempfile.TemporaryDirectory(prefix="mtl-bt-placebo-") as tmp:
        _, predictors = _fold_predictors(shared, fold_jobs, Path(tmp))
    with torch_threads(cfg.training.threads):
        result = study(shared["frames"], predictors, cfg.backtest, draws=draws, seed=seed)
    write_text(workdir / "placebo.json", json.dumps(result, indent=1))
