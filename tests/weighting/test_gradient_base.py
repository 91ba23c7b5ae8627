"""The gradient-level plumbing: per-task gradients, head gradients, writing .grad."""

from __future__ import annotations

import pytest
import torch

from mtl_bt.weighting.gradient import GradientWeighting, GramWeighting, per_task_gradients


class SumGrad(GradientWeighting):
    """Sums the task gradients: must reproduce the plain sum of losses exactly."""

    name = "sum_grad"

    def aggregate(self, grads, losses):
        return grads.sum(dim=0)


class GramSum(GramWeighting):
    name = "gram_sum"

    def coefficients(self, gram, losses):
        return torch.ones(gram.shape[0], dtype=torch.float64)


def _reference_grads(tools, seed=0):
    model = tools.make_model(seed=seed)
    total = torch.stack(list(tools.make_losses(model).values())).sum()
    total.backward()
    return tools.grads_of(model)


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_per_task_gradients_match_one_backward_per_task(method, tools):
    model = tools.make_model()
    params = list(model.parameters())
    losses = list(tools.make_losses(model).values())
    expected = [
        torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) for loss in losses
    ]
    got = per_task_gradients(losses, params, method)
    for k in range(len(losses)):
        for g, e in zip(got, expected[k], strict=True):
            torch.testing.assert_close(g[k], torch.zeros_like(g[k]) if e is None else e)


@pytest.mark.parametrize("cls", [SumGrad, GramSum])
@pytest.mark.parametrize("method", ["loop", "batched"])
def test_summing_scheme_reproduces_plain_sum_everywhere(cls, method, tools):
    model = tools.make_model()
    w = cls(tools.TASKS, grad_method=method)
    total = w.backward(tools.make_losses(model), model)
    for got, ref in zip(tools.grads_of(model), _reference_grads(tools), strict=True):
        torch.testing.assert_close(got, ref)
    expected = sum(float(v.detach()) for v in tools.make_losses(tools.make_model()).values())
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert w.weights() == {n: 1.0 for n in tools.TASKS}


def test_task_heads_get_only_their_own_gradient_under_pcgrad(tools):
    model = tools.make_model()
    w = tools.build("pcgrad")
    w.backward(tools.make_losses(model), model)
    ref = tools.make_model()
    losses = tools.make_losses(ref)
    for name in tools.TASKS:
        head = ref.task_parameters(name)
        expected = torch.autograd.grad(losses[name], head, retain_graph=True)
        for p, e in zip(model.task_parameters(name), expected, strict=True):
            torch.testing.assert_close(p.grad, e)


def test_gradients_accumulate_onto_existing_grad(tools):
    """The trainer adds the regularisation gradient after; we must add, not overwrite."""
    model = tools.make_model()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    SumGrad(tools.TASKS).backward(tools.make_losses(model), model)
    for got, ref in zip(tools.grads_of(model), _reference_grads(tools), strict=True):
        torch.testing.assert_close(got, ref + 1)


def test_non_finite_task_gradient_is_left_out_with_a_warning(tools):
    model = tools.make_model()
    losses = tools.make_losses(model)
    losses["return@1"] = losses["return@1"] * float("inf")
    w = tools.build("pcgrad")
    with pytest.warns(RuntimeWarning, match=r"non-finite shared gradient.*return@1"):
        w.backward(losses, model)
    for p in model.shared_parameters():
        assert torch.isfinite(p.grad).all()
    assert w.weights()["return@1"] == 0.0


def test_zero_gradient_task_has_zero_effective_weight(tools):
    model = tools.make_model()
    losses = tools.make_losses(model)
    losses["volume@1"] = losses["volume@1"] * 0.0
    w = tools.build("mgda")
    w.backward(losses, model)
    assert w.weights()["volume@1"] == 0.0
    assert sum(w.weights().values()) == pytest.approx(1.0)
    # the update is not stalled by the inactive task
    assert any(p.grad.abs().sum() > 0 for p in model.shared_parameters())


def test_invalid_grad_method():
    with pytest.raises(ValueError, match="grad_method"):
        SumGrad(["a@1"], grad_method="fast")
