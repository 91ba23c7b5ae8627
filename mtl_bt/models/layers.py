"""Small building blocks the architectures share."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm that also works on a training batch of one row.

    A batch of one has no variance, so plain BatchNorm raises in train mode.
    Here such a batch is normalised with the running statistics (exactly as in
    eval mode) and leaves them unchanged; larger batches behave as usual
    (batch statistics, running-statistics update). Eval always uses the
    running statistics gathered on training batches, never on the rows being
    predicted.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                training=False,
                momentum=0.0,
                eps=self.eps,
            )
        return super().forward(x)


def norm_layer(kind: str, width: int) -> nn.Module:
    """``layer`` | ``batch`` | ``none`` normalisation for a hidden layer."""
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "batch":
        return SafeBatchNorm1d(width)
    return nn.Identity()


def mlp(
    in_features: int, widths: Sequence[int], dropout: float = 0.0, norm: str = "none"
) -> nn.Sequential:
    """Linear -> norm -> ReLU -> dropout, once per width (empty widths: identity)."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_features, width), norm_layer(norm, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    return nn.Sequential(*layers)


def linears(module: nn.Module) -> list[nn.Linear]:
    """The Linear layers of ``module`` in definition order."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


class ExpertLayer(nn.Module):
    """``n`` independent Linear layers evaluated at once (mixture-of-experts).

    One weight tensor ``(n, in, out)`` for all experts, so the experts' last
    layer is a single parameter every task's gate reaches (GradNorm needs one).
    Input ``(batch, in)`` (same input to every expert) or ``(batch, n, in)``.
    """

    def __init__(self, n: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n, out_features))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default init, per expert
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return torch.einsum("bi,nio->bno", x, self.weight) + self.bias
        return torch.einsum("bni,nio->bno", x, self.weight) + self.bias


class Experts(nn.Module):
    """``n`` expert MLPs (ReLU + dropout between layers): ``(batch, in) -> (batch, n, out)``."""

    def __init__(self, n: int, in_features: int, widths: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for width in widths:
            self.layers.append(ExpertLayer(n, in_features, width))
            in_features = width
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.dropout(torch.relu(layer(x)))
        return x


class Gate(nn.Module):
    """Softmax over ``n`` experts from the gate's input; mixes expert outputs."""

    def __init__(self, in_features: int, n: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, n)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=-1)

    def forward(self, x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """``x (batch, in)``, ``experts (batch, n, d)`` -> ``(batch, d)``."""
        return torch.einsum("bn,bnd->bd", self.weights(x), experts)
