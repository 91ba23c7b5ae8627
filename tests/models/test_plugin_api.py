"""The base-class API plugin authors rely on: the docs snippet, init_kwargs recording,
copies, and third-party subclasses."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl_bt import registry
from mtl_bt.errors import ConfigError
from mtl_bt.models import MTLModel
from mtl_bt.plugins.architectures.mmoe import MMoE
from mtl_bt.tasks.base import TaskSpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "architectures.md"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_python_snippets_run():
    blocks = _blocks(DOC.read_text())
    assert len(blocks) == 3
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), {})
    finally:
        registry.unregister_plugin("two_tower_demo")
    assert "two_tower" not in registry.names("architecture")


def test_docs_list_every_option_of_every_architecture():
    text = DOC.read_text()
    for name in registry.names("architecture"):
        assert f"### `{name}`" in text
        for option in registry.get("architecture", name).option_names():
            assert f"`{option}`" in text, (name, option)


def test_subclass_of_an_architecture_records_its_own_and_inherited_options(kit):
    class WideMMoE(MMoE):
        def __init__(self, in_features, tasks, *, widen: int = 2, **options):
            super().__init__(in_features, tasks, **options)
            self.widen = widen

    model = WideMMoE(kit.n_features, kit.specs, widen=3, n_experts=2, hidden=[4])
    kw = model.init_kwargs
    assert kw["widen"] == 3 and kw["n_experts"] == 2 and kw["hidden"] == [4]
    assert kw["expert_hidden"] is None and kw["dropout"] == 0.1
    assert WideMMoE(**kw).init_kwargs == kw
    assert "widen" in WideMMoE.option_names() and "n_experts" in WideMMoE.option_names()


def test_third_party_model_with_non_plain_arguments_still_builds():
    class Odd(MTLModel):
        def __init__(self, in_features, tasks, scale: torch.Tensor) -> None:
            super().__init__(in_features, tasks)
            self.body = nn.Linear(in_features, 1)
            self.scale = scale

        def predict(self, h):
            return {n: self._out(self.body(h)).unsqueeze(-1) * self.scale for n in self.task_names}

        def task_modules(self, name):
            return []

    model = Odd(2, [TaskSpec("a@1", "a", 1)], torch.ones(3))
    assert model(torch.randn(4, 2))["a@1"].shape == (4, 3)
    with pytest.raises(ConfigError, match="not plain data"):
        model.init_kwargs  # noqa: B018 - the property raises


def test_copies_keep_outputs_and_init_kwargs(kit):
    model = kit.make("ple", "gru").eval()
    x, _ = kit.inputs("gru", batch=3)
    ref = model(x)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        out = other.eval()(x)
        assert all(torch.equal(ref[n], out[n]) for n in kit.names)
        assert other.init_kwargs == model.init_kwargs


def test_task_specs_as_dicts_equal_task_specs(kit):
    dicts = [
        {"name": t.name, "kind": t.kind, "horizon": t.horizon, "level": t.level} for t in kit.specs
    ]
    a = kit.make("hierarchical", specs=dicts)
    b = kit.make("hierarchical")
    assert a.tasks == b.tasks and a.init_kwargs == b.init_kwargs
    with pytest.raises(KeyError, match="unknown task"):
        a.task_parameters("nope@1")


def test_model_without_common_options_rebuilds_from_its_init_kwargs():
    class Fixed(MTLModel):  # takes no **options: nothing extra may be recorded
        def __init__(self, in_features, tasks, width: int = 3) -> None:
            super().__init__(in_features, tasks)
            self.body = nn.Linear(in_features, width)
            self.heads = nn.ModuleDict({t.name: nn.Linear(width, 1) for t in self.tasks})

        def predict(self, h):
            z = self.body(h)
            return {n: self._out(head(z)) for n, head in self.heads.items()}

        def task_modules(self, name):
            return [self.heads[name]]

    model = Fixed(2, [TaskSpec("a@1", "a", 1)], width=5)
    kw = model.init_kwargs
    assert set(kw) == {"in_features", "tasks", "width"} and kw["width"] == 5
    again = Fixed(**kw)
    again.load_state_dict(model.state_dict())
    x = torch.randn(3, 2)
    assert torch.equal(again(x)["a@1"], model(x)["a@1"])
