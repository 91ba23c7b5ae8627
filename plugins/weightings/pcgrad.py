"""Projecting Conflicting Gradients (Yu et al., "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtl_bt.weighting.gradient import GRAD_METHODS, GramWeighting
from mtl_bt.weighting.options import choice, parse_options, seed


def pcgrad_matrix(gram: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PCGrad in coefficient space: ``C`` with projected gradients ``g_i' = C[i] @ G``.

    For each task i, in a fresh random order over the other tasks j, project
    the running ``g_i'`` off the ORIGINAL ``g_j`` when ``g_i' . g_j < 0``. Every
    ``g_i'`` stays a combination ``C[i] @ G``, so the dot products only need the
    Gram matrix: ``g_i' . g_j = C[i] @ gram[:, j]`` (O(K^2), not O(K^2 P)).
    """
    a = gram.shape[0]
    gm = gram.numpy()
    coef = torch.eye(a, dtype=torch.float64).numpy()
    for i in range(a):
        order = torch.randperm(a, generator=generator).tolist()
        for j in order:
            if j == i or gm[j, j] <= 0:
                continue
            dot = float(coef[i] @ gm[:, j])
            if dot < 0:
                coef[i, j] -= dot / gm[j, j]
    return torch.from_numpy(coef)


class PCGrad(GramWeighting):
    """Sum of the task gradients after projecting away pairwise conflicts.

    ``weights()`` reports the effective coefficients ``c_j`` of the update
    ``sum_j c_j g_j`` on the original gradients: all 1 when no pair conflicts;
    projecting ``g_i`` off a conflicting ``g_j`` adds a positive multiple of
    ``g_j``, so ``c_j > 1`` for a task others conflicted with.
    Random order from a ``torch.Generator`` seeded with ``seed``; ``reset()`` re-seeds.
    """

    name = "pcgrad"
    SPEC = {"seed": seed(), "grad_method": choice("loop", *GRAD_METHODS)}

    def __init__(self, task_names: Sequence[str], **options: Any) -> None:
        opts = parse_options(self.name, options, self.SPEC)
        super().__init__(task_names, grad_method=opts["grad_method"])
        self.seed = opts["seed"]
        self.generator = torch.Generator().manual_seed(self.seed)

    def reset(self) -> None:
        super().reset()
        self.generator = torch.Generator().manual_seed(self.seed)

    def coefficients(self, gram: torch.Tensor, losses: list[torch.Tensor]) -> torch.Tensor:
        return pcgrad_matrix(gram, self.generator).sum(dim=0)
