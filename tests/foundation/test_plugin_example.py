"""The example third-party plugin, installed for real, takes part end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin_example"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> dict[str, str]:
    """pip-install the example distribution into a private target folder."""
    target = tmp_path_factory.mktemp("example_site")
    build = tmp_path_factory.mktemp("example_build")
    # copy the source so the build leaves no egg-info in the repo
    src = build / "plugin_example"
    src.mkdir()
    for name in ("pyproject.toml", "mtl_bt_example.py"):
        (src / name).write_text((EXAMPLE / name).read_text())
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(src)],
        check=True,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    env.pop("MTL_BT_DISABLE_PLUGINS", None)
    env.pop("MTL_BT_LOAD_PLUGINS", None)
    return env


def test_example_plugin_is_listed_with_its_distribution(installed_example):
    out = subprocess.run(
        [str(BIN / "mtl-bt"), "plugins", "--json"],
        env=installed_example, check=True, capture_output=True, text=True,
    ).stdout
    entries = {(e["kind"], e["name"]): e for e in json.loads(out)}
    mine = entries[("weighting", "example_inverse_loss")]
    assert mine["plugin"] == "example"
    assert mine["distribution"] == "mtl-bt-example-plugin"
    assert mine["version"] == "0.1.0"
    assert entries[("weighting", "equal")]["distribution"] == "mtl-bt"


def test_example_plugin_can_be_disabled(installed_example):
    env = dict(installed_example, MTL_BT_DISABLE_PLUGINS="example")
    out = subprocess.run(
        [str(BIN / "mtl-bt"), "plugins", "--json"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    assert "example_inverse_loss" not in {e["name"] for e in json.loads(out)}


TRAIN_STEP = r"""
import torch
from torch import nn
from mtl_bt import registry
from mtl_bt.models import MTLModel
from mtl_bt.tasks import TaskSpec

class Tiny(MTLModel):
    def __init__(self, in_features, tasks):
        super().__init__(in_features, tasks)
        self.body = nn.Linear(in_features, 8)
        self.heads = nn.ModuleDict({t.name: nn.Linear(8, 1) for t in tasks})
    def forward(self, x, asset=None):
        h = torch.relu(self.body(x))
        return {n: head(h).squeeze(-1) for n, head in self.heads.items()}
    def shared_parameters(self):
        return list(self.body.parameters())

torch.manual_seed(0)
specs = [TaskSpec("a@1", "a", 1), TaskSpec("b@1", "b", 1)]
model = Tiny(4, specs)
weighting = registry.create("weighting", "example_inverse_loss", ["a@1", "b@1"])
opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
x = torch.randn(64, 4)
y = {"a@1": x[:, 0] * 3.0, "b@1": x[:, 1] * 0.1}
before = {k: v.detach().clone() for k, v in model.state_dict().items()}
losses = {n: ((out - y[n]) ** 2).mean() for n, out in model(x).items()}
opt.zero_grad()
total = weighting.backward(losses, model)
opt.step()
w = weighting.weights()
assert abs(sum(w.values()) - 2.0) < 1e-5, w
assert w["b@1"] > w["a@1"], w  # the smaller loss gets the larger weight
assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
print("STEP_OK", float(total))
"""


def test_example_plugin_takes_part_in_a_training_step(installed_example):
    out = subprocess.run(
        [sys.executable, "-c", TRAIN_STEP],
        env=installed_example, check=True, capture_output=True, text=True,
    ).stdout
    assert "STEP_OK" in out
