"""A small real MTLModel for weighting tests: shared Linear layers + one Linear head per task."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import nn

from mtl_bt.models.base import MTLModel
from mtl_bt.tasks.base import TaskSpec

TASKS = ["direction@1", "return@1", "volatility@1", "volume@1"]


class TinyMTL(MTLModel):
    """Shared trunk Linear-ReLU-Linear-ReLU, then one Linear(hidden, 1) head per task."""

    def __init__(self, in_features: int, tasks: Sequence[TaskSpec], hidden: int = 16) -> None:
        super().__init__(in_features, tasks)
        self.trunk = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.heads = nn.ModuleDict({t.name.replace("@", "_"): nn.Linear(hidden, 1) for t in tasks})

    def forward(self, x, asset=None):
        z = self.trunk(x)
        return {t.name: self.heads[t.name.replace("@", "_")](z).squeeze(-1) for t in self.tasks}

    def shared_parameters(self):
        return list(self.trunk.parameters())

    def task_parameters(self, name):
        return list(self.heads[name.replace("@", "_")].parameters())

    def last_shared_layer(self):
        return self.trunk[2].weight


class NoSharedMTL(TinyMTL):
    """Same network, but declares no shared parameters (like soft sharing)."""

    def shared_parameters(self):
        return []


def specs(names: Sequence[str]) -> list[TaskSpec]:
    return [TaskSpec(n, n.split("@")[0], int(n.split("@")[1])) for n in names]


def make_model(names: Sequence[str] = TASKS, in_features: int = 5, seed: int = 0, cls=TinyMTL):
    torch.manual_seed(seed)
    return cls(in_features, specs(names))


def make_losses(model: MTLModel, seed: int = 1, scale: float = 1.0, n: int = 32):
    """Real per-task losses of one forward pass on random data."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model.in_features, generator=g)
    out = model(x)
    losses = {}
    for i, name in enumerate(model.task_names):
        y = torch.randn(n, generator=g) * (i + 1)
        losses[name] = scale * ((out[name] - y) ** 2).mean()
    return losses


@pytest.fixture
def model():
    return make_model()


#: options a scheme needs to be built for TASKS (schemes not listed take none)
REQUIRED = {
    "fixed": {
        "weights": {"direction@1": 1.0, "return@1": 2.0, "volatility@1": 0.5, "volume@1": 1.0}
    },
    "curriculum": {
        "schedule": {"direction@1": {"start": 0, "ramp": 0}, "return@1": {"start": 1, "ramp": 2}}
    },
}


def build(name: str, tasks: Sequence[str] = TASKS, **options):
    """A registered weighting, with the options it needs for TASKS."""
    from mtl_bt import registry

    opts = dict(REQUIRED.get(name, {})) if list(tasks) == TASKS else {}
    opts.update(options)
    return registry.create("weighting", name, list(tasks), **opts)


def grads_of(model: MTLModel) -> list[torch.Tensor]:
    return [
        (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for p in model.parameters()
    ]


def run_steps(weighting, model, steps: int = 3, epochs: int = 3, scale: float = 1.0, lr=0.05):
    """Drive a weighting like the trainer does (epoch hooks, backward, an SGD step on the
    weighting's own parameters and the model); returns the weights and gradients seen."""
    params = list(model.parameters()) + list(weighting.parameters())
    opt = torch.optim.SGD(params, lr=lr)
    trace = []
    for epoch in range(epochs):
        weighting.on_epoch_start(epoch)
        sums = {n: 0.0 for n in weighting.task_names}
        for step in range(steps):
            opt.zero_grad()
            losses = make_losses(model, seed=100 * epoch + step, scale=scale)
            total = weighting.backward(losses, model)
            trace.append((float(total), weighting.weights(), grads_of(model)))
            opt.step()
            for n in sums:
                sums[n] += float(losses[n].detach()) / steps
        weighting.on_epoch_end(epoch, sums)
    return trace


@pytest.fixture
def tools():
    """The helpers above, for test modules (importlib mode cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        TASKS=TASKS,
        TinyMTL=TinyMTL,
        NoSharedMTL=NoSharedMTL,
        specs=specs,
        make_model=make_model,
        make_losses=make_losses,
        build=build,
        grads_of=grads_of,
        run_steps=run_steps,
    )
