"""Tiny models and inputs for the architecture tests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mtl_bt import registry
from mtl_bt.tasks.base import TaskSpec

N_FEATURES = 5
LOOKBACK = 6
N_ASSETS = 3

SPECS = [
    TaskSpec("return@1", "return", 1),
    TaskSpec("direction@1", "direction", 1),
    TaskSpec("volatility@5", "volatility", 5),
    TaskSpec("volume@1", "volume", 1),
]


def stage_options(stage: str) -> dict:
    if stage == "asset":
        return {"n_assets": N_ASSETS, "asset_embedding": 3}
    if stage in ("gru", "conv"):
        return {"encoder": stage, "encoder_hidden": 6, "lookback": LOOKBACK}
    return {}


def make(arch: str, stage: str = "plain", specs=SPECS, seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    opts = {"hidden": [8, 6], "dropout": 0.1, **stage_options(stage), **options}
    return registry.get("architecture", arch)(N_FEATURES, specs, **opts)


def inputs(stage: str, batch: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, LOOKBACK, N_FEATURES) if stage in ("gru", "conv") else (batch, N_FEATURES)
    x = torch.randn(shape, generator=gen)
    asset = torch.randint(0, N_ASSETS, (batch,), generator=gen) if stage == "asset" else None
    return x, asset


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above (test modules cannot import conftest under importlib mode)."""
    return SimpleNamespace(
        make=make,
        inputs=inputs,
        specs=SPECS,
        names=[t.name for t in SPECS],
        n_features=N_FEATURES,
        lookback=LOOKBACK,
        n_assets=N_ASSETS,
    )
