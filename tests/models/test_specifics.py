"""Architecture-specific behaviour: penalties, stitch init, gates, hierarchy, BatchNorm,
the input stage and build_model."""

from __future__ import annotations

from itertools import combinations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_bt import registry
from mtl_bt.config import ModelConfig
from mtl_bt.errors import CheckpointError, ConfigError, PluginError
from mtl_bt.models import InputStage, build_model, build_model_from_dict
from mtl_bt.models.input_stage import CausalConv
from mtl_bt.models.layers import SafeBatchNorm1d
from mtl_bt.tasks.base import TaskSpec


def test_soft_sharing_penalty_matches_the_formula_by_hand(kit):
    model = kit.make("soft_sharing", penalty=0.37)
    towers = {n: [m for m in model.towers[n] if isinstance(m, torch.nn.Linear)] for n in kit.names}
    expected = 0.0
    for a, b in combinations(kit.names, 2):  # by hand, in numpy
        for la, lb in zip(towers[a], towers[b], strict=True):
            for pa, pb in ((la.weight, lb.weight), (la.bias, lb.bias)):
                expected += float(((pa.detach().numpy() - pb.detach().numpy()) ** 2).sum())
    assert model.regularization().item() == pytest.approx(0.37 * expected, rel=1e-5)
    # identical towers: no penalty; its gradient pulls the towers together
    same = kit.make("soft_sharing", penalty=1.0)
    first = same.towers[kit.names[0]].state_dict()
    for n in kit.names[1:]:
        same.towers[n].load_state_dict(first)
    assert same.regularization().item() == 0.0
    assert kit.make("soft_sharing", penalty=0.0).regularization() is None


