"""Tasks: how examples become targets, losses, predictions and metrics."""

from tunelab.tasks.base import Predictions, Task
from tunelab.tasks.registry import get_task, task_names

__all__ = ["Task", "Predictions", "get_task", "task_names"]
