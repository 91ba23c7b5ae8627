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
