"""Prediction tasks: build them from config, build their targets.

``build_tasks(config.tasks)`` turns each ``[[tasks]]`` entry into one task per
horizon ("return@1", "return@5", ...); ``build_targets(frame, tasks)`` returns
one target column per task; ``task_from_spec(spec)`` rebuilds a task from the
plain ``TaskSpec`` stored in a checkpoint.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from mtl_bt import registry
from mtl_bt.errors import ConfigError, PluginError
from mtl_bt.tasks.base import Task, TaskSpec

__all__ = ["Task", "TaskSpec", "build_targets", "build_tasks", "task_from_spec"]


def _field(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _check_options(name: str, cls: Any, options: Mapping[str, Any]) -> None:
    """Unknown option -> ConfigError naming the task and the key (typos must not pass)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [k for k, p in params.items() if k != "horizon" and p.kind != p.VAR_POSITIONAL]
    for key in options:
        if key not in accepted:
            raise ConfigError(
                f"task {name!r}: unknown option {key!r}; "
                f"{name} accepts {', '.join(accepted) if accepted else 'no options'}"
            )


def _make(name: str, horizon: int, options: Mapping[str, Any]) -> Task:
    cls = registry.get("task", name)
    _check_options(name, cls, options)
    task = cls(horizon=horizon, **dict(options))
    if not isinstance(task, Task):
        raise PluginError(f"task plugin {name!r} built {type(task).__name__}, not a mtl_bt Task")
    return task


def build_tasks(task_configs: Iterable[Any]) -> list[Task]:
    """One task per (config entry, horizon), in config order.

    Accepts ``mtl_bt.config.TaskConfig`` objects or dicts with ``name``,
    ``horizons`` and ``options``.
    """
    tasks: list[Task] = []
    for cfg in task_configs:
        name = _field(cfg, "name")
        horizons = _field(cfg, "horizons") or [1]
        options = _field(cfg, "options") or {}
        for h in horizons:
            tasks.append(_make(name, int(h), options))
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise ConfigError(f"task {task.name!r} is configured twice; list each horizon once")
        seen.add(task.name)
    if not tasks:
        raise ConfigError("no tasks configured; add at least one [[tasks]] entry")
    return tasks


def task_from_spec(spec: TaskSpec | Mapping[str, Any]) -> Task:
    """Rebuild a task from its (checkpointed) spec; checks the name still matches."""
    data = dataclasses.asdict(spec) if isinstance(spec, TaskSpec) else dict(spec)
    task = _make(data["kind"], int(data["horizon"]), data.get("options") or {})
    if task.name != data["name"]:
        raise PluginError(
            f"task spec {data['name']!r} rebuilt as {task.name!r}; the {data['kind']!r} plugin "
            "changed its naming"
        )
    return task


def build_targets(frame: pd.DataFrame, tasks: Sequence[Task]) -> pd.DataFrame:
    """Targets, one column per task name, aligned to ``frame.index``.

    NaN in the last h rows of each column (the future is unknown) and, for
    tasks with a ``lookback``, in the first ``lookback`` rows.
    """
    columns = {}
    for task in tasks:
        target = task.build_target(frame)
        if not isinstance(target, pd.Series) or not target.index.equals(frame.index):
            raise PluginError(f"task {task.name!r} built a target not aligned to the frame index")
        columns[task.name] = target.astype("float64")
    return pd.DataFrame(columns, index=frame.index)
