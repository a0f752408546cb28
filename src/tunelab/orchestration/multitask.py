"""A multi-task run (`tasks:`): every task prepared as its single-task run would be (`prepare`, once per task), and
one `Prepared` of the whole for `run_one`: its splits are TaskMixtures (data/mixing.py), its task a MultiTask
(tasks/multitask.py) with a head per task. The run then trains through the one `run_one` and `Trainer`; this module
also writes the run directory's per-task files (labels, test metrics, predictions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from rich.console import Console

from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.config.loading import config_to_yaml
from tunelab.config.schema import RunConfig
from tunelab.data.mixing import TaskMixture
from tunelab.data.records import Splits
from tunelab.errors import ConfigError, DataError, Problems, TunelabError, check_all
from tunelab.inference.tables import prediction_rows, predictions_csv
from tunelab.models.task_model import TaskModel
from tunelab.orchestration.prepare import SPLITS, Prepared, prepare
from tunelab.tasks.multitask import MultiTask, TaskHead
from tunelab.training.device import resolve_run_precision
from tunelab.training.distributed import launched_world_size
from tunelab.orchestration.multitask_training import MixtureResult
from tunelab.training.trainer import EvalResult

__all__ = ["MultiPrepared", "prepare_multitask", "write_multitask_start", "write_multitask_test", "multitask_manifest"]


@dataclass
class MultiPrepared(Prepared):
    """The prepared run of every task: `parts` by head name; `encoded` holds their splits as TaskMixtures."""

    parts: dict[str, Prepared] = field(default_factory=dict)

    @property
    def max_length(self) -> int:
        return max(part.config.data.max_length for part in self.parts.values())  # type: ignore[union-attr]

    def for_config(self, config: Optional[RunConfig] = None) -> "MultiPrepared":
        """A multi-task run is prepared for its one config (no comparison or search runs over it yet)."""
        if config is not None and config != self.config:
            raise ConfigError("tasks: a multi-task run trains the config it was prepared with; prepare it again to "
                              "change it")
        return self

    def build_model(self, config: RunConfig) -> TaskModel:
        """The backbone with a head per task (MultiTask.build_model); a one-task run builds its single-task model."""
        assert isinstance(self.task, MultiTask)
        return self.task.build_model(config.model, self.model_dir)

    def depth(self, config: RunConfig) -> int:
        raise ConfigError("tasks: the depth of a multi-task run's backbone is not asked for by `tunelab train`")


def prepare_multitask(config: RunConfig, *, trust_pickle: bool = False, console: Optional[Console] = None,
                      checks: Sequence[Callable[[], object]] = ()) -> MultiPrepared:
    """Prepare each task of `config` (its data read, split, hashed and encoded; the model resolved), reporting
    every task's problems, and the caller's `checks`, at once."""
    assert config.tasks is not None
    console = console or Console(stderr=True)
    if launched_world_size() > 1 and config.train.distributed != "off":
        raise ConfigError("tasks: a multi-task run trains in one process for now; run it without torchrun / --nproc")
    names = [entry.name for entry in config.tasks]
    results = _every_problem([*checks, *(_task_preparer(config, i, name, trust_pickle, console)
                                        for i, name in enumerate(names))])
    parts: dict[str, Prepared] = dict(zip(names, results[len(checks):]))
    first = parts[names[0]]
    settled = [entry.model_copy(update={"head": parts[entry.name].config.head}) for entry in config.tasks]
    config, _ = resolve_run_precision(config.model_copy(update={"tasks": settled}), first.device)
    mixing = config.mixing
    assert mixing is not None
    encoded = {split: TaskMixture({name: part.encoded[split] for name, part in parts.items()}, mixing.name,
                                  mixing.temperature) for split in SPLITS}
    counts = encoded["train"].counts(config.train.batch_size)
    console.print(f"tasks ({mixing.name} mixing): " + ", ".join(f"{name} {n} batches" for name, n in counts.items())
                  + " an epoch")
    task = MultiTask({name: TaskHead(name, part.task, part.label_names, part.config) for name, part in parts.items()})
    splits = Splits(*([r for part in parts.values() for r in getattr(part.splits, split)] for split in SPLITS))
    return MultiPrepared(config=config, task=task, device=first.device, splits=splits, label_names=[],  # type: ignore[arg-type]
                         data_hashes={f"{n}/{k}": h for n, part in parts.items() for k, h in part.data_hashes.items()},
                         model_dir=first.model_dir, base_model_hash=first.base_model_hash, tokenizer=first.tokenizer,
                         encoded=encoded, declared_head=config.head, parts=parts,  # type: ignore[arg-type]
                         unknown_token_rates={f"{n}/{k}": r for n, part in parts.items()
                                              for k, r in part.unknown_token_rates.items()})


def _task_preparer(config: RunConfig, index: int, name: str, trust_pickle: bool,
                   console: Console) -> Callable[[], Prepared]:
    """Prepare the task `name` as its single-task run; its data's and config's problems name the task."""
    def run() -> Prepared:
        try:
            return prepare(config.task_config(name), trust_pickle=trust_pickle, console=console)
        except (ConfigError, DataError) as err:
            raise type(err)(f"tasks[{index}] ({name}): {err}") from None
    return run


def _every_problem(checks: Sequence[Callable[[], Any]]) -> list[Any]:
    """errors.check_all, with a problem every task shares (the model directory's) said once."""
    try:
        return check_all(checks)
    except Problems as problems:
        unique: dict[str, TunelabError] = {str(err): err for err in problems.errors}
        if len(unique) == 1:
            raise next(iter(unique.values())) from None
        raise Problems(list(unique.values())) from None


def write_multitask_start(staging: Path, config: RunConfig, task: MultiTask) -> None:
    """What a multi-task run directory holds from its first moment: the resolved config and each head's labels."""
    atomic_write_text(staging / "config.yaml", config_to_yaml(config))
    atomic_write_json(staging / "labels.json", task.labels_record())


def write_multitask_test(staging: Path, prepared: MultiPrepared, result: EvalResult) -> dict[str, Any]:
    """`test_metrics.json` (the tasks' means at the top, a section per task under `tasks`) and
    `predictions/<name>.csv` per task; returns the metrics written."""
    assert isinstance(result, MixtureResult)  # MultiTaskTrainer.evaluate's, of a TaskMixture
    metrics = {k: v for k, v in result.metrics.items() if "/" not in k}
    metrics["tasks"] = {name: part.metrics for name, part in result.parts.items()}
    atomic_write_json(staging / "test_metrics.json", metrics)
    (staging / "predictions").mkdir(exist_ok=True)
    for name, part in result.parts.items():
        head, split = prepared.parts[name], prepared.parts[name].encoded["test"]
        rows = prediction_rows(split.records, part.predictions, head.label_names, head.task, with_labels=True)
        atomic_write_text(staging / "predictions" / f"{name}.csv", predictions_csv(rows, head.task))
    return metrics


def multitask_manifest(prepared: Prepared) -> dict[str, Any]:
    """What manifest.json records of a multi-task run (nothing for another): the mixing, and per task its training
    examples and batches an epoch."""
    if not isinstance(prepared, MultiPrepared):
        return {}
    train, mixing = prepared.encoded["train"], prepared.config.mixing
    assert isinstance(train, TaskMixture) and mixing is not None
    counts = train.counts(prepared.config.train.batch_size)
    return {"mixing": mixing.model_dump(), "tasks": {name: {"train_examples": len(part), "batches_per_epoch": counts[name]}
                                                     for name, part in train.parts.items()}}

