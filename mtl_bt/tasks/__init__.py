"""Prediction tasks."""

from mtl_bt.tasks.base import Task, TaskSpec

__all__ = ["Task", "TaskSpec"]
