"""Every architecture x every input stage: shapes, parameter partition, task isolation,
determinism, batch of one, learning, and the plain-data rebuild round trip."""

from __future__ import annotations

import io
import itertools

import pytest
import torch

from mtl_bt import registry
from mtl_bt.errors import ConfigError
from mtl_bt.models import MTLModel, build_model_from_dict

ARCHS = ["shared_bottom", "soft_sharing", "cross_stitch", "mmoe", "ple", "hierarchical"]
STAGES = ["plain", "asset", "gru", "conv"]
CASES = [(a, s) for a in ARCHS for s in STAGES]
NAMES = ["return@1", "direction@1", "volatility@5", "volume@1"]  # the kit's tasks


@pytest.mark.parametrize(("arch", "stage"), CASES)
def test_outputs_keys_and_shapes(arch, stage, kit):
    model = kit.make(arch, stage)
    assert isinstance(model, MTLModel)
    x, asset = kit.inputs(stage, batch=7)
    out = model(x, asset)
    assert list(out) == NAMES
    for value in out.values():
        assert value.shape == (7,)
        assert torch.isfinite(value).all()


@pytest.mark.parametrize(("arch", "stage"), CASES)
def test_parameters_are_partitioned(arch, stage, kit):
    model = kit.make(arch, stage)
    everything = {id(p) for p in model.parameters() if p.requires_grad}
    shared = [id(p) for p in model.shared_parameters()]
    groups = [shared] + [[id(p) for p in model.task_parameters(n)] for n in NAMES]
    flat = [i for g in groups for i in g]
    assert len(flat) == len(set(flat)), "a parameter is in two groups"
    assert set(flat) == everything
    for name in NAMES:
        assert model.task_parameters(name), f"task {name} owns no parameters"
    if stage != "plain" or arch != "soft_sharing":
        assert shared
    stage_params = {id(p) for p in model.input_stage.parameters()}
    assert stage_params <= set(shared)


def _grads(model, loss):
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {
        id(p): (g is not None and bool(g.abs().sum() > 0))
        for p, g in zip(params, grads, strict=True)
    }


@pytest.mark.parametrize(("arch", "stage"), CASES)
def test_each_loss_reaches_only_shared_and_own_parameters(arch, stage, kit):
    model = kit.make(arch, stage, dropout=0.0).eval()
    x, asset = kit.inputs(stage, batch=32)
    reached_by = {id(p): 0 for p in model.parameters()}
    for name in NAMES:
        out = model(x, asset)
        grad = _grads(model, (out[name] - 0.3).pow(2).mean())
        own = {id(p) for p in model.task_parameters(name)}
        for other in NAMES:
            if other != name:
                for p in model.task_parameters(other):
                    assert not grad[id(p)], f"loss of {name} reaches a parameter of {other}"
        assert all(grad[i] for i in own), f"loss of {name} misses one of its own parameters"
        for i, hit in grad.items():
            reached_by[i] += hit
    # honest labels: every shared parameter is reached by more than one task
    for p in model.shared_parameters():
        assert reached_by[id(p)] >= 2


@pytest.mark.parametrize(("arch", "stage"), CASES)
def test_eval_is_deterministic_and_batch_of_one_works(arch, stage, kit):
    model = kit.make(arch, stage, dropout=0.3)
    x, asset = kit.inputs(stage, batch=5)
    model.eval()
    a, b = model(x, asset), model(x, asset)
    assert all(torch.equal(a[n], b[n]) for n in NAMES)
    # a row's prediction in eval does not depend on the other rows of the batch
    one = model(x[:1], None if asset is None else asset[:1])
    assert all(torch.allclose(one[n], a[n][:1], atol=1e-6) for n in NAMES)
    model.train()
    out = model(x[:1], None if asset is None else asset[:1])
    assert all(out[n].shape == (1,) for n in NAMES)
    sum(out.values()).sum().backward()


