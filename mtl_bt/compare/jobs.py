"""Job functions executed by workers (importable by name: "mtl_bt.compare.jobs:run_variant")."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_variant(shared: dict[str, Any], workdir: Path, *, config: dict[str, Any]) -> None:
    """Train + backtest one (variant, seed) on the shared frames; artefacts go to ``workdir``.

    A pure function of (config, frames): torch threads are pinned from the config (default 1)
    so local processes and Ray workers produce the same numbers.
    """
    from mtl_bt import pipeline
    from mtl_bt.config import from_dict

    cfg = from_dict(config, "(compare job)")
    pipeline.run(cfg, workdir, frames=shared["frames"], report=False, buy_and_hold=False)