def test_soft_sharing_penalty_gradient_shrinks_the_distance(kit):
    model = kit.make("soft_sharing", penalty=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.regularization().item()
    for _ in range(5):
        opt.zero_grad()
        model.regularization().backward()
        opt.step()
    assert model.regularization().item() < 0.5 * before


def test_cross_stitch_starts_near_identity(kit):
    model = kit.make("cross_stitch", alpha_self=0.8)
    k = len(kit.names)
    assert len(model.stitches) == 2  # one unit per hidden layer
    for alpha in model.stitches:
        assert alpha.shape == (k, k)
        assert torch.allclose(alpha.diagonal(), torch.full((k,), 0.8))
        assert torch.allclose(alpha.sum(dim=1), torch.ones(k))
        off = alpha[~torch.eye(k, dtype=torch.bool)]
        assert torch.allclose(off, torch.full_like(off, 0.2 / (k - 1)))
    single = kit.make("cross_stitch", specs=kit.specs[:1])
    assert torch.equal(single.stitches[0].detach(), torch.ones(1, 1))


def test_mmoe_gates_are_softmax_over_experts(kit):
    model = kit.make("mmoe", n_experts=5)
    x, _ = kit.inputs("plain", batch=9)
    gates = model.gate_weights(model.input_stage(x))
    assert set(gates) == set(kit.names)
    for g in gates.values():
        assert g.shape == (9, 5)
        assert (g >= 0).all()
        assert torch.allclose(g.sum(dim=1), torch.ones(9))
    assert model.last_shared_layer().shape[0] == 5


def test_mmoe_expert_hidden_sets_expert_widths(kit):
    model = kit.make("mmoe", n_experts=2, expert_hidden=[7, 3])
    assert [tuple(layer.weight.shape) for layer in model.experts.layers] == [(2, 5, 7), (2, 7, 3)]


def test_ple_levels_and_gates(kit):
    model = kit.make("ple", levels=3, n_shared_experts=2, n_task_experts=2)
    assert len(model.levels) == 3
    assert "shared_gate" in model.levels[0] and "shared_gate" in model.levels[1]
    assert "shared_gate" not in model.levels[2]
    # the shared gate chooses among every expert of its level
    assert model.levels[0]["shared_gate"].linear.out_features == 2 * len(kit.names) + 2
    assert model.levels[0]["gate"][kit.names[0]].linear.out_features == 4


def _shift_bias(head: torch.nn.Module, delta: float) -> None:
    last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias += delta


def test_hierarchical_lower_levels_feed_higher_ones_only(kit):
    model = kit.make("hierarchical").eval()
    # all specs level 0 -> the documented default by kind
    assert model.level_of == {"return@1": 1, "direction@1": 1, "volatility@5": 0, "volume@1": 0}
    x, _ = kit.inputs("plain", batch=6)
    base = model(x)
    _shift_bias(model.heads["volatility@5"], 1.0)  # change a level-0 output
    moved = model(x)
    assert not torch.allclose(moved["volatility@5"], base["volatility@5"])
    assert not torch.allclose(moved["return@1"], base["return@1"])
    assert not torch.allclose(moved["direction@1"], base["direction@1"])
    assert torch.equal(moved["volume@1"], base["volume@1"])
    _shift_bias(model.heads["return@1"], 1.0)  # change a level-1 output
    after = model(x)
    for name in ("volatility@5", "volume@1", "direction@1"):
        assert torch.equal(after[name], moved[name])


def test_hierarchical_levels_from_specs_and_option(kit):
    specs = [
        TaskSpec("return@1", "return", 1, level=0),
        TaskSpec("volatility@1", "volatility", 1, level=1),
    ]
    model = kit.make("hierarchical", specs=specs)
    assert model.level_of == {"return@1": 0, "volatility@1": 1}
    model = kit.make("hierarchical", levels={"return": 2, "volatility@5": 1})
    assert model.level_of == {"return@1": 2, "direction@1": 0, "volatility@5": 1, "volume@1": 0}
    with pytest.raises(ConfigError, match="unknown task"):
        kit.make("hierarchical", levels={"volume@9": 1})


def test_hierarchical_without_detach_shares_lower_heads(kit):
    model = kit.make("hierarchical", detach=False)
    assert model.task_parameters("volatility@5") == []
    shared = {id(p) for p in model.shared_parameters()}
    assert all(id(p) in shared for p in model.heads["volatility@5"].parameters())
    assert model.task_parameters("return@1")


def test_safe_batchnorm_batch_of_one_uses_running_stats_and_keeps_them():
    torch.manual_seed(0)
    bn = SafeBatchNorm1d(4)
    bn.train()
    bn(torch.randn(32, 4) * 3 + 2)  # a normal batch updates the running statistics
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    assert not torch.allclose(mean, torch.zeros(4))
    row = torch.randn(1, 4)
    out = bn(row)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    expected = (row - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    assert torch.allclose(out, expected, atol=1e-6)
    bn.eval()
    assert torch.allclose(bn(row), out)


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_shared_bottom_norms(kit, norm):
    model = kit.make("shared_bottom", norm=norm)
    kinds = {type(m).__name__ for m in model.encoder}
    expect = {"layer": "LayerNorm", "batch": "SafeBatchNorm1d", "none": "Identity"}[norm]
    assert expect in kinds
    x, _ = kit.inputs("plain", batch=8)
    model.train()
    model(x[:1])  # batch of one trains
    model(x)
    model.eval()
    full = model(x)
    one = model(x[:1])
    assert all(torch.allclose(full[n][:1], one[n], atol=1e-6) for n in kit.names)


def test_conv_encoder_is_causal_and_sees_the_whole_window():
    torch.manual_seed(0)
    conv = CausalConv(3, 4, lookback=10)
    assert conv.receptive_field(len(conv.convs)) >= 10
    x = torch.randn(2, 10, 3)
    base = conv.steps(x)
    for t in range(10):
        y = x.clone()
        y[:, t, :] += 5.0
        out = conv.steps(y)
        assert torch.equal(out[:, :, :t], base[:, :, :t])  # earlier steps never see step t
    y = x.clone()
    y[:, 0, :] += 5.0
    assert not torch.allclose(conv(y), conv(x))  # the last step sees the first row


def test_input_stage_errors():
    stage = InputStage(4, n_assets=2, asset_embedding=3)
    assert stage.out_features == 7
    with pytest.raises(ValueError, match="asset ids"):
        stage(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        stage(torch.randn(2, 4), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="2 asset ids for a batch of 3"):
        stage(torch.randn(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="expected"):
        stage(torch.randn(2, 5), torch.tensor([0, 1]))
    seq = InputStage(4, encoder="gru", encoder_hidden=5, lookback=6)
    assert seq(torch.randn(2, 6, 4)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"\(batch, lookback, features\)"):
        seq(torch.randn(2, 4))
    with pytest.raises(ValueError, match="lookback 6"):
        seq(torch.randn(2, 7, 4))
    # without an embedding, asset ids are not needed and ignored
    plain = InputStage(4)
    x = torch.randn(2, 4)
    assert torch.equal(plain(x, torch.tensor([0, 5])), x)


def test_asset_embedding_changes_predictions_per_asset(kit):
    model = kit.make("shared_bottom", "asset").eval()
    x = torch.randn(1, kit.n_features).repeat(kit.n_assets, 1)
    out = model(x, torch.arange(kit.n_assets))["return@1"]
    assert len(set(out.tolist())) == kit.n_assets


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"hidden": []}, "hidden"),
        ({"hidden": [4, 0]}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"encoder": "lstm"}, "encoder"),
        ({"norm": "group"}, "norm"),
        ({"asset_embedding": -1}, "asset_embedding"),
        ({"n_assets": True}, "n_assets"),
        ({"hidden": [4], "dropout": "x"}, "dropout"),
    ],
)
def test_bad_option_values_are_config_errors(kit, options, match):
    with pytest.raises(ConfigError, match=match):
        kit.make("shared_bottom", **options)