@pytest.mark.parametrize(("arch", "stage"), CASES)
def test_adamw_steps_reduce_the_loss_on_a_learnable_problem(arch, stage, kit):
    """Targets are fixed random linear functions of the newest feature row."""
    model = kit.make(arch, stage, dropout=0.0)
    x, asset = kit.inputs(stage, batch=64, seed=3)
    last = x if x.dim() == 2 else x[:, -1, :]
    coef = torch.randn(kit.n_features, len(NAMES), generator=torch.Generator().manual_seed(4))
    target = last @ coef

    def loss() -> torch.Tensor:
        out = model(x, asset)
        total = sum((out[n] - target[:, i]).pow(2).mean() for i, n in enumerate(NAMES))
        return total

    opt = torch.optim.AdamW(model.parameters(), lr=2e-2, weight_decay=0.0)
    with torch.no_grad():
        before = float(loss())
    for _ in range(40):
        opt.zero_grad()
        value = loss()
        reg = model.regularization()
        (value if reg is None else value + reg).backward()
        opt.step()
    with torch.no_grad():
        after = float(loss())
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize(("arch", "stage"), CASES)
def test_rebuild_from_plain_data_round_trip(arch, stage, kit):
    model = kit.make(arch, stage).eval()
    blob = {"architecture": arch, "init_kwargs": model.init_kwargs, "state": model.state_dict()}
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    rebuilt = registry.get("architecture", loaded["architecture"])(**loaded["init_kwargs"])
    rebuilt.load_state_dict(loaded["state"])
    rebuilt.eval()
    again = build_model_from_dict(loaded)
    again.load_state_dict(loaded["state"])
    again.eval()
    x, asset = kit.inputs(stage, batch=4)
    ref = model(x, asset)
    for other in (rebuilt, again):
        out = other(x, asset)
        assert all(torch.equal(ref[n], out[n]) for n in NAMES)
    assert rebuilt.init_kwargs == model.init_kwargs
    assert model.describe() == {"architecture": arch, "init_kwargs": model.init_kwargs}


def _as_list(layer) -> list[torch.Tensor]:
    """``last_shared_layer()`` is one parameter or a list of them."""
    return [layer] if isinstance(layer, torch.Tensor) else list(layer)


@pytest.mark.parametrize("arch", ARCHS)
def test_last_shared_layer_is_a_shared_parameter(arch, kit):
    for stage in ("plain", "gru"):
        model = kit.make(arch, stage)
        if arch == "soft_sharing" and stage == "plain":
            with pytest.raises(ConfigError, match="no shared layer"):
                model.last_shared_layer()
            continue
        weights = _as_list(model.last_shared_layer())
        assert weights
        for weight in weights:
            assert any(weight is p for p in model.shared_parameters())
            if stage == "gru" and arch != "soft_sharing":
                assert not any(weight is p for p in model.input_stage.parameters())


@pytest.mark.parametrize("arch", registry.names("architecture"))
def test_every_pair_of_tasks_meets_on_the_last_shared_layer(arch, kit):
    """GradNorm compares the tasks' gradient norms on ``last_shared_layer()``: that
    only means something if every task's gradient lands there, on common elements
    (not, say, on one row each of a K x K matrix)."""
    checked = 0
    for stage in STAGES:
        model = kit.make(arch, stage, dropout=0.0).eval()
        try:
            params = _as_list(model.last_shared_layer())
        except ConfigError:  # soft_sharing without a shared input stage has none
            continue
        assert params, f"{arch}/{stage}: last_shared_layer() is empty"
        x, asset = kit.inputs(stage, batch=32)
        out = model(x, asset)
        hit = {}
        for name in NAMES:
            loss = (out[name] - 0.3).pow(2).mean()
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            flat = torch.cat(
                [
                    (torch.zeros_like(p) if g is None else g).flatten()
                    for p, g in zip(params, grads, strict=True)
                ]
            )
            hit[name] = flat != 0
            assert hit[name].any(), f"{arch}/{stage}: {name} has no gradient there"
        for a, b in itertools.combinations(NAMES, 2):
            assert (hit[a] & hit[b]).any(), (
                f"{arch}/{stage}: the gradients of {a} and {b} on last_shared_layer() "
                "never touch the same element"
            )
        checked += 1
    assert checked, f"{arch}: no input stage gives a last shared layer"


@pytest.mark.parametrize("arch", ARCHS)
def test_unknown_option_is_a_config_error_naming_architecture_key_and_allowed(arch, kit):
    with pytest.raises(ConfigError) as info:
        kit.make(arch, hiden=[4])
    message = str(info.value)
    assert repr(arch) in message and "'hiden'" in message
    model_cls = registry.get("architecture", arch)
    for key in model_cls.option_names():
        assert key in message
    assert "hidden" in message and "dropout" in message


@pytest.mark.parametrize("arch", ARCHS)
def test_regularization_only_for_soft_sharing(arch, kit):
    value = kit.make(arch).regularization()
    if arch == "soft_sharing":
        assert value is not None and value.item() > 0
    else:
        assert value is None


def test_registry_lists_all_six_with_descriptions():
    reg = registry.registry()
    for arch in ARCHS:
        entry = reg.entry("architecture", arch)
        assert entry.description and issubclass(entry.factory, MTLModel)
        assert entry.factory.architecture == arch
