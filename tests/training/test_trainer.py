"""The fold training loop: seeded, early stopping restores the best epoch, hooks, clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtl_bt import registry
from mtl_bt.tasks.base import Task
from mtl_bt.training import trainer
from mtl_bt.training.trainer import (
    Batches,
    TrainingError,
    _batch_bounds,
    clip_grad_norm,
    evaluate,
    fit,
)
from mtl_bt.weighting.base import Weighting

from .conftest import TinyModel


class Reg(Task):
    kind = "reg"

    def loss(self, output, target):
        return F.mse_loss(output, target)

    def metrics(self, prediction, target):
        return {"corr": float(np.corrcoef(prediction, target)[0, 1])}


class Exploding(Reg):
    kind = "boom"

    def loss(self, output, target):
        return F.mse_loss(output, target) * torch.tensor(float("nan"))


class Recording(Weighting):
    """Equal weights; records the hook calls the trainer makes."""

    def __init__(self, task_names, **options):
        super().__init__(task_names, **options)
        self.calls: list[tuple] = []

    def reset(self):
        self.calls.append(("reset",))

    def on_epoch_start(self, epoch):
        self.calls.append(("start", epoch))

    def on_epoch_end(self, epoch, mean_losses):
        self.calls.append(("end", epoch, sorted(mean_losses)))


def _data(n=600, f=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=g)
    y = torch.stack([x[:, 0] - 0.5 * x[:, 1], x[:, 2] * 0.3], dim=1) + 0.3 * torch.randn(
        n, 2, generator=g
    )
    a = torch.zeros(n, dtype=torch.int64)
    cut = int(n * 0.8)
    return Batches(x[:cut], a[:cut], y[:cut]), Batches(x[cut:], a[cut:], y[cut:])


TASKS = [Reg(1), Reg(2)]


def _fit(seed=0, epochs=6, weighting=None, tasks=TASKS, **kw):
    train, val = _data()
    torch.manual_seed(seed)
    model = TinyModel(5, [t.spec for t in tasks])
    weighting = weighting or Recording([t.name for t in tasks])
    args = dict(
        epochs=epochs,
        batch_size=32,
        lr=1e-2,
        weight_decay=1e-4,
        grad_clip=1.0,
        patience=3,
        seed=seed,
    )
    args.update(kw)
    result = fit(model, weighting, tasks, train, val, **args)
    return model, result, weighting, val


def test_same_seed_identical_weights_other_seed_not():
    m1, r1, *_ = _fit(seed=3)
    m2, r2, *_ = _fit(seed=3)
    m3, *_ = _fit(seed=4)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert r1.log == r2.log
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_early_stopping_restores_the_best_epoch():
    model, result, _, val = _fit(epochs=40, patience=2, lr=5e-2)
    assert result.epochs_run < 40  # it stopped
    scores = [row["val_score"] for row in result.log]
    assert result.best_epoch == int(np.argmin(scores))
    assert result.best_epoch < result.epochs_run - 1  # later epochs were worse
    best = result.log[result.best_epoch]
    now = evaluate(model, TASKS, val)
    for name in now:
        assert now[name] == pytest.approx(best[f"val_loss_{name}"], rel=1e-6)
    assert not model.training


def test_hooks_log_rows_and_learning():
    model, result, w, _ = _fit(epochs=4, patience=10)
    assert w.calls[0] == ("reset",)
    names = sorted(t.name for t in TASKS)
    assert w.calls[1:] == [c for e in range(4) for c in (("start", e), ("end", e, names))]
    log = result.log
    assert [r["epoch"] for r in log] == [0, 1, 2, 3]
    assert log[-1]["loss_reg@1"] < log[0]["loss_reg@1"]  # it learns
    for r in log:
        assert r["total"] == pytest.approx(
            r["loss_reg@1"] + r["loss_reg@2"] + r["reg_loss"], rel=1e-5
        )
        assert r["weight_reg@1"] == 1.0


def test_weighting_parameters_are_trained_and_clipped(monkeypatch):
    names = [t.name for t in TASKS]
    weighting = registry.get("weighting", "uncertainty")(names)
    weighting.reset()
    before = [p.detach().clone() for p in weighting.parameters()]
    assert before, "uncertainty weighting has learnable parameters"
    clipped: list[list[torch.Tensor]] = []
    real_clip = trainer.clip_grad_norm

    def recording_clip(params, max_norm):
        clipped.append(list(params))
        return real_clip(params, max_norm)

    monkeypatch.setattr(trainer, "clip_grad_norm", recording_clip)
    model, *_ = _fit(epochs=2, weighting=weighting)
    after = weighting.parameters()
    assert any(not torch.equal(b, a.detach()) for b, a in zip(before, after, strict=True))
    # every step clips the model's and the weighting's parameters together, in one norm
    assert clipped, "the trainer never clipped"
    for params in clipped:
        ids = {id(p) for p in params}
        assert all(id(p) in ids for p in weighting.parameters()), "weighting params not clipped"
        assert all(id(p) in ids for p in model.parameters() if p.requires_grad)


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b, strict=True):
        p.grad = torch.randn_like(p) * 5
        q.grad = p.grad.clone()
    clip_grad_norm(a, 1.0)
    torch.nn.utils.clip_grad_norm_(b, 1.0)
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    total = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in a))
    assert total == pytest.approx(1.0, rel=1e-4)


def test_batches_never_leave_a_single_row():
    assert _batch_bounds(65, 32) == [(0, 32), (32, 65)]
    assert _batch_bounds(64, 32) == [(0, 32), (32, 64)]
    assert _batch_bounds(1, 32) == [(0, 1)]
    bounds = _batch_bounds(1000, 7)
    assert bounds[0][0] == 0 and bounds[-1][1] == 1000
    assert all(b - a >= 2 for a, b in bounds)
    assert all(bounds[i][1] == bounds[i + 1][0] for i in range(len(bounds) - 1))


def test_diverging_loss_is_a_clear_error():
    with pytest.raises(TrainingError, match=r"boom@1.*not finite"):
        _fit(tasks=[Reg(1), Exploding(1)], epochs=2)


def test_train_loss_is_logged_in_eval_mode_like_the_validation_loss():
    """The kept epoch's train_loss_* equals an eval-mode pass over the training rows (dropout
    off), not the running train-mode mean loss_* (dropout on): a like-for-like gap."""
    model, result, _, _ = _fit(epochs=5, patience=10)
    train, _ = _data()
    best = result.log[result.best_epoch]
    now = evaluate(model, TASKS, train)  # the restored best weights, eval mode
    for name in now:
        assert best[f"train_loss_{name}"] == pytest.approx(now[name], rel=1e-6)
        assert best[f"train_loss_{name}"] != pytest.approx(best[f"loss_{name}"], rel=1e-3)
    assert all(r[f"train_loss_{n}"] > 0 for r in result.log for n in now)


def test_train_eval_rows_cap_is_a_fixed_seeded_sample():
    assert trainer.train_eval_rows(100, seed=0, cap=100) is None
    a = trainer.train_eval_rows(1000, seed=3, cap=64)
    assert torch.equal(a, trainer.train_eval_rows(1000, seed=3, cap=64))
    assert len(a) == 64 and torch.all(a[1:] > a[:-1]) and int(a.max()) < 1000
    train, _ = _data()
    part = trainer.subset(train, a[a < len(train)])
    assert torch.equal(part.x, train.x[a[a < len(train)]])