@pytest.mark.parametrize(
    ("arch", "options", "match"),
    [
        ("mmoe", {"n_experts": 0}, "n_experts"),
        ("mmoe", {"expert_hidden": [3, -1]}, "expert_hidden"),
        ("ple", {"levels": 0}, "levels"),
        ("ple", {"n_shared_experts": 1.5}, "n_shared_experts"),
        ("soft_sharing", {"penalty": -1}, "penalty"),
        ("cross_stitch", {"alpha_self": 1.5}, "alpha_self"),
        ("hierarchical", {"detach": "yes"}, "detach"),
        ("hierarchical", {"levels": {"return": -1}}, "levels"),
    ],
)
def test_bad_architecture_option_values(kit, arch, options, match):
    with pytest.raises(ConfigError, match=match):
        kit.make(arch, **options)


def test_non_plain_option_is_refused(kit):
    with pytest.raises(ConfigError, match="plain data"):
        kit.make("mmoe", expert_hidden=None, hidden=[4, object()])


def test_build_model_from_config(kit):
    cfg = ModelConfig(
        architecture="mmoe",
        hidden=[6],
        dropout=0.0,
        asset_embedding=2,
        sequence={"encoder": "conv", "lookback": 5, "hidden": 4},
        options={"n_experts": 3},
    )
    model = build_model(cfg, kit.n_features, kit.specs, n_assets=4)
    kw = model.init_kwargs
    assert kw["n_experts"] == 3 and kw["hidden"] == [6] and kw["n_assets"] == 4
    assert kw["encoder"] == "conv" and kw["lookback"] == 5 and kw["encoder_hidden"] == 4
    out = model(torch.randn(3, 5, kit.n_features), torch.tensor([0, 3, 1]))
    assert set(out) == set(kit.names)
    again = build_model_from_dict(model.describe())
    assert again.init_kwargs == kw
    # no sequence encoder: lookback is not part of the model
    plain = build_model(ModelConfig(), kit.n_features, kit.specs)
    assert plain.init_kwargs["lookback"] is None and plain.init_kwargs["encoder"] == "none"


def test_build_model_errors(kit):
    with pytest.raises(ConfigError, match="model.sequence.encoder"):
        build_model(ModelConfig(options={"encoder": "gru"}), kit.n_features, kit.specs)
    with pytest.raises(ConfigError, match="'shared_bottom'.*'widht'"):
        build_model(ModelConfig(options={"widht": 3}), kit.n_features, kit.specs)
    with pytest.raises(PluginError, match="unknown architecture 'mmeo'.*'mmoe'"):
        build_model(ModelConfig(architecture="mmeo"), kit.n_features, kit.specs)
    with pytest.raises(CheckpointError, match="init_kwargs"):
        build_model_from_dict({"architecture": "mmoe"})


ARCHS = ["shared_bottom", "soft_sharing", "cross_stitch", "mmoe", "ple", "hierarchical"]


@settings(max_examples=25)
@given(
    arch=st.sampled_from(ARCHS),
    n_tasks=st.integers(1, 4),
    hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    levels=st.lists(st.integers(0, 2), min_size=4, max_size=4),
    batch=st.integers(1, 5),
)
def test_partition_law_for_random_shapes(arch, n_tasks, hidden, levels, batch):
    """Shared + task parameters partition all parameters, whatever the sizes and levels."""
    kinds = ["return", "direction", "volatility", "volume"]
    specs = [
        TaskSpec(f"{kinds[i]}@{i + 1}", kinds[i], i + 1, level=levels[i]) for i in range(n_tasks)
    ]
    torch.manual_seed(0)
    extra = {"levels": 3} if arch == "ple" else {}
    model = registry.get("architecture", arch)(3, specs, hidden=hidden, dropout=0.0, **extra)
    groups = [model.shared_parameters()] + [model.task_parameters(t.name) for t in specs]
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    out = model.eval()(torch.randn(batch, 3))
    assert {k: v.shape for k, v in out.items()} == {t.name: (batch,) for t in specs}


@pytest.mark.parametrize("arch", ARCHS)
def test_set_output_bias_moves_only_that_tasks_output(kit, arch):
    model = kit.make(arch, dropout=0.0).eval()
    x, _ = kit.inputs("plain", batch=4)
    before = model(x)
    model.set_output_bias({"volatility@5": -5.0})
    after = model(x)
    layer = model.output_layer("volatility@5")
    assert torch.equal(layer.bias.detach(), torch.full_like(layer.bias, -5.0))
    assert not torch.allclose(after["volatility@5"], before["volatility@5"])
    assert any(layer.bias is p for p in model.task_parameters("volatility@5"))
    unaffected = ["volume@1"] if arch == "hierarchical" else ["return@1", "direction@1", "volume@1"]
    for name in unaffected:  # hierarchical: level-1 heads read the volatility output
        assert torch.equal(after[name], before[name])
    with pytest.raises(KeyError, match="unknown task"):
        model.set_output_bias({"nope@1": 0.0})
