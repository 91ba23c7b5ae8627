"""Laws every registered weighting must keep: finite under degenerate losses,
reset() restores the initial state, deterministic under a seed, clear option errors."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_bt import registry
from mtl_bt.errors import ConfigError, PluginError

BUILTIN = [
    "cagrad", "curriculum", "dwa", "equal", "fixed", "gradnorm", "mgda", "pcgrad", "rlw",
    "uncertainty",
]  # fmt: skip
GRADIENT_LEVEL = ["cagrad", "mgda", "pcgrad"]


def test_builtins_registered_with_descriptions():
    names = registry.names("weighting")
    assert set(BUILTIN) <= set(names)
    for name in BUILTIN:
        assert registry.registry().entry("weighting", name).description


def test_unknown_scheme_is_a_registry_error():
    with pytest.raises(PluginError, match="unknown weighting 'pcgard'.*pcgrad"):
        registry.create("weighting", "pcgard", ["return@1"])


def _finite_state(weighting, model):
    for name, value in weighting.weights().items():
        assert math.isfinite(value), (name, value)
    for p in model.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()
    for p in weighting.parameters():
        assert torch.isfinite(p).all()


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("scale", [0.0, 1e12])
def test_finite_with_zero_and_huge_losses(name, scale, tools):
    model = tools.make_model()
    w = tools.build(name)
    trace = tools.run_steps(w, model, steps=2, epochs=3, scale=scale, lr=0.0)
    for total, weights, grads in trace:
        assert math.isfinite(total)
        assert all(math.isfinite(v) for v in weights.values())
        assert all(torch.isfinite(g).all() for g in grads)
    _finite_state(w, model)


@pytest.mark.parametrize("name", BUILTIN)
def test_finite_with_an_all_zero_task_gradient(name, tools):
    model = tools.make_model()
    w = tools.build(name)
    opt = torch.optim.SGD(list(model.parameters()) + list(w.parameters()), lr=0.01)
    for epoch in range(3):
        w.on_epoch_start(epoch)
        for step in range(2):
            opt.zero_grad()
            losses = tools.make_losses(model, seed=epoch * 10 + step)
            # a task whose loss does not depend on any parameter this step
            losses["volume@1"] = model(torch.zeros(2, 5))["volume@1"].sum() * 0.0 + 1.0
            total = w.backward(losses, model)
            assert math.isfinite(float(total))
            _finite_state(w, model)
            opt.step()
        w.on_epoch_end(epoch, {n: 1.0 + epoch for n in w.task_names})
    _finite_state(w, model)


@pytest.mark.parametrize("name", BUILTIN)
def test_reset_restores_initial_state(name, tools):
    fresh = tools.build(name)
    used = tools.build(name)
    initial = fresh.weights()
    tools.run_steps(used, tools.make_model(seed=5), steps=3, epochs=4)
    used.reset()
    assert used.weights() == pytest.approx(initial)
    # after reset it behaves exactly like a new instance
    a = tools.run_steps(used, tools.make_model(seed=1))
    b = tools.run_steps(fresh, tools.make_model(seed=1))
    for (ta, wa, ga), (tb, wb, gb) in zip(a, b, strict=True):
        assert ta == pytest.approx(tb, rel=1e-6)
        assert wa == pytest.approx(wb, rel=1e-6)
        for x, y in zip(ga, gb, strict=True):
            torch.testing.assert_close(x, y)


@pytest.mark.parametrize("name", BUILTIN)
def test_deterministic_under_seed(name, tools):
    extra = {"seed": 7} if name in ("pcgrad", "rlw") else {}
    a = tools.run_steps(tools.build(name, **extra), tools.make_model(seed=2))
    b = tools.run_steps(tools.build(name, **extra), tools.make_model(seed=2))
    for (ta, wa, ga), (tb, wb, gb) in zip(a, b, strict=True):
        assert ta == tb
        assert wa == wb
        for x, y in zip(ga, gb, strict=True):
            assert torch.equal(x, y)


def test_seed_changes_random_schemes(tools):
    a = tools.run_steps(tools.build("rlw", seed=1), tools.make_model())
    b = tools.run_steps(tools.build("rlw", seed=2), tools.make_model())
    assert [w for _, w, _ in a] != [w for _, w, _ in b]


@pytest.mark.parametrize("name", BUILTIN)
def test_wrong_option_key_is_a_config_error(name, tools):
    with pytest.raises(ConfigError, match=rf"weighting '{name}'.*'bogus_key'"):
        tools.build(name, bogus_key=1)


@pytest.mark.parametrize(
    ("name", "options", "key", "allowed"),
    [
        ("gradnorm", {"alpha": -0.1}, "alpha", ">= 0"),
        ("gradnorm", {"lr": 0.0}, "lr", "> 0"),
        ("gradnorm", {"init_steps": 0}, "init_steps", ">= 1"),
        ("dwa", {"temperature": 0.0}, "temperature", "> 0"),
        ("dwa", {"temperature": -2}, "temperature", "> 0"),
        ("cagrad", {"c": -0.5}, "c", ">= 0"),
        ("cagrad", {"rescale": 3}, "rescale", "one of"),
        ("pcgrad", {"seed": -1}, "seed", ">= 0"),
        ("rlw", {"distribution": "uniform"}, "distribution", "one of"),
        ("uncertainty", {"init": float("nan")}, "init", "finite"),
        ("mgda", {"max_iter": 0}, "max_iter", ">= 1"),
        ("dwa", {"temperature": True}, "temperature", "finite number"),
    ],
)
def test_out_of_range_option_names_scheme_key_and_range(name, options, key, allowed, tools):
    with pytest.raises(ConfigError) as info:
        tools.build(name, **options)
    message = str(info.value)
    assert f"weighting '{name}'" in message
    assert f"{key} = " in message
    assert allowed in message


@pytest.mark.parametrize("name", GRADIENT_LEVEL)
def test_gradient_level_without_shared_parameters_falls_back_to_sum(name, tools):
    model = tools.make_model(cls=tools.NoSharedMTL)
    ref = tools.make_model(cls=tools.NoSharedMTL)
    w = tools.build(name)
    with pytest.warns(RuntimeWarning, match="no shared parameters.*plain sum"):
        total = w.backward(tools.make_losses(model), model)
    expected = torch.stack(list(tools.make_losses(ref).values())).sum()
    expected.backward()
    assert float(total) == pytest.approx(float(expected.detach()), rel=1e-6)
    for x, y in zip(tools.grads_of(model), tools.grads_of(ref), strict=True):
        torch.testing.assert_close(x, y)
    assert w.weights() == {n: 1.0 for n in tools.TASKS}


@pytest.mark.parametrize("name", BUILTIN)
def test_missing_task_loss_is_an_error(name, tools):
    model = tools.make_model()
    losses = tools.make_losses(model)
    del losses["return@1"]
    with pytest.raises(KeyError, match="return@1"):
        tools.build(name).backward(losses, model)
