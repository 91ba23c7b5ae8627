"""The training loop of one fold: seeded mini-batches, AdamW, clipping, early stopping.

Batches index pre-built tensors with a seeded permutation per epoch instead of
a DataLoader: no worker processes, no per-sample collation, so the loop costs
what a hand-written PyTorch loop costs. Sequence samples gather their lookback
window from the shared feature tensor by index (nothing is copied per epoch).

Each epoch logs, per task, ``loss_*`` (the running mean of the batch losses in train mode,
dropout on: what the optimiser saw), and, both in eval mode after the epoch's last step,
``val_loss_*`` and ``train_loss_*`` (the training rows, capped at ``TRAIN_EVAL_ROWS``): the
like-for-like pair for a generalisation gap.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mtl_bt.errors import UserError

#: rows per forward pass when evaluating / predicting
EVAL_BATCH = 8192

#: at most this many training rows (a fixed seeded sample) are scored in eval mode after
#: every epoch, beside the validation loss (the like-for-like train loss, ``train_loss_*``)
TRAIN_EVAL_ROWS = 16384


class TrainingError(UserError):
    """Training diverged (non-finite loss): the message says which task and what to try."""


@dataclass
class Batches:
    """Model inputs, asset ids and targets of a set of sample rows.

    Flat input (lookback 1): ``x`` holds the rows' scaled features (n, F).
    Sequence input: ``x`` is the whole scaled feature matrix (N, F) and
    ``windows`` the (n, lookback) row ids of every sample's window.
    """

    x: torch.Tensor
    asset: torch.Tensor  # (n,) int64
    y: torch.Tensor | None  # (n, T) float32, or None when predicting
    windows: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.asset)

    def inputs(self, idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        if self.windows is None:
            return self.x[idx], self.asset[idx]
        return self.x[self.windows[idx]], self.asset[idx]


def make_batches(
    scaled: torch.Tensor,
    rows: np.ndarray,
    asset: np.ndarray,
    targets: np.ndarray | None,
    lookback: int,
) -> Batches:
    """Batches for ``rows`` of a dataset whose full scaled feature matrix is ``scaled``."""
    rows_t = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))
    a = torch.from_numpy(np.ascontiguousarray(asset[rows], dtype=np.int64))
    y = None if targets is None else torch.from_numpy(np.ascontiguousarray(targets[rows]))
    if lookback == 1:
        return Batches(scaled[rows_t].contiguous(), a, y)
    offsets = torch.arange(1 - lookback, 1, dtype=torch.int64)
    return Batches(scaled, a, y, rows_t[:, None] + offsets[None, :])


def subset(data: Batches, idx: torch.Tensor) -> Batches:
    """The rows ``idx`` of ``data`` (sequence windows index the shared feature matrix)."""
    if data.windows is None:
        return Batches(data.x[idx], data.asset[idx], None if data.y is None else data.y[idx])
    y = None if data.y is None else data.y[idx]
    return Batches(data.x, data.asset[idx], y, data.windows[idx])


def train_eval_rows(n: int, seed: int, cap: int = TRAIN_EVAL_ROWS) -> torch.Tensor | None:
    """The training rows scored in eval mode every epoch: all of them up to ``cap``, else a
    fixed sorted sample of ``cap`` drawn with ``seed`` (None: all rows). The same rows every
    epoch, so the per-epoch curve moves with the model only."""
    if n <= cap:
        return None
    g = torch.Generator().manual_seed(seed + 7919)
    return torch.sort(torch.randperm(n, generator=g)[:cap]).values


@dataclass
class FitResult:
    """What one fold's training produced (the model holds the best weights)."""

    log: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    best_val_score: float
    seconds: float


def task_losses(
    tasks: Sequence[Any], out: dict[str, torch.Tensor], y: torch.Tensor
) -> dict[str, torch.Tensor]:
    return {task.name: task.loss(out[task.name], y[:, j]) for j, task in enumerate(tasks)}


