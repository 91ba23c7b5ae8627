"""Checks that catch a misbehaving architecture when the model is built, not mid-training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mtl_bt.errors import PluginError


def check_outputs(
    architecture: str, out: Any, task_names: Sequence[str], batch: int | None = None
) -> None:
    """``out`` must be ``{task: tensor (batch,)}`` with exactly the configured task names."""
    if not isinstance(out, Mapping):
        raise PluginError(
            f"architecture {architecture!r}: forward returned {type(out).__name__}; expected a "
            f"dict {{task name: output}} for tasks {list(task_names)}"
        )
    missing = [t for t in task_names if t not in out]
    extra = [str(t) for t in out if t not in task_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no head for task(s) {missing}")
        if extra:
            parts.append(f"output(s) {extra} that are not configured tasks")
        raise PluginError(
            f"architecture {architecture!r}: {' and '.join(parts)}; the model must return one "
            f"output per configured task, named {list(task_names)} (build one head per entry "
            "of the task specs it is given)"
        )
    for name in task_names:
        value = out[name]
        if not isinstance(value, torch.Tensor):
            raise PluginError(
                f"architecture {architecture!r}: output {name!r} is {type(value).__name__}, "
                "not a tensor"
            )
        if batch is not None and tuple(value.shape) != (batch,):
            raise PluginError(
                f"architecture {architecture!r}: output {name!r} has shape "
                f"{tuple(value.shape)} for a batch of {batch}; expected ({batch},)"
            )
        if not bool(torch.isfinite(value).all()):
            raise PluginError(
                f"architecture {architecture!r}: output {name!r} is not finite on a fresh model"
            )


def example_input(
    model: torch.nn.Module, batch: int = 4, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random inputs of the shape ``model`` expects: ``x`` and asset ids (or None)."""
    stage = model.input_stage
    steps = None if stage.encoder is None else (stage.lookback or 8)
    shape = (batch, steps, model.in_features) if steps else (batch, model.in_features)
    x = torch.randn(shape, generator=generator)
    asset = None
    if stage.embedding is not None:
        asset = torch.arange(batch) % stage.n_assets
    return x, asset


@torch.no_grad()
def check_model(model: torch.nn.Module, architecture: str, batch: int = 4) -> None:
    """One forward pass of a fresh model: outputs vs configured tasks (run at build)."""
    x, asset = example_input(model, batch, torch.Generator().manual_seed(0))
    was = model.training
    model.eval()
    try:
        out = model(x, asset)
    finally:
        model.train(was)
    check_outputs(architecture, out, model.task_names, batch)
