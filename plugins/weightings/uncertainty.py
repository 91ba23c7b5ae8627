"""Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtl_bt.errors import ConfigError
from mtl_bt.weighting.base import Weighting
from mtl_bt.weighting.options import parse_options, real


class Uncertainty(Weighting):
    """Total ``sum_k L_k / (2 e^{s_k}) + s_k / 2`` with learnable ``s_k = log sigma_k^2``.

    ``s`` starts at ``init`` (0) and is trained by the trainer's optimizer
    through ``parameters()``. The same (regression) form is used for every task,
    classification included; its stationary point is ``e^{s_k} = L_k``. ``s`` is
    clamped to ``[min_log_var, max_log_var]`` inside the loss so a task whose loss
    is ~0 (e.g. a constant target) cannot blow its weight up without bound.
    ``weights()`` reports the effective loss coefficient ``1 / (2 e^{s_k})``.
    """

    name = "uncertainty"
    SPEC = {
        "init": real(0.0, -20.0, 20.0),
        "min_log_var": real(-10.0, -50.0, 50.0),
        "max_log_var": real(10.0, -50.0, 50.0),
    }

    def __init__(self, task_names: Sequence[str], **options: Any) -> None:
        opts = parse_options(self.name, options, self.SPEC)
        super().__init__(task_names)
        if not opts["min_log_var"] < opts["max_log_var"]:
            raise ConfigError(
                f"weighting 'uncertainty': min_log_var = {opts['min_log_var']} must be "
                f"< max_log_var = {opts['max_log_var']}"
            )
        self.init = opts["init"]
        self.lo, self.hi = opts["min_log_var"], opts["max_log_var"]
        self.log_vars = torch.nn.Parameter(torch.full((self.k,), self.init))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_vars]

    def reset(self) -> None:
        with torch.no_grad():
            self.log_vars.fill_(self.init)
        self.log_vars.grad = None

    def _s(self) -> torch.Tensor:
        return self.log_vars.clamp(self.lo, self.hi)

    def weights(self) -> dict[str, float]:
        coef = 0.5 * torch.exp(-self._s().detach())
        return dict(zip(self.task_names, coef.tolist(), strict=True))

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack([losses[n].reshape(()) for n in self.task_names])
        s = self._s().to(stacked.dtype)
        return (0.5 * torch.exp(-s) * stacked + 0.5 * s).sum()
