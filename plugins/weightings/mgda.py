"""Multiple-Gradient Descent Algorithm (Desideri 2012; Sener & Koltun,
"Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtl_bt.weighting.gradient import GRAD_METHODS, GramWeighting
from mtl_bt.weighting.options import choice, integer, parse_options, real


def _line(v11: float, v12: float, v22: float) -> float:
    """gamma in [0, 1] minimising ||gamma x1 + (1 - gamma) x2||^2 (Sener & Koltun, Alg. 1)."""
    denom = v11 - 2.0 * v12 + v22
    if denom <= 0:  # x1 == x2
        return 1.0
    return float(min(1.0, max(0.0, (v22 - v12) / denom)))


def _affine_min(g: np.ndarray, support: list[int]) -> np.ndarray:
    """Weights (summing to 1) of the min-norm point of the affine hull of ``support``."""
    n = len(support)
    m = np.zeros((n + 1, n + 1))
    m[:n, :n] = g[np.ix_(support, support)]
    m[:n, n] = 1.0
    m[n, :n] = 1.0
    rhs = np.zeros(n + 1)
    rhs[n] = 1.0
    try:
        sol = np.linalg.solve(m, rhs)
        if np.all(np.isfinite(sol)) and np.allclose(m @ sol, rhs, atol=1e-9):
            return sol[:n]
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(m, rhs, rcond=None)[0][:n]  # affinely dependent points


def wolfe_min_norm(g: np.ndarray, max_iter: int = 250, eps: float = 1e-12) -> np.ndarray:
    """Wolfe's (1976) active-set min-norm-point algorithm on a scaled Gram matrix:
    exact (finite) where Frank-Wolfe is only sublinear near a zero min-norm point."""
    a = g.shape[0]
    support = [int(np.argmin(np.diag(g)))]
    alpha = np.zeros(a)
    alpha[support[0]] = 1.0
    for _ in range(max_iter):
        grad = g @ alpha
        j = int(np.argmin(grad))
        if grad[j] >= float(alpha @ grad) - eps or j in support:
            break
        support.append(j)
        for _ in range(a + 1):  # minor cycles: each drops at least one point
            y = _affine_min(g, support)
            if np.all(y > eps):
                alpha = np.zeros(a)
                alpha[support] = y
                break
            x = alpha[support]
            shrink = [(x[i] / (x[i] - y[i])) for i in range(len(support)) if y[i] <= eps]
            theta = min(min(shrink), 1.0)
            x = x + theta * (y - x)
            alpha = np.zeros(a)
            alpha[support] = np.maximum(x, 0.0)
            support = [s for s in support if alpha[s] > eps]
            alpha /= alpha.sum()
    return alpha


def min_norm_coefficients(
    gram: np.ndarray, max_iter: int = 250, tol: float = 1e-10, solver: str = "wolfe"
) -> np.ndarray:
    """alpha on the simplex minimising ``||alpha @ G||^2 = alpha gram alpha``.

    One task: [1]. Two tasks: exact closed form. More: ``solver="wolfe"``
    (exact active set, default) or ``"frank_wolfe"`` (MGDA-UB's solver: exact
    line search, started from the best pair's closed-form solution).
    """
    a = gram.shape[0]
    if a == 1:
        return np.ones(1)
    scale = float(np.trace(gram)) / a
    if not np.isfinite(scale) or scale <= 0:
        return np.full(a, 1.0 / a)
    g = gram / scale
    if a > 2 and solver == "wolfe":
        return wolfe_min_norm(g, max_iter)
    best, alpha = np.inf, np.full(a, 1.0 / a)
    for i in range(a):
        for j in range(i + 1, a):
            gamma = _line(g[i, i], g[i, j], g[j, j])
            cand = np.zeros(a)
            cand[i], cand[j] = gamma, 1.0 - gamma
            value = cand @ g @ cand
            if value < best:
                best, alpha = value, cand
    if a == 2:
        return alpha
    for _ in range(max_iter):
        grad = g @ alpha
        t = int(np.argmin(grad))
        v11 = float(alpha @ grad)
        v12 = float(grad[t])
        v22 = float(g[t, t])
        gamma = _line(v11, v12, v22)
        new = gamma * alpha
        new[t] += 1.0 - gamma
        if np.abs(new - alpha).sum() < tol:
            alpha = new
            break
        alpha = new
    return alpha


class MGDA(GramWeighting):
    """Update = min-norm point of the convex hull of the task gradients of the
    shared parameters (as MGDA-UB, but on parameter gradients). Solved on the
    Gram matrix: closed form for two tasks, Wolfe's exact active-set algorithm
    for more (``solver = "frank_wolfe"`` for MGDA-UB's approximate solver).
    The coefficients sum to 1; ``weights()`` reports them.

    A common descent direction for every task when one exists; when the
    gradients are Pareto-stationary the update is ~0. ``rescale = true``
    multiplies the update by K so its size matches the sum of losses.
    """

    name = "mgda"
    SPEC = {
        "max_iter": integer(250, 1),
        "tol": real(1e-10, 0.0, lo_open=True),
        "rescale": choice(False, False, True),
        "solver": choice("wolfe", "wolfe", "frank_wolfe"),
        "grad_method": choice("loop", *GRAD_METHODS),
    }

    def __init__(self, task_names: Sequence[str], **options: Any) -> None:
        opts = parse_options(self.name, options, self.SPEC)
        self.max_iter, self.tol, self.rescale = opts["max_iter"], opts["tol"], opts["rescale"]
        self.solver = opts["solver"]
        super().__init__(task_names, grad_method=opts["grad_method"])

    def initial_weights(self) -> list[float]:
        return [1.0 if self.rescale else 1.0 / self.k] * self.k

    def coefficients(self, gram: torch.Tensor, losses: list[torch.Tensor]) -> torch.Tensor:
        alpha = min_norm_coefficients(gram.numpy(), self.max_iter, self.tol, self.solver)
        if self.rescale:
            alpha = alpha * self.k
        return torch.from_numpy(alpha)
