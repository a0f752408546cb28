"""Several tasks on one backbone (a multi-task run, `tasks:` in the config): each keeps its own Task, labels and
single-task config; this object gives a run what it asks of "the task" as a whole: one model with a head per task
(each built by its own task) and the loss of each head.

It is no registry task (no config says `task: multitask`); the trainer meets it through a split that is a
`data.mixing.TaskMixture`, whose batches each name their head. Importing it imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from tunelab.config.schema import LossConfig, ModelConfig, RunConfig
from tunelab.errors import ModelError
from tunelab.tasks.base import Task
from tunelab.tasks.registry import get_task

if TYPE_CHECKING:
    from tunelab.data.mixing import TaskMixture
    from tunelab.models.heads import HeadSet
    from tunelab.models.task_model import TaskModel

__all__ = ["MultiTask", "TaskHead"]


@dataclass(frozen=True)
class TaskHead:
    """One task of a multi-task run: its head's name, its Task, its labels and its single-task config."""

    name: str
    task: Task
    label_names: list[str]
    config: RunConfig


class MultiTask:
    name: ClassVar[str] = "multitask"
    supports_cache: ClassVar[bool] = True   # every task it takes reads text through the shared backbone
    generative: ClassVar[bool] = False
    saves_backbone: ClassVar[bool] = False
    takes_images: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False  # its tasks' targets are labels (no preference pairs)

    def __init__(self, heads: dict[str, TaskHead]) -> None:
        self.heads = heads

    @classmethod
    def of(cls, config: RunConfig, labels: dict[str, list[str]]) -> "MultiTask":
        """The tasks of a multi-task `config`, with each head's labels."""
        assert config.tasks is not None
        return cls({entry.name: TaskHead(entry.name, get_task(entry.task), labels[entry.name],
                                         config.task_config(entry.name)) for entry in config.tasks})

    def build_model(self, model_cfg: ModelConfig, model_dir: Optional[Path] = None) -> "TaskModel":
        """The backbone with the first task's head (its own `build_model`, as its single-task run builds it), then
        every other task's head (its `build_head`), in the config's order: a one-task run builds its single-task
        model, drawing the same random numbers."""
        from tunelab.models.heads import HeadSet
        from tunelab.models.loading import hidden_size

        first, *rest = self.heads.values()
        model = first.task.build_model(model_cfg, first.config.head, first.label_names, model_dir)
        if model.head is None:
            raise ModelError(f"tasks: {first.name}'s head is the architecture's native head; a multi-task run needs "
                             "tunelab heads (head.type: linear or mlp)")
        hidden = hidden_size(model.network)
        heads = {first.name: model.head}
        for head in rest:
            settled = head.task.settle_head(head.config.head, "", model_dir) if model_dir else head.config.head
            heads[head.name] = head.task.build_head(settled, head.label_names, hidden)
        model.head = HeadSet(heads)
        return model

    def loss_fn(self, config: LossConfig, train: "TaskMixture", label_names: list[str]) -> "HeadSet":
        """Each head's loss, from its task and its own `loss:` settings and training split (`config` and
        `label_names`, the run-level ones, are not used: every task has its own)."""
        from tunelab.models.heads import HeadSet

        return HeadSet({name: head.task.loss_fn(head.config.loss, train.parts[name], head.label_names)
                        for name, head in self.heads.items()})

    def describe(self) -> str:
        """One phrase per task for the run's start line."""
        def kind(head: TaskHead) -> str:
            return f"{len(head.label_names)} classes" if head.label_names else "regression targets"
        return "; ".join(f"{name}: {head.task.name}, {kind(head)}" for name, head in self.heads.items())

    def labels_record(self) -> dict[str, Any]:
        """labels.json of a multi-task run: each head's task and labels."""
        return {"task": self.name, "labels": [],
                "heads": {name: {"task": head.task.name, "labels": head.label_names} for name, head in self.heads.items()}}
