"""Example mtl-bt plugin: inverse-loss weighting.

Each task's weight is proportional to 1 / (its current loss), detached, and the
weights are rescaled to sum to K, so every task contributes about equally to
the combined loss.
"""

import torch

from mtl_bt import hookimpl
from mtl_bt.weighting import Weighting


class InverseLoss(Weighting):
    """w_k = K * (1/L_k) / sum_j (1/L_j), computed on detached losses."""

    def __init__(self, task_names, eps: float = 1e-8):
        super().__init__(task_names)
        self.eps = eps
        self.reset()

    def reset(self):
        self._weights = {name: 1.0 for name in self.task_names}

    def weights(self):
        return dict(self._weights)

    def combine(self, losses):
        inv = torch.stack([1.0 / (losses[n].detach() + self.eps) for n in self.task_names])
        w = self.k * inv / inv.sum()
        self._weights = {n: float(v) for n, v in zip(self.task_names, w, strict=True)}
        return sum(w[i] * losses[n] for i, n in enumerate(self.task_names))


@hookimpl
def register_weightings(register):
    register("example_inverse_loss", InverseLoss, "Example plugin: weights proportional to 1/loss.")
