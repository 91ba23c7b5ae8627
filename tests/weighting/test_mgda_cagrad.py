"""MGDA (min-norm point) and CAGrad laws, with scipy as an independent solver."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize

from mtl_bt.plugins.weightings.cagrad import CAGrad, cagrad_weights, project_simplex
from mtl_bt.plugins.weightings.mgda import MGDA

ONE = torch.tensor(1.0)


def _grads(k: int, p: int, seed: int) -> torch.Tensor:
    return torch.randn(k, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _mgda(grads: torch.Tensor, **options) -> tuple[torch.Tensor, MGDA]:
    w = MGDA([f"t{i}@1" for i in range(grads.shape[0])], **options)
    return w.aggregate(grads, [ONE] * grads.shape[0]), w


def test_mgda_two_tasks_is_the_analytic_min_norm_point():
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([0.0, 2.0], dtype=torch.float64)
    gamma = float((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)))  # = 0.8
    d, w = _mgda(torch.stack([g1, g2]))
    torch.testing.assert_close(d, gamma * g1 + (1 - gamma) * g2)
    torch.testing.assert_close(d, torch.tensor([0.8, 0.4], dtype=torch.float64))
    assert list(w.weights().values()) == pytest.approx([0.8, 0.2])


@given(st.integers(2, 30), st.integers(0, 10_000))
def test_mgda_two_tasks_analytic_random(p, seed):
    g = _grads(2, p, seed)
    g1, g2 = g
    gamma = min(1.0, max(0.0, float((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)))))
    d, _ = _mgda(g)
    torch.testing.assert_close(d, gamma * g1 + (1 - gamma) * g2)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_mgda_identical_gradients_return_that_gradient(k):
    g = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    d, w = _mgda(g.repeat(k, 1))
    torch.testing.assert_close(d, g)
    assert sum(w.weights().values()) == pytest.approx(1.0)


@given(st.integers(3, 6), st.integers(2, 12), st.integers(0, 10_000))
def test_mgda_min_norm_optimality(k, p, seed):
    """KKT of min ||G^T a|| on the simplex: d . g_k >= ||d||^2 for every k, and
    ||d|| matches an independent solver (scipy SLSQP), to Frank-Wolfe's accuracy
    (MGDA-UB's solver: sublinear when the origin is in the hull)."""
    g = _grads(k, p, seed)
    d, w = _mgda(g)
    coef = np.array(list(w.weights().values()))
    assert coef.min() >= 0 and coef.sum() == pytest.approx(1.0)
    gram = (g @ g.T).numpy()
    ref = minimize(
        lambda a: a @ gram @ a,
        np.full(k, 1 / k),
        jac=lambda a: 2 * gram @ a,
        bounds=[(0, 1)] * k,
        constraints={"type": "eq", "fun": lambda a: a.sum() - 1},
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    scale = float(torch.diag(g @ g.T).mean())
    assert float(d @ d) <= ref.fun + 1e-5 * scale
    assert float((g @ d).min()) >= float(d @ d) - 1e-4 * scale


def test_mgda_rescale_multiplies_by_k():
    g = _grads(3, 5, 1)
    d, _ = _mgda(g)
    d3, _ = _mgda(g, rescale=True)
    torch.testing.assert_close(d3, 3 * d)


def _cagrad(grads: torch.Tensor, **options) -> torch.Tensor:
    w = CAGrad([f"t{i}@1" for i in range(grads.shape[0])], **options)
    return w.aggregate(grads, [ONE] * grads.shape[0])


@given(st.integers(1, 6), st.integers(1, 10), st.integers(0, 10_000), st.sampled_from([0, 1, 2]))
def test_cagrad_c0_is_the_mean_gradient(k, p, seed, rescale):
    g = _grads(k, p, seed)
    torch.testing.assert_close(_cagrad(g, c=0.0, rescale=rescale), g.mean(0))


def test_simplex_projection():
    v = np.array([0.5, 2.0, -1.0])
    w = project_simplex(v)
    assert w.sum() == pytest.approx(1.0) and w.min() >= 0
    np.testing.assert_allclose(w, [0.0, 1.0, 0.0])
    np.testing.assert_allclose(project_simplex(np.array([0.2, 0.3, 0.5])), [0.2, 0.3, 0.5])


@given(st.integers(2, 5), st.integers(2, 10), st.integers(0, 10_000), st.floats(0.1, 1.5))
def test_cagrad_solves_its_problem(k, p, seed, c):
    """d = g0 + c|g0| g_w/|g_w| lies on the ball |d - g0| = c|g0| and its worst task
    improvement min_k g_k . d is as good as scipy's solution of the dual."""
    g = _grads(k, p, seed)
    g0 = g.mean(0)
    d = _cagrad(g, c=c, rescale=0)
    assert float((d - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-6) + 1e-9
    gram = (g @ g.T).numpy()
    b = np.full(k, 1 / k)
    cn = c * np.sqrt(b @ gram @ b)
    ref = minimize(
        lambda x: x @ gram @ b + cn * np.sqrt(x @ gram @ x + 1e-12),
        b,
        bounds=[(0, 1)] * k,
        constraints={"type": "eq", "fun": lambda x: x.sum() - 1},
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 500},
    )
    w_ref = torch.from_numpy(ref.x)
    gw = w_ref @ g
    d_ref = g0 + cn / gw.norm() * gw
    scale = float(torch.diag(g @ g.T).mean())
    assert float((g @ d).min()) >= float((g @ d_ref).min()) - 1e-5 * scale
    ours = cagrad_weights(gram, c)
    # the dual is non-smooth where g_w = 0 (Pareto-stationary, c >= 1): 1e-6 there
    assert ours @ gram @ b + cn * np.sqrt(max(ours @ gram @ ours, 0)) <= ref.fun + 1e-6 * scale


def test_cagrad_rescale_modes():
    g = _grads(3, 4, 2)
    d0 = _cagrad(g, c=0.5, rescale=0)
    torch.testing.assert_close(_cagrad(g, c=0.5, rescale=1), d0 / 1.25)
    torch.testing.assert_close(_cagrad(g, c=0.5, rescale=2), d0 / 1.5)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 8), st.integers(0, 10_000))
def test_mgda_with_duplicated_and_collinear_gradients(distinct, copies, p, seed):
    """Affinely dependent points (copies, scaled copies) must not break the solver."""
    base = _grads(distinct, p, seed)
    g = torch.cat([base] + [base * (1 + i) for i in range(copies)])
    d, w = _mgda(g)
    assert torch.isfinite(d).all()
    coef = np.array(list(w.weights().values()))
    assert coef.min() >= -1e-12 and coef.sum() == pytest.approx(1.0)
    scale = float(torch.diag(g @ g.T).mean())
    assert float((g @ d).min()) >= float(d @ d) - 1e-6 * scale
