"""The one list of tasks: config validation and the CLI read their names from here."""

from __future__ import annotations

from tunelab.errors import ConfigError
from tunelab.tasks.base import Task
from tunelab.tasks.classification import ClassificationTask
from tunelab.tasks.multilabel import MultilabelTask
from tunelab.tasks.regression import RegressionTask
from tunelab.tasks.token_classification import TokenClassificationTask
from tunelab.tasks.image_classification import ImageClassificationTask
from tunelab.tasks.instruction import InstructionTuningTask

__all__ = ["TASKS", "get_task", "task_names"]

TASKS: dict[str, Task] = {t.name: t for t in (ClassificationTask(), MultilabelTask(), RegressionTask(),
                                              TokenClassificationTask(), ImageClassificationTask(),
                                              InstructionTuningTask())}


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"task: unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
