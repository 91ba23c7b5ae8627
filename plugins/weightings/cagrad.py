"""Conflict-Averse Gradient descent (Liu et al., "Conflict-Averse Gradient Descent
for Multi-task Learning", NeurIPS 2021)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtl_bt.plugins.weightings.mgda import min_norm_coefficients
from mtl_bt.weighting.gradient import GRAD_METHODS, GramWeighting
from mtl_bt.weighting.options import choice, integer, parse_options, real


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    idx = np.arange(1, len(v) + 1)
    rho = np.nonzero(u - css / idx > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1.0), 0.0)


def _on_support(g: np.ndarray, gb: np.ndarray, cn: float, support: np.ndarray) -> np.ndarray | None:
    """The exact minimiser when ``support`` is its set of positive weights, or None.

    KKT on the support: ``gb + cn M w / rho = mu`` with ``rho = ||g_w||``; solving
    gives ``w_S = Q (mu 1 - gb_S) / sqrt(disc)`` with ``Q = M_SS^-1`` and ``mu`` the
    larger root of ``(mu 1 - gb)^T Q (mu 1 - gb) = cn^2``. Accepted only if the
    weights are positive and no task off the support would lower the objective.
    """
    idx = np.flatnonzero(support)
    m = g[np.ix_(idx, idx)]
    try:
        q_one = np.linalg.solve(m, np.ones(len(idx)))
        q_a = np.linalg.solve(m, gb[idx])
    except np.linalg.LinAlgError:
        return None
    big_a, big_b, a_q_a = q_one.sum(), q_one @ gb[idx], gb[idx] @ q_a
    disc = big_b**2 - big_a * (a_q_a - cn**2)
    if not (big_a > 0 and disc > 0):
        return None
    mu = (big_b + np.sqrt(disc)) / big_a
    w_s = (mu * q_one - q_a) / np.sqrt(disc)
    if not np.all(w_s > 0) or abs(w_s.sum() - 1.0) > 1e-9:
        return None
    w = np.zeros(len(g))
    w[idx] = w_s
    rho = np.sqrt(max(float(w @ g @ w), 0.0))
    if rho <= 0:
        return None
    grad = gb + cn * (g @ w) / rho
    if np.any(grad < mu - 1e-9 * max(1.0, abs(mu))):
        return None
    return w


def cagrad_weights(
    gram: np.ndarray,
    c: float,
    w0: np.ndarray | None = None,
    max_iter: int = 200,
    tol: float = 1e-12,
) -> np.ndarray:
    """w on the simplex minimising ``g_w . g0 + c ||g0|| ||g_w||`` (CAGrad's dual).

    On the Gram matrix scaled by its mean diagonal (the minimiser does not
    depend on that scale): try the exact solution on the full support (or the
    warm start's), else projected gradient descent with Armijo backtracking,
    retrying the exact solution on the current support every few iterations;
    if it has not converged, the exact solution on the nearest support whose
    KKT conditions hold (K <= 8; KKT is sufficient: the problem is convex).
    """
    a = gram.shape[0]
    scale = float(np.trace(gram)) / a
    if a == 1 or not np.isfinite(scale) or scale <= 0:
        return np.full(a, 1.0 / a)
    g = gram / scale
    b = np.full(a, 1.0 / a)
    gb = g @ b
    cn = c * np.sqrt(max(float(b @ gb), 0.0))
    if cn <= 0:
        return b
    if c >= 1:
        # F >= (c - 1) ||g0|| ||g_w|| >= 0, so if 0 is in the hull of the task
        # gradients (Pareto-stationary) the min-norm weights (g_w = 0) are optimal;
        # the objective is not smooth there, which iterative solvers crawl towards.
        alpha = min_norm_coefficients(g)
        if float(alpha @ g @ alpha) <= 1e-12:
            return alpha

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        gw = g @ w
        norm = np.sqrt(max(float(w @ gw), 0.0))
        grad = gb + (cn * gw / norm if norm > 1e-12 else 0.0)
        return float(w @ gb) + cn * norm, grad

    w = b.copy() if w0 is None or len(w0) != a else w0.copy()
    for support in (np.ones(a, dtype=bool), w > 1e-12):
        exact = _on_support(g, gb, cn, support)
        if exact is not None:
            return exact
    value, grad = f(w)
    step = 1.0
    for it in range(max_iter):
        while True:
            new = project_simplex(w - step * grad)
            new_value, new_grad = f(new)
            if new_value <= value - 1e-4 * float(grad @ (w - new)) or step < 1e-12:
                break
            step *= 0.5
        done = np.abs(new - w).sum() < tol
        w, value, grad = new, new_value, new_grad
        step *= 2.0
        if done:
            break
        if it % 4 == 3:
            exact = _on_support(g, gb, cn, w > 1e-12)
            if exact is not None:
                return exact
    if a <= 8:  # PGD crawls when near-degenerate: find the support whose KKT holds
        current = w > 1e-12
        subsets = [np.array([(m >> i) & 1 for i in range(a)], dtype=bool) for m in range(1, 2**a)]
        subsets.sort(key=lambda sub: int(np.sum(sub != current)))
        for sub in subsets:
            exact = _on_support(g, gb, cn, sub)
            if exact is not None:
                return exact
    return w


class CAGrad(GramWeighting):
    """``d = (g0 + c ||g0|| g_w / ||g_w||) / scale`` with ``g0`` the mean gradient.

    ``g_w`` is the weighted gradient solving CAGrad's dual (``cagrad_weights``);
    ``d`` maximises the worst task's improvement within a ball of radius
    ``c ||g0||`` around ``g0``. With ``c >= 1`` and Pareto-stationary tasks
    (0 in the hull of their gradients, checked with MGDA's min-norm solver) no
    step improves every task and ``d = 0``. ``rescale`` as in the paper's code: 0 none,
    1 divide by ``1 + c^2`` (default), 2 divide by ``1 + c``. ``c = 0`` gives the
    mean gradient. ``weights()`` reports the effective coefficients of ``d`` on
    the task gradients (they sum to ~1). The dual solve warm-starts from the last
    step's solution; ``reset()`` clears it.
    """

    name = "cagrad"
    SPEC = {
        "c": real(0.5, 0.0),
        "rescale": choice(1, 0, 1, 2),
        "max_iter": integer(200, 1),
        "grad_method": choice("loop", *GRAD_METHODS),
    }

    def __init__(self, task_names: Sequence[str], **options: Any) -> None:
        opts = parse_options(self.name, options, self.SPEC)
        super().__init__(task_names, grad_method=opts["grad_method"])
        self.c, self.rescale, self.max_iter = opts["c"], opts["rescale"], opts["max_iter"]
        self._w: np.ndarray | None = None

    def initial_weights(self) -> list[float]:
        return [1.0 / self.k] * self.k

    def reset(self) -> None:
        super().reset()
        self._w = None

    def coefficients(self, gram: torch.Tensor, losses: list[torch.Tensor]) -> torch.Tensor:
        a = gram.shape[0]
        b = np.full(a, 1.0 / a)
        coef = b.copy()
        if self.c > 0:
            gm = gram.numpy()
            w0 = self._w if self._w is not None and len(self._w) == a else None
            w = cagrad_weights(gm, self.c, w0, self.max_iter)
            self._w = w
            g0_norm = np.sqrt(max(float(b @ gm @ b), 0.0))
            gw_norm = np.sqrt(max(float(w @ gm @ w), 0.0))
            # g_w -> 0 at the optimum only when 0 is in the hull of the task
            # gradients (Pareto-stationary) and c >= 1: no step improves every task,
            # g_w/|g_w| is noise, and the best point of the ball is the one nearest
            # 0, (1 - c)+ g0. (The paper's code instead adds 1e-4 to |g_w|.)
            floor = 1e-6 * np.sqrt(max(float(np.trace(gm)) / a, 0.0))
            if not np.isfinite(gw_norm) or gw_norm <= floor:
                coef = b * max(0.0, 1.0 - self.c)
            else:
                coef = b + (self.c * g0_norm / gw_norm) * w
        if self.rescale == 1:
            coef = coef / (1.0 + self.c**2)
        elif self.rescale == 2:
            coef = coef / (1.0 + self.c)
        return torch.from_numpy(coef)