@torch.inference_mode()
def evaluate(model: nn.Module, tasks: Sequence[Any], data: Batches) -> dict[str, float]:
    """Mean loss per task over ``data`` (eval mode, in large chunks)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(tasks), dtype=torch.float64)
    n = len(data)
    for start in range(0, n, EVAL_BATCH):
        idx = slice(start, min(start + EVAL_BATCH, n))
        x, a = data.inputs(idx)
        losses = task_losses(tasks, model(x, a), data.y[idx])
        sums += torch.stack([v.detach().double() for v in losses.values()]) * x.shape[0]
    model.train(was_training)
    means = (sums / max(n, 1)).tolist()
    return {task.name: m for task, m in zip(tasks, means, strict=True)}


@torch.inference_mode()
def predict_raw(model: nn.Module, tasks: Sequence[Any], data: Batches) -> dict[str, np.ndarray]:
    """Transformed predictions per task for every sample in ``data``."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {t.name: [] for t in tasks}
    n = len(data)
    for start in range(0, n, EVAL_BATCH):
        idx = slice(start, min(start + EVAL_BATCH, n))
        x, a = data.inputs(idx)
        out = model(x, a)
        for task in tasks:
            parts[task.name].append(task.transform(out[task.name]).double().numpy())
    return {
        name: (np.concatenate(p) if p else np.empty(0, dtype=np.float64))
        for name, p in parts.items()
    }


