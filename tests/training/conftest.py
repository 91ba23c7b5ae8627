"""Small helpers for the training tests: a tiny model, synthetic frames, tiny configs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import nn

from mtl_bt.config import Config
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.models import MTLModel
from mtl_bt.tasks.base import TaskSpec


class TinyModel(MTLModel):
    """A linear shared layer + one linear head per task (trainer tests, not a plugin)."""

    architecture = "tiny_test"

    def __init__(self, in_features: int, tasks: Sequence[TaskSpec], **common: Any) -> None:
        super().__init__(in_features, tasks, **common)
        self.shared = nn.Sequential(nn.Linear(self.stage_features, 8), nn.Tanh(), nn.Dropout(0.2))
        self.heads = nn.ModuleDict({t.name: nn.Linear(8, 1) for t in self.tasks})

    def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.shared(h)
        return {name: head(z).squeeze(-1) for name, head in self.heads.items()}

    def task_modules(self, name: str) -> list[nn.Module]:
        return [self.heads[name]]

    def last_shared_layer(self) -> nn.Parameter:
        return self.shared[0].weight


def synthetic_frames(n: int = 900, symbols: Sequence[str] = ("AAA", "BBB"), freq: str = "1h"):
    return {
        s: garch_bars(n, seed=i + 1, freq=freq, start="2024-01-01", symbol=s)
        for i, s in enumerate(symbols)
    }


def tiny_config(**sections: dict[str, Any]) -> Config:
    """Few epochs, small widths, 2 folds on ~900 hourly bars."""
    data: dict[str, Any] = {
        "data": {"source": "sample", "symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1h"},
        "features": {"names": ["log_return", "volatility", "rsi", "volume_ratio"]},
        "tasks": [{"name": "return", "horizons": [1]}, {"name": "volatility", "horizons": [4]}],
        "model": {"architecture": "shared_bottom", "hidden": [8], "dropout": 0.0},
        "training": {"epochs": 3, "batch_size": 64, "patience": 2, "seed": 0, "lr": 3e-3},
        "walk_forward": {"train_bars": 400, "test_bars": 150, "max_folds": 2},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Config.model_validate(data)


@pytest.fixture
def frames():
    return synthetic_frames()
