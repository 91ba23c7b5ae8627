"""Task.initial_output is the loss-minimising constant raw output (the trainer
starts each head there)."""

import numpy as np
import pytest
import torch

from mtl_bt import registry
from mtl_bt.data.synthetic import garch_bars


@pytest.mark.parametrize("kind", ["return", "direction", "volatility", "volume"])
def test_initial_output_minimises_the_constant_loss(kind):
    task = registry.get("task", kind)(horizon=3)
    target = task.build_target(garch_bars(600, seed=3)).to_numpy()
    y = torch.tensor(target[np.isfinite(target)], dtype=torch.float32)
    c = task.initial_output(y)
    assert c is not None and np.isfinite(c)

    def loss_at(value: float) -> float:
        return float(task.loss(torch.full_like(y, value), y))

    best = loss_at(c)
    for step in (1e-3, 1e-2, 1e-1):
        assert best <= loss_at(c + step) + 1e-7
        assert best <= loss_at(c - step) + 1e-7


def test_trainer_starts_heads_at_the_constant_optimum():
    from mtl_bt.config import ModelConfig
    from mtl_bt.models import build_model
    from mtl_bt.training.trainer import _start_heads_at_constant_optimum

    tasks = [
        registry.get("task", "volatility")(horizon=1),
        registry.get("task", "direction")(horizon=1),
    ]
    model = build_model(ModelConfig(hidden=[8]), 4, [t.spec for t in tasks])

    class Train:
        y = torch.tensor([[0.01, 1.0], [0.01, 0.0], [0.01, 1.0], [0.01, 1.0]])

        def __len__(self):
            return 4

    _start_heads_at_constant_optimum(model, tasks, Train())
    # QLIKE on log variance: the constant optimum is log(mean(vol^2))
    assert model.output_layer("volatility@1").bias.item() == pytest.approx(np.log(1e-4), rel=1e-5)
    assert model.output_layer("direction@1").bias.item() == pytest.approx(np.log(3.0), rel=1e-5)