def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch [start, stop) pairs; a trailing batch of one row joins the previous one
    (BatchNorm cannot train on a single row)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> None:
    """``clip_grad_norm_`` without its per-call grouping overhead (all CPU float32):
    scale every gradient by min(1, max_norm / total L2 norm)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def _val_score(val: dict[str, float], base: dict[str, float]) -> float:
    """Scale-free early-stopping score: mean over tasks of val loss / initial val loss.

    Tasks' losses live on different scales (MSE of returns ~1e-4, log-vol ~0.1);
    a plain sum would only watch the largest one.
    """
    ratios = []
    for name, value in val.items():
        if not math.isfinite(value):
            return math.inf
        ratios.append(value / max(abs(base[name]), 1e-12))
    return float(np.mean(ratios))


def _start_heads_at_constant_optimum(model: nn.Module, tasks: Sequence[Any], train: Any) -> None:
    """Set each head's output bias to the loss-minimising constant on the training
    targets (``Task.initial_output``); an architecture whose output layers cannot be
    found keeps its initialisation, with a warning (never silently)."""
    values = {}
    for i, task in enumerate(tasks):
        initial = getattr(task, "initial_output", None)
        value = initial(train.y[:, i]) if initial is not None and len(train) else None
        if value is not None and math.isfinite(value):
            values[task.name] = value
    setter = getattr(model, "set_output_bias", None)
    if values and setter is not None:
        try:
            setter(values)
        except NotImplementedError as exc:
            warnings.warn(
                f"architecture {type(model).__name__}: head-bias initialisation skipped ({exc})",
                RuntimeWarning,
                stacklevel=3,
            )


def fit(
    model: nn.Module,
    weighting: Any,
    tasks: Sequence[Any],
    train: Batches,
    val: Batches,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    grad_clip: float,
    patience: int,
    seed: int,
    fold: int = 0,
    progress: bool = False,
) -> FitResult:
    """Train ``model`` in place; early stopping on ``val`` restores the best weights.

    ``torch.manual_seed`` must be set before the model is built (the pipeline
    does); shuffling and dropout are then seeded here from ``seed``.
    """
    t0 = time.perf_counter()
    names = [t.name for t in tasks]
    if len(train) == 0:
        raise UserError(f"fold {fold}: no training rows (every row's targets are unknown)")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    weighting.reset()
    _start_heads_at_constant_optimum(model, tasks, train)
    w_params = [p for p in weighting.parameters() if p.requires_grad]
    m_params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": m_params, "weight_decay": weight_decay}]
    if w_params:  # the scheme's own parameters (e.g. log variances) are not decayed
        groups.append({"params": w_params, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=lr, foreach=True)
    clip_params = m_params + w_params
    has_val = len(val) > 0
    base = evaluate(model, tasks, val) if has_val else {}
    # the train loss the overfitting ratio needs: eval mode (no dropout, BatchNorm running
    # statistics) after the epoch's last step, exactly as the validation loss is measured;
    # the running train-mode mean (``loss_*``) is a different quantity
    rows = train_eval_rows(len(train), seed)
    train_probe = train if rows is None else subset(train, rows)
    best_score, best_epoch, best_state = math.inf, -1, None
    bad_epochs = 0
    log: list[dict[str, Any]] = []
    n = len(train)
    bounds = _batch_bounds(n, batch_size)
    bar = _progress(epochs, fold, progress)
    epoch = -1
    try:
        for epoch in range(epochs):
            model.train()
            weighting.on_epoch_start(epoch)
            perm = torch.randperm(n, generator=generator)
            step_losses: list[torch.Tensor] = []
            step_totals: list[torch.Tensor] = []
            sizes: list[int] = []
            reg_sum = torch.zeros((), dtype=torch.float64)
            for start, stop in bounds:
                idx = perm[start:stop]
                x, a = train.inputs(idx)
                y = train.y[idx]
                optimizer.zero_grad(set_to_none=True)
                losses = task_losses(tasks, model(x, a), y)
                total = weighting.backward(losses, model)
                step_loss = torch.stack([v.detach() for v in losses.values()])
                _check_step(weighting, total, step_loss, names, fold, epoch, len(sizes))
                reg = model.regularization()
                size = stop - start
                if reg is not None:
                    reg.backward()
                    reg_sum += reg.detach().double() * size
                clip_grad_norm(clip_params, grad_clip)
                optimizer.step()
                step_losses.append(step_loss)
                step_totals.append(torch.as_tensor(total).detach().reshape(()))
                sizes.append(size)
            w = torch.tensor(sizes, dtype=torch.float64)
            loss_sum = (torch.stack(step_losses).double() * w[:, None]).sum(0)
            total_sum = (torch.stack(step_totals).double() * w).sum()
            means = dict(zip(names, (loss_sum / n).tolist(), strict=True))
            weights = weighting.weights()
            bad = [k for k, v in means.items() if not math.isfinite(v)]
            if bad:
                raise TrainingError(
                    f"fold {fold}, epoch {epoch}: training loss of {bad} is not finite "
                    "(diverged); lower training.lr or check the targets"
                )
            weighting.on_epoch_end(epoch, means)
            val_losses = evaluate(model, tasks, val) if has_val else dict.fromkeys(names, math.nan)
            train_losses = evaluate(model, tasks, train_probe)
            score = _val_score(val_losses, base) if has_val else -float(epoch)
            reg_mean = float(reg_sum / n)
            row: dict[str, Any] = {"fold": fold, "epoch": epoch}
            row.update({f"loss_{k}": v for k, v in means.items()})
            row.update({f"weight_{k}": float(weights.get(k, math.nan)) for k in names})
            row.update({f"val_loss_{k}": v for k, v in val_losses.items()})
            row["reg_loss"] = reg_mean
            row["total"] = float(total_sum / n) + reg_mean
            row["val_score"] = score if has_val else math.nan
            row.update({f"train_loss_{k}": v for k, v in train_losses.items()})
            log.append(row)
            if score < best_score:
                best_score, best_epoch, bad_epochs = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
            if bar is not None:
                bar.set_postfix(val=f"{score:.4f}", best=best_epoch)
                bar.update(1)
            if bad_epochs >= patience:
                break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(log, best_epoch, epoch + 1, best_score, time.perf_counter() - t0)


def weighting_name(weighting: Any) -> str:
    """The registered name of a weighting (set by the pipeline), else its class name."""
    return str(getattr(weighting, "registry_name", None) or type(weighting).__name__)


def _check_step(
    weighting: Any,
    total: Any,
    losses: torch.Tensor,
    names: list[str],
    fold: int,
    epoch: int,
    step: int,
) -> None:
    """Every step: a non-finite combined loss stops training at once, naming the
    weighting and the step when every task loss was finite (a weighting bug), else the
    tasks whose loss diverged. One host sync per step."""
    value = float(torch.as_tensor(total).detach().reshape(()))
    if math.isfinite(value):
        return
    finite = torch.isfinite(losses).tolist()
    where = f"fold {fold}, epoch {epoch}, step {step}"
    if all(finite):
        raise TrainingError(
            f"{where}: weighting {weighting_name(weighting)!r} returned a non-finite combined "
            f"loss ({value!r}) although every task loss was finite: a bug in the weighting "
            "plugin (check it with mtl_bt.testing.check_weighting), not a learning-rate problem"
        )
    bad = [n for n, ok in zip(names, finite, strict=True) if not ok]
    raise TrainingError(
        f"{where}: training loss of {bad} is not finite (diverged); lower training.lr or "
        "check the targets"
    )


def _progress(epochs: int, fold: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, desc=f"fold {fold}", unit="epoch", leave=False, file=sys.stderr)
