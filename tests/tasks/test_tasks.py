"""Task plugins: losses and transforms on known values, metrics, building from config."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from mtl_bt import registry
from mtl_bt.config import TaskConfig, from_dict
from mtl_bt.errors import ConfigError, PluginError
from mtl_bt.tasks import Task, build_tasks, task_from_spec

out = torch.tensor([0.5, -1.0, 2.0, 0.0])
y = torch.tensor([0.3, -0.2, -1.0, 0.1])


def _task(kind, h=1, **options):
    return build_tasks([TaskConfig(name=kind, horizons=[h], options=options)])[0]


def test_builtins_registered_with_levels():
    for kind, level in {"return": 1, "direction": 1, "volatility": 0, "volume": 0}.items():
        entry = registry.registry().entry("task", kind)
        assert entry.description and issubclass(entry.factory, Task)
        task = _task(kind, 3)
        assert task.name == f"{kind}@3" and task.horizon == 3 and task.level == level
        assert task.spec.level == level and task.spec.kind == kind and task.spec.out_dim == 1


def test_return_mse_huber_and_scale():
    t = _task("return")
    assert t.loss(out, y).item() == pytest.approx(float(((out - y) ** 2).mean()))
    h = _task("return", loss="huber", delta=0.5)
    d = (out - y).abs()
    manual = torch.where(d < 0.5, 0.5 * d**2, 0.5 * (d - 0.25)).mean()
    assert h.loss(out, y).item() == pytest.approx(manual.item())
    s = _task("return", scale=0.01)
    assert s.loss(out, y * 0.01).item() == pytest.approx(t.loss(out, y).item(), rel=1e-6)
    assert torch.allclose(s.transform(out), out * 0.01)
    assert torch.equal(t.transform(out), out)
    m = t.metrics(np.array([0.1, 0.2, 0.3, 0.5]), np.array([0.0, 0.1, 0.5, 0.4]))
    assert set(m) == {"ic", "rank_ic", "rmse"} and m["rank_ic"] == pytest.approx(0.8)


def test_direction_is_bce_with_logits():
    t = _task("direction")
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    p = torch.sigmoid(out)
    manual = -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean()
    assert t.loss(out, labels).item() == pytest.approx(manual.item(), rel=1e-6)
    assert torch.allclose(t.transform(out), p)
    # stable where sigmoid-then-BCE is not: a confident wrong logit costs its size, not inf
    big = t.loss(torch.tensor([200.0]), torch.tensor([0.0]))
    assert big.item() == pytest.approx(200.0)
    m = t.metrics(np.array([0.9, 0.2, 0.6, 0.4]), np.array([1.0, 0.0, 0.0, 0.0]))
    assert m["accuracy"] == 0.75 and m["auc"] == 1.0 and m["base_rate"] == 0.25
    assert m["log_loss"] > 0


def test_volatility_qlike_on_log_variance_with_floor():
    t = _task("volatility", floor=1e-4)
    vol = torch.tensor([0.01, 0.02, 0.0, 0.005])
    ratio = torch.clamp(vol, min=1e-4) ** 2 / torch.exp(out)
    manual = (ratio - torch.log(ratio) - 1.0).mean()
    assert t.loss(out, vol).item() == pytest.approx(manual.item(), rel=1e-5)
    assert torch.isfinite(t.loss(out, vol))  # the zero-vol row is floored, not -inf
    pred = t.transform(torch.tensor([-50.0, -10.0, 0.0]))
    assert (pred > 0).all() and pred[1].item() == pytest.approx(math.exp(-5))
    m = t.metrics(np.array([0.01, 0.02]), np.array([0.02, 0.04]))
    assert m["calibration"] == pytest.approx(2.0)  # realised RMS twice the forecast's


def test_volatility_log_mse_learns_log_vol_with_floor():
    t = _task("volatility", floor=1e-4, loss="log_mse")
    vol = torch.tensor([0.01, 0.02, 0.0, 0.005])
    manual = ((out - torch.log(torch.clamp(vol, min=1e-4))) ** 2).mean()
    assert t.loss(out, vol).item() == pytest.approx(manual.item())
    assert torch.isfinite(t.loss(out, vol))  # the zero-vol row is floored, not -inf
    pred = t.transform(torch.tensor([-50.0, -5.0, 0.0]))
    assert (pred > 0).all() and pred[1].item() == pytest.approx(math.exp(-5))
    target = np.array([0.01, 0.02, 0.015])
    m = t.metrics(target, target)
    assert m["rmse_log"] == 0.0 and m["qlike"] == pytest.approx(0.0, abs=1e-12)
    assert m["corr"] == pytest.approx(1.0)
    worse = t.metrics(target * 0.5, target)
    assert worse["rmse_log"] == pytest.approx(math.log(2)) and worse["qlike"] > 0


def test_volume_mse_identity_transform():
    t = _task("volume", window=10)
    assert t.loss(out, y).item() == pytest.approx(float(((out - y) ** 2).mean()))
    assert torch.equal(t.transform(out), out)
    assert set(t.metrics(np.arange(5.0), np.arange(5.0) ** 2)) == {"ic", "rank_ic", "rmse"}


@pytest.mark.parametrize("kind", ["return", "direction", "volatility", "volume"])
def test_loss_refuses_non_finite_targets_and_has_gradients(kind):
    t = _task(kind)
    with pytest.raises(ValueError, match="non-finite targets"):
        t.loss(out, torch.tensor([0.1, np.nan, 0.1, 0.1]))
    o = out.clone().requires_grad_(True)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]) if kind == "direction" else y.abs() + 0.01
    t.loss(o, target).backward()
    assert torch.isfinite(o.grad).all() and o.grad.abs().sum() > 0


def test_multi_horizon_from_config():
    cfg = from_dict(
        {
            "tasks": [
                {"name": "return", "horizons": [1, 5, 20], "options": {"loss": "huber"}},
                {"name": "volatility", "horizons": [5]},
            ]
        }
    )
    tasks = build_tasks(cfg.tasks)
    assert (
        [t.name for t in tasks]
        == cfg.task_names()
        == ["return@1", "return@5", "return@20", "volatility@5"]
    )
    assert all(t.options["loss"] == "huber" for t in tasks[:3])


@pytest.mark.parametrize(
    ("cfg", "error", "words"),
    [
        (
            {"name": "return", "options": {"los": "huber"}},
            ConfigError,
            ["'return'", "'los'", "loss"],
        ),
        ({"name": "direction", "options": {"window": 3}}, ConfigError, ["'direction'", "'window'"]),
        (
            {"name": "return", "options": {"loss": "l1"}},
            ConfigError,
            ["return@1", "loss", "mse, huber"],
        ),
        ({"name": "volatility", "options": {"floor": 0}}, ConfigError, ["volatility@1", "floor"]),
        ({"name": "volume", "options": {"window": 0}}, ConfigError, ["volume@1", "window"]),
        ({"name": "retrun"}, PluginError, ["unknown task 'retrun'", "'return'"]),
    ],
)
def test_bad_task_config(cfg, error, words):
    with pytest.raises(error) as err:
        build_tasks([cfg])
    for word in words:
        assert word in str(err.value)


def test_duplicate_task_refused():
    with pytest.raises(ConfigError, match="'return@1' is configured twice"):
        build_tasks([{"name": "return"}, {"name": "return", "horizons": [1, 2]}])


def test_spec_round_trips_through_weights_only_checkpoint():
    tasks = build_tasks(
        [
            {"name": "return", "horizons": [2], "options": {"loss": "huber", "delta": 0.3}},
            {"name": "volume", "horizons": [4], "options": {"window": 7}},
        ]
    )
    buf = io.BytesIO()
    torch.save([dataclasses.asdict(t.spec) for t in tasks], buf)
    buf.seek(0)
    for saved, task in zip(torch.load(buf, weights_only=True), tasks, strict=True):
        again = task_from_spec(saved)
        assert again.spec == task.spec and type(again) is type(task)
        assert again.loss(out, y).item() == task.loss(out, y).item()


def test_docs_cover_every_task_option_and_metric():
    import inspect
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "tasks.md").read_text()
    for kind in ("return", "direction", "volatility", "volatility_ratio", "volume"):
        assert f"## `{kind}`" in text
        cls = registry.get("task", kind)
        for option in list(inspect.signature(cls).parameters)[1:]:
            assert f"`{option}`" in text, (kind, option)
        for metric in _task(kind).metrics(np.arange(4.0) + 1, np.array([1.0, 0.0, 1.0, 1.0])):
            assert f"`{metric}`" in text, (kind, metric)
