"""Gradient-level weighting: the plumbing every such scheme shares, done once.

Per step it takes the per-task gradients of the model's SHARED parameters as a
``(K, P)`` matrix ``G`` (one ``autograd.grad`` per task by default, or one batched
vector-Jacobian product with ``grad_method="batched"``), lets the scheme turn
``G`` into one update vector (``aggregate``), and writes that into the shared
``.grad``. Every other parameter (task heads, and anything the model does not
list as shared) gets the gradient of the plain sum of losses, which for a task
head is exactly its own task's gradient, since no other loss reaches it.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtl_bt.models.base import MTLModel
from mtl_bt.weighting.base import Weighting

#: How per-task gradients are taken: "loop" runs one backward pass per task (fastest
#: measured on CPU for MLPs of width >= 64, works for every model); "batched" runs one
#: vmapped backward (``is_grads_batched``) and falls back to "loop" where autograd cannot batch.
GRAD_METHODS = ("loop", "batched")


def _unique(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _set_grad(param: torch.Tensor, grad: torch.Tensor) -> None:
    """Add ``grad`` (a fresh tensor we own) to ``param.grad``: adopted as is when
    there is none yet, else added (the trainer may add a regularisation gradient
    after us, or a caller may have put one there before)."""
    if grad.dtype != param.dtype:
        grad = grad.to(param.dtype)
    if param.grad is None:
        param.grad = grad.detach()
    else:
        param.grad.add_(grad.detach())


def per_task_gradients(
    losses: Sequence[torch.Tensor], params: Sequence[torch.Tensor], method: str = "loop"
) -> list[torch.Tensor]:
    """Gradient of each loss w.r.t. each param: one ``(K, *param.shape)`` tensor per param.

    ``batched`` runs one backward pass over the stacked losses with an identity
    of cotangents (vmap over autograd); ``loop`` runs K backward passes.
    Parameters a loss does not reach get zeros.
    """
    matrix, _ = task_gradients(losses, list(params), [], method)
    out, offset = [], 0
    for p in params:
        out.append(matrix[:, offset : offset + p.numel()].reshape(len(losses), *p.shape))
        offset += p.numel()
    return out


def task_gradients(
    losses: Sequence[torch.Tensor],
    shared: Sequence[torch.Tensor],
    others: Sequence[torch.Tensor],
    method: str = "loop",
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """``(K, P)`` per-task gradients of ``shared`` (flattened, concatenated) and the
    gradient of the SUM of losses for each of ``others`` (None where unreached).

    ``loop``: one ``autograd.grad`` per task (the graph is kept until the last);
    ``batched``: one vmapped backward over an identity of cotangents.
    """
    k = len(losses)
    params = [*shared, *others]
    n_shared = len(shared)
    width = sum(p.numel() for p in shared)
    ref = shared[0] if shared else None
    dtype = ref.dtype if ref is not None else torch.float32
    device = ref.device if ref is not None else None
    if not any(loss.requires_grad for loss in losses):
        return torch.zeros(k, width, dtype=dtype, device=device), [None] * len(others)
    if method == "batched":
        stacked = torch.stack([loss.reshape(()) for loss in losses])
        eye = torch.eye(k, dtype=stacked.dtype, device=stacked.device)
        # retain_graph: if vmap fails halfway, the caller can still fall back to the loop
        grads = torch.autograd.grad(
            stacked,
            params,
            grad_outputs=eye,
            is_grads_batched=True,
            allow_unused=True,
            retain_graph=True,
        )
        blocks = [
            torch.zeros(k, p.numel(), dtype=p.dtype, device=p.device)
            if g is None
            else g.reshape(k, -1)
            for p, g in zip(shared, grads[:n_shared], strict=True)
        ]
        matrix = torch.cat(blocks, dim=1) if blocks else torch.zeros(k, 0, dtype=dtype)
        return matrix, [None if g is None else g.sum(0) for g in grads[n_shared:]]

    def flat(p: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        return (
            torch.zeros(p.numel(), dtype=p.dtype, device=p.device) if g is None else g.reshape(-1)
        )

    rows: list[torch.Tensor | None] = [None] * k
    other_sums: list[torch.Tensor | None] = [None] * len(others)
    needs = [i for i, loss in enumerate(losses) if loss.requires_grad]
    for n, i in enumerate(needs):
        grads = torch.autograd.grad(
            losses[i], params, retain_graph=n < len(needs) - 1, allow_unused=True
        )
        if shared:
            rows[i] = torch.cat([flat(p, g) for p, g in zip(shared, grads[:n_shared], strict=True)])
        for j, g in enumerate(grads[n_shared:]):
            if g is not None:
                other_sums[j] = g if other_sums[j] is None else other_sums[j] + g
    zero = torch.zeros(width, dtype=dtype, device=device)
    matrix = torch.stack([zero if row is None else row for row in rows])
    return matrix, other_sums


class GradientWeighting(Weighting):
    """Base of gradient-level schemes: subclasses implement ``aggregate``.

    ``aggregate(G, losses)`` gets the ``(A, P)`` gradients of the shared
    parameters of the A tasks active this step (finite, not all zero) and their
    losses, and returns the ``(P,)`` update. Tasks whose shared gradient is
    exactly zero (e.g. every target masked) are left out of that step with
    effective weight 0; non-finite ones too, with a warning. A model without
    shared parameters (e.g. soft sharing) falls back to the plain sum of losses.
    Effective weights for ``weights()`` come from ``set_effective_weights``
    (default: 1 for every active task).
    """

    name = "gradient"

    def __init__(
        self, task_names: Sequence[str], grad_method: str = "loop", **options: Any
    ) -> None:
        super().__init__(task_names, **options)
        if grad_method not in GRAD_METHODS:
            raise ValueError(f"grad_method must be one of {GRAD_METHODS}, got {grad_method!r}")
        self.grad_method = grad_method
        self._batched_failed = False
        self._warned: set[str] = set()
        self._reported = False
        self._partition_cache: tuple | None = None
        self._active: list[int] = list(range(self.k))
        self._effective = self.initial_weights()

    # -- state -----------------------------------------------------------
    def initial_weights(self) -> list[float]:
        """Effective weights reported before the first step (and after reset)."""
        return [1.0] * self.k

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._effective, strict=True))

    def reset(self) -> None:
        self._effective = self.initial_weights()
        self._partition_cache = None

    def set_effective_weights(self, coefficients: torch.Tensor | Sequence[float]) -> None:
        """Record per-active-task coefficients (inactive tasks report 0)."""
        values = [float(c) for c in coefficients]
        full = [0.0] * self.k
        for i, value in zip(self._active, values, strict=True):
            full[i] = value
        self._effective = full
        self._reported = True

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- the step --------------------------------------------------------
    def aggregate(self, grads: torch.Tensor, losses: list[torch.Tensor]) -> torch.Tensor:
        """Combine ``(A, P)`` task gradients of the shared parameters into one ``(P,)``."""
        raise NotImplementedError

    def _gradients(
        self, losses: list[torch.Tensor], shared: list[nn.Parameter], others: list[nn.Parameter]
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        if self.grad_method == "batched" and not self._batched_failed:
            try:
                return task_gradients(losses, shared, others, "batched")
            except RuntimeError as exc:  # an op without a batching rule
                self._batched_failed = True
                self._warn_once(
                    "batched",
                    f"weighting {self.name!r}: batched per-task gradients failed ({exc}); "
                    "using one backward pass per task instead",
                )
        return task_gradients(losses, shared, others, "loop")

    def _partition(self, model: MTLModel) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Shared and other trainable parameters, cached per model object (walking
        the module tree every step costs several percent of a small model's step).
        Freezing parameters mid-fold is not seen until ``reset()``."""
        cached = self._partition_cache
        if cached is None or cached[0]() is not model:
            shared = _unique(model.shared_parameters())
            shared_ids = {id(p) for p in shared}
            others = [p for p in _unique(list(model.parameters())) if id(p) not in shared_ids]
            self._partition_cache = (weakref.ref(model), shared, others)
            return shared, others
        return cached[1], cached[2]

    def backward(self, losses: dict[str, torch.Tensor], model: MTLModel) -> torch.Tensor:
        missing = [n for n in self.task_names if n not in losses]
        if missing:
            raise KeyError(f"weighting {self.name!r}: no loss for task(s) {missing}")
        loss_list = [losses[n].reshape(()) for n in self.task_names]
        shared, others = self._partition(model)
        if not shared:
            self._warn_once(
                "no_shared",
                f"weighting {self.name!r}: {type(model).__name__} has no shared parameters; "
                "falling back to the plain sum of task losses (equal weights)",
            )
            total = torch.stack(loss_list).sum()
            if total.requires_grad:
                total.backward()
            self._active = list(range(self.k))
            self.set_effective_weights([1.0] * self.k)
            return total.detach()

        matrix, other_grads = self._gradients(loss_list, shared, others)
        k = self.k
        for p, g in zip(others, other_grads, strict=True):
            if g is not None:
                _set_grad(p, g)

        # one reduction tells both: zero rows and non-finite rows (float64 cannot overflow)
        size = matrix.abs().sum(dim=1, dtype=torch.float64).tolist()
        bad = [self.task_names[i] for i in range(k) if not math.isfinite(size[i])]
        if bad:
            self._warn_once(
                "nonfinite",
                f"weighting {self.name!r}: non-finite shared gradient for task(s) {bad}; "
                "left out of this step's shared update",
            )
        active = [i for i in range(k) if math.isfinite(size[i]) and size[i] > 0]
        self._active = active
        self._reported = False
        if len(active) == k:
            update = self.aggregate(matrix, loss_list)
        elif active:
            update = self.aggregate(matrix[active], [loss_list[i] for i in active])
        else:
            update = torch.zeros(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
        if not self._reported:  # the scheme did not say: 1 per active task
            self.set_effective_weights([1.0] * len(active))
        update = torch.nan_to_num(update, nan=0.0, posinf=0.0, neginf=0.0)
        offset = 0
        for p in shared:
            n = p.numel()
            _set_grad(p, update[offset : offset + n].view(p.shape))
            offset += n
        detached = [float(loss.detach()) for loss in loss_list]
        return torch.tensor(
            math.fsum(c * v for c, v in zip(self._effective, detached, strict=True) if c != 0)
            if all(math.isfinite(v) for v in detached)
            else math.nan,
            dtype=loss_list[0].dtype,
        )


class GramWeighting(GradientWeighting):
    """Gradient-level schemes whose update is a linear combination ``c @ G``.

    Subclasses implement ``coefficients(gram, losses)`` on the ``(A, A)`` Gram
    matrix ``G G^T`` (float64); all the scheme's work then costs O(A^2) instead
    of O(A^2 P), and the coefficients are the effective weights reported.
    """

    def coefficients(self, gram: torch.Tensor, losses: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def aggregate(self, grads: torch.Tensor, losses: list[torch.Tensor]) -> torch.Tensor:
        g64 = grads.double()
        gram = g64 @ g64.T
        coef = torch.nan_to_num(self.coefficients(gram, losses), nan=0.0, posinf=0.0, neginf=0.0)
        self.set_effective_weights(coef)
        return (coef @ g64).to(grads.dtype)
