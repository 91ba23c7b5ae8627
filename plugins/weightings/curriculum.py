"""Curriculum weighting: tasks enter over epochs with a linear ramp."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtl_bt.errors import ConfigError
from mtl_bt.weighting.base import Weighting
from mtl_bt.weighting.options import integer, parse_options, real

ENTRY = {"start": integer(0, 0), "ramp": integer(0, 0), "weight": real(1.0, 0.0)}


class Curriculum(Weighting):
    """Per-task schedule ``{task: {start, ramp, weight}}``; tasks not named are always on.

    Task k's weight at epoch e is 0 before ``start``, then
    ``weight * min(1, (e - start + 1) / (ramp + 1))``: with ``ramp = 0`` it is on
    at full weight from ``start``; with ``ramp = 3`` it takes 1/4, 2/4, 3/4 of
    ``weight`` and is full from ``start + 3``. At least one task must have a
    positive weight at epoch 0. ``reset()`` goes back to epoch 0.
    """

    name = "curriculum"

    def __init__(
        self,
        task_names: Sequence[str],
        schedule: Mapping[str, Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> None:
        parse_options(self.name, options, {})
        super().__init__(task_names)
        if not schedule or not isinstance(schedule, Mapping):
            raise ConfigError(
                "weighting 'curriculum' needs schedule = {task = {start = epoch, ramp = epochs, "
                f"weight = w}}, ...}}; tasks are {self.task_names}"
            )
        unknown = sorted(set(schedule) - set(self.task_names))
        if unknown:
            raise ConfigError(
                f"weighting 'curriculum': schedule names unknown task(s) {unknown}; "
                f"tasks are {self.task_names}"
            )
        self.schedule: dict[str, dict[str, Any]] = {}
        for name in self.task_names:
            entry = schedule.get(name, {})
            if not isinstance(entry, Mapping):
                raise ConfigError(
                    f"weighting 'curriculum': schedule.{name} = {entry!r} must be a table "
                    "{start = epoch, ramp = epochs, weight = w}"
                )
            self.schedule[name] = parse_options(f"curriculum (schedule.{name})", entry, ENTRY)
        if not any(self.weight_at(name, 0) > 0 for name in self.task_names):
            raise ConfigError(
                "weighting 'curriculum': no task is active at epoch 0; give at least one task "
                "start = 0 and weight > 0"
            )
        self.reset()

    def weight_at(self, name: str, epoch: int) -> float:
        s = self.schedule[name]
        if epoch < s["start"]:
            return 0.0
        return s["weight"] * min(1.0, (epoch - s["start"] + 1) / (s["ramp"] + 1))

    def reset(self) -> None:
        self.epoch = 0

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def weights(self) -> dict[str, float]:
        return {name: self.weight_at(name, self.epoch) for name in self.task_names}
