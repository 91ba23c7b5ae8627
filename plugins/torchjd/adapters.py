"""torchjd's aggregators and scalarizers as mtl-bt weightings, through the public API only.

- An aggregator maps the ``(K, P)`` matrix of per-task gradients of the shared
  parameters to one ``(P,)`` update: exactly what ``GradientWeighting.aggregate``
  receives, so ``TorchJDAggregator`` is a thin ``GradientWeighting``. For weighted
  aggregators the task coefficients (``weights()``) come from torchjd's own weighting.
- A scalarizer maps the ``(K,)`` losses to one scalar: a loss-level ``Weighting``
  whose ``combine`` calls it; the effective weight of task k is d(combined)/d(loss_k).
``reset()`` rebuilds the torchjd object from the options, so every walk-forward fold
starts from torchjd's initial state. Options are passed to the torchjd constructor;
lists become tensors (``pref_vector``, ``weights``, ...); ``n_tasks`` / ``shape`` are
filled with the number of tasks.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from mtl_bt.errors import ConfigError
from mtl_bt.weighting import Weighting
from mtl_bt.weighting.gradient import GradientWeighting

#: constructor arguments mtl-bt fills with the number of tasks
_SIZE_ARGS = ("n_tasks", "shape")


def _build(kind: str, name: str, cls: type, k: int, options: dict[str, Any]) -> Any:
    params = inspect.signature(cls).parameters
    kwargs = {}
    for key, value in options.items():
        if key not in params:
            allowed = [p for p in params if p not in _SIZE_ARGS]
            raise ConfigError(
                f"weighting {name!r} (torchjd {kind} {cls.__name__}): unknown option {key!r}; "
                f"it accepts {', '.join(allowed) or 'no options'}"
            )
        kwargs[key] = torch.tensor(value, dtype=torch.float32) if isinstance(value, list) else value
    for key in _SIZE_ARGS:
        if key in params and key not in kwargs:
            kwargs[key] = k
    missing = [
        p.name
        for p in params.values()
        if p.default is p.empty and p.name not in kwargs and p.kind is not p.VAR_KEYWORD
    ]
    if missing:
        raise ConfigError(
            f"weighting {name!r} (torchjd {kind} {cls.__name__}) needs option(s) {missing}: "
            f"set them in [weighting.options]"
        )
    try:
        return cls(**kwargs)
    except ImportError as exc:  # an aggregator whose optional solver is not installed
        raise ConfigError(f"weighting {name!r}: {exc} (or pip install 'mtl-bt[torchjd]')") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"weighting {name!r} (torchjd {cls.__name__}): {exc}") from None


class TorchJDAggregator(GradientWeighting):
    """A torchjd ``Aggregator`` over the shared-parameter task gradients."""

    torchjd_class: type
    name = "torchjd"

    def __init__(self, task_names: Sequence[str], grad_method: str = "loop", **options: Any):
        super().__init__(task_names, grad_method=grad_method, **options)
        self._torchjd_options = dict(options)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.aggregator = _build(
            "aggregator", self.name, self.torchjd_class, self.k, self._torchjd_options
        )

    def aggregate(self, grads: torch.Tensor, losses: list[torch.Tensor]) -> torch.Tensor:
        from torchjd.aggregation import WeightedAggregator

        agg = self.aggregator
        if isinstance(agg, WeightedAggregator):
            # what WeightedAggregator.forward does, keeping the coefficients for weights()
            coef = agg.weighting(grads)
            self.set_effective_weights(coef.detach())
            return coef.to(grads.dtype) @ grads
        return agg(grads)


class TorchJDScalarizer(Weighting):
    """A torchjd ``Scalarizer`` over the stacked task losses (loss level)."""

    torchjd_class: type
    name = "torchjd"

    def __init__(self, task_names: Sequence[str], **options: Any):
        super().__init__(task_names, **options)
        self._torchjd_options = dict(options)
        self.reset()

    def reset(self) -> None:
        self.scalarizer = _build(
            "scalarizer", self.name, self.torchjd_class, self.k, self._torchjd_options
        )
        self._weights = [1.0] * self.k
        self._pending_update = False

    def parameters(self) -> list[torch.nn.Parameter]:
        if hasattr(self.scalarizer, "update"):
            return []  # FAMO learns its logits with its own optimizer (update())
        return [p for p in self.scalarizer.parameters() if p.requires_grad]

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._weights, strict=True))

    def on_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        step = getattr(self.scalarizer, "step", None)  # DWA: roll the epoch history
        if callable(step):
            step()

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack([losses[n].reshape(()) for n in self.task_names])
        update = getattr(self.scalarizer, "update", None)
        if callable(update) and self._pending_update:
            # FAMO wants the losses after the model step on the same batch; mtl-bt's
            # trainer gives the next batch's losses before its step (documented)
            update(stacked.detach())
        total = self.scalarizer(stacked)
        self._pending_update = True
        if total.requires_grad:
            (grad,) = torch.autograd.grad(total, stacked, retain_graph=True, allow_unused=True)
            if grad is not None:
                self._weights = [float(g) for g in grad]
        return total


def aggregator(name: str, cls: type) -> type:
    """A ``TorchJDAggregator`` subclass for ``cls`` (registered as ``name``)."""
    return type(
        cls.__name__,
        (TorchJDAggregator,),
        {"torchjd_class": cls, "name": name, "__doc__": f"torchjd.aggregation.{cls.__name__}"},
    )


def scalarizer(name: str, cls: type) -> type:
    """A ``TorchJDScalarizer`` subclass for ``cls`` (registered as ``name``)."""
    return type(
        cls.__name__,
        (TorchJDScalarizer,),
        {"torchjd_class": cls, "name": name, "__doc__": f"torchjd.scalarization.{cls.__name__}"},
    )
