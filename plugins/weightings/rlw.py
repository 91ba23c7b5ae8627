"""Random Loss Weighting (Lin et al., "Reasonable Effectiveness of Random
Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtl_bt.weighting.base import Weighting
from mtl_bt.weighting.options import choice, parse_options, seed


class RLW(Weighting):
    """Fresh random weights every step, scaled to sum to K.

    ``distribution = "softmax_normal"``: ``K softmax(z)``, ``z ~ N(0, I)`` (the
    paper's default); ``"dirichlet"``: ``K * Dirichlet(1, ..., 1)``. Drawn from the
    scheme's own generator seeded with ``seed``; ``reset()`` re-seeds it.
    ``weights()`` reports the weights of the latest step (1s before the first).
    """

    name = "rlw"
    SPEC = {"distribution": choice("softmax_normal", "softmax_normal", "dirichlet"), "seed": seed()}

    def __init__(self, task_names: Sequence[str], **options: Any) -> None:
        opts = parse_options(self.name, options, self.SPEC)
        super().__init__(task_names)
        self.distribution = opts["distribution"]
        self.seed = opts["seed"]
        self.reset()

    def reset(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)
        self._weights = [1.0] * self.k

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._weights, strict=True))

    def _draw(self) -> torch.Tensor:
        if self.distribution == "dirichlet":
            # Dirichlet(1) = normalised Exp(1) draws: -log(U), U ~ Uniform(0, 1]
            u = 1.0 - torch.rand(self.k, generator=self.generator, dtype=torch.float64)
            e = -torch.log(u)
            return self.k * e / e.sum()
        z = torch.randn(self.k, generator=self.generator, dtype=torch.float64)
        return self.k * torch.softmax(z, dim=0)

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        w = self._draw()
        self._weights = w.tolist()
        stacked = torch.stack([losses[n].reshape(()) for n in self.task_names])
        return (w.to(stacked.dtype) * stacked).sum()
