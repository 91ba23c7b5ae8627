"""Loss-level schemes: golden values and laws (DWA, uncertainty, GradNorm,
curriculum, RLW, fixed, equal)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.errors import ConfigError
from mtl_bt.plugins.weightings.dwa import DWA
from mtl_bt.plugins.weightings.gradnorm import GradNorm
from mtl_bt.plugins.weightings.uncertainty import Uncertainty

TWO = ["a@1", "b@1"]


# -- DWA ---------------------------------------------------------------------
def test_dwa_golden_value():
    w = DWA(TWO)
    for epoch, means in enumerate([[1.0, 1.0], [1.0, 4.0]]):
        w.on_epoch_start(epoch)
        assert w.weights() == {"a@1": 1.0, "b@1": 1.0}  # uniform for epochs 0 and 1
        w.on_epoch_end(epoch, dict(zip(TWO, means, strict=True)))
    w.on_epoch_start(2)
    expected = 2 * torch.softmax(torch.tensor([1.0, 4.0], dtype=torch.float64) / 2, 0)
    assert list(w.weights().values()) == pytest.approx(expected.tolist(), rel=1e-12)


def test_dwa_temperature_and_combine():
    w = DWA(TWO, temperature=0.5)
    for epoch, means in enumerate([[2.0, 1.0], [1.0, 1.0]]):
        w.on_epoch_start(epoch)
        w.on_epoch_end(epoch, dict(zip(TWO, means, strict=True)))
    w.on_epoch_start(2)
    expected = 2 * torch.softmax(torch.tensor([0.5, 1.0], dtype=torch.float64) / 0.5, 0)
    assert list(w.weights().values()) == pytest.approx(expected.tolist())
    total = w.combine({"a@1": torch.tensor(3.0), "b@1": torch.tensor(5.0)})
    assert float(total) == pytest.approx(3 * expected[0].item() + 5 * expected[1].item(), rel=1e-6)


means = st.floats(0.0, 1e12) | st.sampled_from([0.0, float("inf"), float("nan"), 1e-300])


@given(
    st.integers(1, 6).flatmap(
        lambda k: st.lists(st.lists(means, min_size=k, max_size=k), min_size=3, max_size=6)
    )
)
def test_dwa_weights_sum_to_k_and_are_finite(history):
    k = len(history[0])
    names = [f"t{i}@1" for i in range(k)]
    w = DWA(names)
    for epoch, row in enumerate(history):
        w.on_epoch_start(epoch)
        values = list(w.weights().values())
        assert sum(values) == pytest.approx(k)
        assert all(v >= 0 and math.isfinite(v) for v in values)
        if epoch < 2:
            assert values == [1.0] * k
        w.on_epoch_end(epoch, dict(zip(names, row, strict=True)))


# -- uncertainty ----------------------------------------------------------------
def test_uncertainty_converges_to_stationary_point():
    target = [0.5, 2.0, 7.0]
    names = ["a@1", "b@1", "c@1"]
    w = Uncertainty(names)
    losses = {n: torch.tensor(v) for n, v in zip(names, target, strict=True)}
    opt = torch.optim.SGD(w.parameters(), lr=0.5)
    for _ in range(150):
        opt.zero_grad()
        w.combine(losses).backward()
        opt.step()
    torch.testing.assert_close(
        torch.exp(w.log_vars.detach()), torch.tensor(target), rtol=1e-4, atol=0
    )
    assert list(w.weights().values()) == pytest.approx([1 / (2 * v) for v in target], rel=1e-3)


def test_uncertainty_golden_total_and_clamp():
    w = Uncertainty(TWO, init=math.log(2.0))
    total = w.combine({"a@1": torch.tensor(4.0), "b@1": torch.tensor(0.0)})
    assert float(total.detach()) == pytest.approx(4 / 4 + 0 + math.log(2.0))  # 2 * (s/2) = log 2
    w = Uncertainty(TWO, min_log_var=-3.0)
    with torch.no_grad():
        w.log_vars.fill_(-50.0)
    assert list(w.weights().values()) == pytest.approx([0.5 * math.exp(3.0)] * 2)
    with pytest.raises(ConfigError, match="min_log_var"):
        Uncertainty(TWO, min_log_var=1.0, max_log_var=0.0)


def test_uncertainty_parameters_get_gradients_through_backward(tools):
    model = tools.make_model()
    w = tools.build("uncertainty")
    w.backward(tools.make_losses(model), model)
    (s,) = w.parameters()
    losses = tools.make_losses(tools.make_model())
    expected = 0.5 - 0.5 * torch.stack([losses[n].detach() for n in tools.TASKS])
    torch.testing.assert_close(s.grad, expected)


# -- GradNorm -----------------------------------------------------------------
@given(
    st.integers(2, 5).flatmap(
        lambda k: st.lists(
            st.tuples(
                st.lists(st.floats(0, 1e6), min_size=k, max_size=k),
                st.lists(st.floats(0, 1e6), min_size=k, max_size=k),
            ),
            min_size=1,
            max_size=15,
        )
    ),
    st.floats(0, 3),
)
def test_gradnorm_weights_positive_and_sum_to_k(steps, alpha):
    k = len(steps[0][0])
    w = GradNorm([f"t{i}@1" for i in range(k)], alpha=alpha, lr=0.5)
    for norms, losses in steps:
        w.update(
            torch.tensor(norms, dtype=torch.float64), torch.tensor(losses, dtype=torch.float64)
        )
        values = list(w.weights().values())
        assert all(v > 0 and math.isfinite(v) for v in values)
        assert sum(values) == pytest.approx(k)


def test_gradnorm_shrinks_a_10x_gradient_norm_gap(tools):
    model = tools.make_model(["a@1", "b@1"])
    layer = model.last_shared_layer()
    x, y = torch.randn(64, 5), torch.randn(64)

    def losses():
        base = ((model(x)["a@1"] - y) ** 2).mean()
        return {"a@1": base, "b@1": 10.0 * base}  # b's gradient is exactly 10x a's

    raw = [
        float(torch.autograd.grad(v, layer, retain_graph=True)[0].norm()) for v in losses().values()
    ]
    assert raw[1] / raw[0] == pytest.approx(10.0, rel=1e-5)
    w = GradNorm(["a@1", "b@1"], lr=0.05)
    gaps = []
    for _ in range(30):
        model.zero_grad()
        weights = w.weights()
        gaps.append(abs(weights["b@1"] * raw[1] - weights["a@1"] * raw[0]))
        w.backward(losses(), model)
    assert w.weights()["a@1"] > 1 > w.weights()["b@1"] > 0
    assert gaps[-1] < 0.5 * gaps[0]
    # moves straight at the gap (Adam's momentum may overshoot once it is closed)
    assert all(later < earlier for earlier, later in zip(gaps[:9], gaps[1:10], strict=True))
    assert min(gaps) < 0.05 * gaps[0]


def test_gradnorm_model_update_uses_current_weights(tools):
    model = tools.make_model()
    ref = tools.make_model()
    w = GradNorm(tools.TASKS, lr=0.1)
    w.backward(tools.make_losses(model), model)  # first step: weights change after it
    before = w.weights()
    assert before != {n: 1.0 for n in tools.TASKS}
    model.zero_grad()
    w.backward(tools.make_losses(model), model)
    losses = tools.make_losses(ref)
    sum(before[n] * losses[n] for n in tools.TASKS).backward()
    for x, y in zip(tools.grads_of(model), tools.grads_of(ref), strict=True):
        torch.testing.assert_close(x, y)


def test_gradnorm_initial_losses_from_first_steps():
    w = GradNorm(TWO, init_steps=2)
    w.update(
        torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([2.0, 4.0], dtype=torch.float64)
    )
    assert w.initial_losses is None and w.weights() == {"a@1": 1.0, "b@1": 1.0}
    w.update(
        torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([4.0, 8.0], dtype=torch.float64)
    )
    torch.testing.assert_close(w.initial_losses, torch.tensor([3.0, 6.0], dtype=torch.float64))


def test_gradnorm_needs_a_last_shared_layer(tools):
    class NoLayer(tools.TinyMTL):
        def last_shared_layer(self):
            raise NotImplementedError

    model = NoLayer(5, tools.specs(TWO))
    with pytest.raises(ConfigError, match="gradnorm.*last shared layer"):
        GradNorm(TWO).backward(tools.make_losses(model), model)


def _recorded_norms(weighting, losses, model):
    """The gradient norms ``GradNorm.backward`` hands to ``update``."""
    seen = []
    real = weighting.update
    weighting.update = lambda norms, losses: (seen.append(norms.clone()), real(norms, losses))
    weighting.backward(losses, model)
    return seen[0]


def test_gradnorm_takes_one_norm_over_a_list_of_layer_tensors(tools):
    class SplitLayer(tools.TinyMTL):
        def last_shared_layer(self):
            return [self.trunk[0].weight, self.trunk[2].weight]

    model = tools.make_model(TWO, cls=SplitLayer)
    layer = model.last_shared_layer()
    losses = tools.make_losses(model)
    expected = []
    for name in TWO:
        grads = torch.autograd.grad(losses[name], layer, retain_graph=True)
        expected.append(float(torch.cat([g.flatten() for g in grads]).double().norm()))
    norms = _recorded_norms(GradNorm(TWO), losses, model)
    assert norms.tolist() == pytest.approx(expected, rel=1e-6)
    # one tensor in a list gives exactly the norm it gives on its own
    single = tools.make_model(TWO)
    losses = tools.make_losses(single)
    alone = _recorded_norms(GradNorm(TWO), losses, single)

    class Listed(tools.TinyMTL):
        def last_shared_layer(self):
            return [self.trunk[2].weight]

    again = tools.make_model(TWO, cls=Listed)
    assert torch.equal(_recorded_norms(GradNorm(TWO), tools.make_losses(again), again), alone)


def test_gradnorm_on_cross_stitch_sees_every_task(tools):
    from mtl_bt import registry

    names = ["return@1", "direction@1", "volatility@5"]
    torch.manual_seed(0)
    model = registry.get("architecture", "cross_stitch")(5, tools.specs(names), hidden=[8, 6])
    x, y = torch.randn(32, 5), torch.randn(32)
    out = model(x)
    losses = {n: ((out[n] - y) ** 2).mean() for n in names}
    norms = _recorded_norms(GradNorm(names), losses, model)
    assert (norms > 0).all() and torch.isfinite(norms).all()
    assert all(p.grad is not None for p in model.parameters())


# -- curriculum -----------------------------------------------------------------
def test_curriculum_schedule_and_ramp(tools):
    w = tools.build(
        "curriculum",
        schedule={
            "direction@1": {"start": 0, "ramp": 0},
            "return@1": {"start": 2, "ramp": 3},
            "volume@1": {"start": 1, "ramp": 0, "weight": 0.5},
        },
    )
    seen = []
    for epoch in range(7):
        w.on_epoch_start(epoch)
        seen.append(w.weights())
    assert [s["direction@1"] for s in seen] == [1.0] * 7
    assert [s["return@1"] for s in seen] == pytest.approx([0, 0, 0.25, 0.5, 0.75, 1, 1])
    assert [s["volume@1"] for s in seen] == [0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert [s["volatility@1"] for s in seen] == [1.0] * 7  # not named: always on
    w.reset()
    assert w.weights() == seen[0]


def test_curriculum_inactive_task_gets_no_gradient(tools):
    model = tools.make_model()
    w = tools.build("curriculum", schedule={"return@1": {"start": 3}})
    w.on_epoch_start(0)
    w.backward(tools.make_losses(model), model)
    assert all(float(p.grad.abs().sum()) == 0 for p in model.task_parameters("return@1"))
    assert all(float(p.grad.abs().sum()) > 0 for p in model.task_parameters("direction@1"))


@pytest.mark.parametrize(
    ("schedule", "match"),
    [
        (
            {"retrun@1": {"start": 1}},
            r"unknown task\(s\) \['retrun@1'\]; tasks are \['direction@1'",
        ),
        (
            {n: {"start": 1} for n in ["direction@1", "return@1", "volatility@1", "volume@1"]},
            "no task is active at epoch 0",
        ),
        ({"return@1": {"start": -1}}, r"start = -1 is out of range; allowed: an integer >= 0"),
        ({"return@1": {"begin": 1}}, "unknown option.*'begin'"),
        ({"return@1": 3}, "must be a table"),
        ({}, "needs schedule"),
    ],
)
def test_curriculum_bad_schedule(schedule, match, tools):
    with pytest.raises(ConfigError, match=match):
        tools.build("curriculum", schedule=schedule)


# -- RLW ----------------------------------------------------------------------
@pytest.mark.parametrize("distribution", ["softmax_normal", "dirichlet"])
def test_rlw_weights_positive_sum_to_k_and_change(distribution, tools):
    w = tools.build("rlw", distribution=distribution, seed=3)
    seen = []
    for _ in range(20):
        w.combine({n: torch.tensor(1.0) for n in tools.TASKS})
        values = list(w.weights().values())
        assert all(v > 0 for v in values) and sum(values) == pytest.approx(4)
        seen.append(values)
    assert len({tuple(v) for v in seen}) == 20
    mean = torch.tensor(seen).mean(0)
    assert float((mean - 1).abs().max()) < 0.6  # symmetric: every task ~1 on average


# -- equal / fixed --------------------------------------------------------------
def test_fixed_is_the_weighted_sum(tools):
    model, ref = tools.make_model(), tools.make_model()
    w = tools.build("fixed", weights={"direction@1": 2.0, "return@1": 0.5})
    total = w.backward(tools.make_losses(model), model)
    losses = tools.make_losses(ref)
    expected = 2.0 * losses["direction@1"] + 0.5 * losses["return@1"]
    expected.backward()
    assert float(total) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert w.weights() == {
        "direction@1": 2.0,
        "return@1": 0.5,
        "volatility@1": 0.0,
        "volume@1": 0.0,
    }
    for x, y in zip(tools.grads_of(model), tools.grads_of(ref), strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (
            {"return@1": -1.0},
            r"weights.return@1 = -1.0 is out of range; allowed: a finite number >= 0",
        ),
        ({"return@1": float("nan")}, "finite number"),
        ({"return@1": True}, "finite number"),
        ({"return@1": 0.0}, "at least one weight"),
        ({"ret@1": 1.0}, r"unknown task\(s\) \['ret@1'\]"),
        (None, "needs weights"),
    ],
)
def test_fixed_bad_weights(weights, match, tools):
    with pytest.raises(ConfigError, match=match):
        tools.build("fixed", weights=weights)


def test_equal_is_the_plain_sum(tools):
    model, ref = tools.make_model(), tools.make_model()
    total = tools.build("equal").backward(tools.make_losses(model), model)
    expected = sum(tools.make_losses(ref).values())
    expected.backward()
    assert float(total) == pytest.approx(float(expected.detach()), rel=1e-6)
    for x, y in zip(tools.grads_of(model), tools.grads_of(ref), strict=True):
        torch.testing.assert_close(x, y)
