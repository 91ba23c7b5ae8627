"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient
Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtl_bt.errors import ConfigError
from mtl_bt.models.base import MTLModel
from mtl_bt.weighting.base import Weighting
from mtl_bt.weighting.options import integer, parse_options, real


class GradNorm(Weighting):
    """Learnable w_k (start 1) on the losses; w is moved so that each task's
    gradient norm at the last shared layer tracks its relative training rate.

    Per step: the model gets the gradient of ``sum_k w_k L_k`` with the CURRENT
    w; then, with ``g_k = ||d L_k / d W||`` (W = ``model.last_shared_layer()``; when
    that is a list of tensors, the norm of all their gradients concatenated),
    ``G_k = w_k g_k``, ``r_k = (L_k / L_k(0)) / mean_j(L_j / L_j(0))`` and the
    detached target ``T_k = mean(G) r_k^alpha``, w takes one Adam step (its own
    optimizer, learning rate ``lr``) on ``sum_k |G_k - T_k|``, is floored at
    ``min_weight`` and renormalised to sum to K. ``L_k(0)`` is the mean loss of
    the first ``init_steps`` steps of the fold (w is not updated before it is
    known). Why its own optimizer: the renormalisation and positivity must follow
    every update, and weight decay on w would be meaningless. ``reset()``
    restores w = 1, forgets L(0) and restarts the optimizer.
    """

    name = "gradnorm"
    SPEC = {
        "alpha": real(1.5, 0.0),
        "lr": real(0.025, 0.0, 10.0, lo_open=True),
        "init_steps": integer(1, 1),
        "min_weight": real(1e-3, 0.0, 1.0, lo_open=True),
    }

    def __init__(self, task_names: Sequence[str], **options: Any) -> None:
        opts = parse_options(self.name, options, self.SPEC)
        super().__init__(task_names)
        self.alpha, self.lr = opts["alpha"], opts["lr"]
        self.init_steps, self.min_weight = opts["init_steps"], opts["min_weight"]
        self.reset()

    def reset(self) -> None:
        self.w = torch.ones(self.k, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.w], lr=self.lr)
        self.initial_losses: torch.Tensor | None = None
        self._loss_sum = torch.zeros(self.k, dtype=torch.float64)
        self._steps = 0

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.w.detach().tolist(), strict=True))

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack([losses[n].reshape(()) for n in self.task_names])
        return (self.w.detach().to(stacked.dtype) * stacked).sum()

    def _layer(self, model: MTLModel) -> list[torch.Tensor]:
        """``model.last_shared_layer()`` as a list (it may be one tensor or several)."""
        try:
            layer = model.last_shared_layer()
        except NotImplementedError:
            raise ConfigError(
                f"weighting 'gradnorm' needs the model's last shared layer, and "
                f"{type(model).__name__} has none; use another weighting (e.g. uncertainty, dwa)"
            ) from None
        return [layer] if isinstance(layer, torch.Tensor) else list(layer)

    def backward(self, losses: dict[str, torch.Tensor], model: MTLModel) -> torch.Tensor:
        layer = self._layer(model)
        loss_list = [losses[n].reshape(()) for n in self.task_names]
        norms = torch.zeros(self.k, dtype=torch.float64)
        for i, loss in enumerate(loss_list):
            if loss.requires_grad:
                grads = torch.autograd.grad(loss, layer, retain_graph=True, allow_unused=True)
                found = [g.detach().double().norm() for g in grads if g is not None]
                if found:  # the norm of all the layer's gradients taken together
                    norms[i] = torch.linalg.vector_norm(torch.stack(found))
        total = self.combine(losses)
        if total.requires_grad:
            total.backward()
        self.update(norms, torch.stack([loss.detach().double() for loss in loss_list]))
        return total.detach()

    def update(self, norms: torch.Tensor, losses: torch.Tensor) -> None:
        """One GradNorm step on w from unweighted gradient norms and losses (float64)."""
        if not (torch.isfinite(norms).all() and torch.isfinite(losses).all()):
            return
        if self.initial_losses is None:
            self._loss_sum += losses
            self._steps += 1
            if self._steps < self.init_steps:
                return
            self.initial_losses = self._loss_sum / self._steps
        l0 = self.initial_losses
        ratio = torch.where(l0 > 0, losses / torch.where(l0 > 0, l0, 1.0), 1.0)
        mean_ratio = ratio.mean()
        rel = ratio / mean_ratio if mean_ratio > 0 else torch.ones_like(ratio)
        with torch.no_grad():
            g = self.w * norms
            target = g.mean() * rel**self.alpha
        self.optimizer.zero_grad()
        objective = (self.w * norms - target).abs().sum()
        objective.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.w.clamp_(min=self.min_weight)
            self.w.mul_(self.k / self.w.sum())
