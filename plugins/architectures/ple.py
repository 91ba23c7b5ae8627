"""Progressive layered extraction (Tang et al. 2020): task and shared experts, level by level."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mtl_bt.models import MTLModel
from mtl_bt.models import kernel as kn
from mtl_bt.models import numpy_forward as nf
from mtl_bt.models.layers import Experts, Gate
from mtl_bt.tasks.base import TaskSpec


class PLE(MTLModel):
    """Each level: task-k experts and shared experts; task-k gate mixes [task-k + shared]
    experts into task k's next input; below the last level a shared gate mixes all experts
    into the next shared input. Level l has width ``hidden[l]`` (last width repeated).

    Which parameters only task k's loss reaches: its experts at the last level, its gates at
    the last two levels, its head. Lower-level task experts feed the shared gate, so every
    task reaches them: they are shared parameters, like the shared experts and gates.
    """

    architecture = "ple"

    def __init__(
        self,
        in_features: int,
        tasks: Sequence[TaskSpec],
        *,
        levels: int = 2,
        n_shared_experts: int = 2,
        n_task_experts: int = 1,
        **common: Any,
    ) -> None:
        super().__init__(in_features, tasks, **common)
        n_levels = self._int("levels", levels, 1)
        n_shared = self._int("n_shared_experts", n_shared_experts, 1)
        n_task = self._int("n_task_experts", n_task_experts, 1)
        d_in = self.stage_features
        self.levels = nn.ModuleList()
        for lvl in range(n_levels):
            width = self.hidden[min(lvl, len(self.hidden) - 1)]
            level = nn.ModuleDict(
                {
                    "shared": Experts(n_shared, d_in, [width], self.dropout),
                    "task": nn.ModuleDict(
                        {t.name: Experts(n_task, d_in, [width], self.dropout) for t in self.tasks}
                    ),
                    "gate": nn.ModuleDict(
                        {t.name: Gate(d_in, n_task + n_shared) for t in self.tasks}
                    ),
                }
            )
            if lvl < n_levels - 1:
                level["shared_gate"] = Gate(d_in, n_task * len(self.tasks) + n_shared)
            self.levels.append(level)
            d_in = width
        self.heads = nn.ModuleDict({t.name: nn.Linear(d_in, t.out_dim) for t in self.tasks})

    def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        xs = dict.fromkeys(self.task_names, h)
        shared_x = h
        for level in self.levels:
            shared = level["shared"](shared_x)  # (batch, n_shared, width)
            own = {n: level["task"][n](xs[n]) for n in self.task_names}
            if "shared_gate" in level:
                shared_x = level["shared_gate"](shared_x, torch.cat([*own.values(), shared], dim=1))
            xs = {
                n: level["gate"][n](xs[n], torch.cat([own[n], shared], dim=1))
                for n in self.task_names
            }
        return {n: self._out(self.heads[n](xs[n])) for n in self.task_names}

    def numpy_predict(self) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        names = self.task_names
        levels = [
            (
                nf.experts(level["shared"]),
                {n: nf.experts(level["task"][n]) for n in names},
                {n: nf.gate(level["gate"][n]) for n in names},
                nf.gate(level["shared_gate"]) if "shared_gate" in level else None,
            )
            for level in self.levels
        ]
        heads = {n: nf.sequential(self.heads[n]) for n in names}

        def predict(h: np.ndarray) -> dict[str, np.ndarray]:
            xs = dict.fromkeys(names, h)
            shared_x = h
            for shared_experts, task_experts, task_gates, shared_gate in levels:
                shared = shared_experts(shared_x)
                own = {n: task_experts[n](xs[n]) for n in names}
                if shared_gate is not None:
                    shared_x = shared_gate(
                        shared_x, np.concatenate([*own.values(), shared], axis=1)
                    )
                xs = {
                    n: task_gates[n](xs[n], np.concatenate([own[n], shared], axis=1)) for n in names
                }
            return {n: nf.squeeze(heads[n](xs[n])) for n in names}

        return predict

    def kernel_predict(self, prog: kn.Program, h: kn.Slot) -> dict[str, kn.Slot]:
        names = self.task_names
        k = len(names)
        xs = dict.fromkeys(names, h)
        shared_x = h
        for level in self.levels:
            n_s = level["shared"].layers[0].weight.shape[0]
            n_t = level["task"][names[0]].layers[0].weight.shape[0]
            width = level["shared"].out_features
            # [task 1 experts, .., task K experts, shared experts]: the shared gate's order
            block = prog.slot((k * n_t + n_s) * width)
            own = prog.split(block, [n_t * width] * k + [n_s * width])
            shared_gate = level["shared_gate"] if "shared_gate" in level else None
            gates = [level["gate"][n].linear for n in names]
            gates += [shared_gate.linear] if shared_gate is not None else []
            if all(xs[n] == shared_x for n in names):  # one input: one op each for all
                prog.experts([*(level["task"][n] for n in names), level["shared"]], shared_x, block)
                logits = prog.split(prog.linears(gates, shared_x), [g.out_features for g in gates])
            else:
                for i, n in enumerate(names):
                    prog.experts([level["task"][n]], xs[n], own[i])
                prog.experts([level["shared"]], shared_x, own[k])
                srcs = [xs[n] for n in names] + [shared_x]
                logits = [prog.linear(g, src) for g, src in zip(gates, srcs, strict=False)]
            if shared_gate is not None:
                shared_x = prog.gate(logits[k], [(block, k * n_t + n_s)])
            xs = {
                n: prog.gate(logits[i], [(own[i], n_t), (own[k], n_s)]) for i, n in enumerate(names)
            }
        return {n: prog.sequential(self.heads[n], xs[n]) for n in names}

    def task_modules(self, name: str) -> list[nn.Module]:
        last = len(self.levels) - 1
        modules: list[nn.Module] = [self.heads[name]]
        for lvl, level in enumerate(self.levels):
            if lvl == last:
                modules.append(level["task"][name])
            if lvl >= last - 1:
                modules.append(level["gate"][name])
        return modules

    def last_shared_layer(self) -> nn.Parameter:
        """The last level's shared experts (every task's gate reads them)."""
        return self.levels[-1]["shared"].layers[-1].weight
