"""From the `data:` section of a config to train / validation / test records with a label map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.config.schema import DataConfig
from tunelab.data.builtin import BUILTIN_DATASETS, BUILTIN_TASKS
from tunelab.data.labels import UNLABELLED_TASKS, build_label_map, check_known_labels
from tunelab.data.readers import read_records
from tunelab.data.records import Record, Splits, TaskKind
from tunelab.data.splits import stratified_split
from tunelab.errors import ConfigError, DataError

if TYPE_CHECKING:
    from tunelab.tasks.base import Task

__all__ = ["LoadedData", "load_data", "check_unique_ids"]


@dataclass
class LoadedData:
    splits: Splits
    label_names: list[str]


def load_data(config: DataConfig, task: TaskKind | "Task", seed: int) -> LoadedData:
    """Read the files (or the built-in set) with the task's reader, hold out validation/test where no file
    is given, check labels. `task` is a registered task or its name."""
    if isinstance(task, str):
        from tunelab.tasks.registry import get_task

        task = get_task(task)
    reader, task = task, task.name
    pool = _read_train_pool(config, task, reader)
    if config.limit is not None and config.limit < len(pool):
        pool = stratified_split(pool, validation=0.0, test=1 - config.limit / len(pool), seed=seed, task=task).train
    validation = _read(config.validation, config, task, reader) if config.validation else None
    test = _read(config.test, config, task, reader) if config.test else None
    held_val = 0.0 if validation is not None else config.validation_split
    held_test = 0.0 if test is not None else config.test_split
    split = stratified_split(pool, validation=held_val, test=held_test, seed=seed, task=task)
    splits = Splits(train=split.train,
                    validation=validation if validation is not None else split.validation,
                    test=test if test is not None else split.test)
    if not splits.train:
        raise DataError(f"data: no training examples are left after holding out validation/test from {_source(config)}")
    label_names = build_label_map(splits.train, task)
    if task not in UNLABELLED_TASKS and len(label_names) < 2:
        raise DataError(f"data: the training data of {_source(config)} has {len(label_names)} class(es) {label_names}; "
                        "classification needs at least 2")
    check_known_labels(splits.validation, label_names, task, "validation")
    check_known_labels(splits.test, label_names, task, "test")
    return LoadedData(splits=splits, label_names=label_names)


def _source(config: DataConfig) -> str:
    return config.builtin or config.train or "?"


def _read_train_pool(config: DataConfig, task: TaskKind, reader: "Task") -> list[Record]:
    if config.builtin is not None:
        if config.builtin not in BUILTIN_DATASETS:
            raise ConfigError(f"data.builtin: unknown data set {config.builtin!r}; choose one of: {', '.join(BUILTIN_DATASETS)}")
        kind = BUILTIN_TASKS[config.builtin]
        if task != kind:
            raise ConfigError(f"data.builtin: {config.builtin} is a {kind} data set; set task: {kind}")
        return BUILTIN_DATASETS[config.builtin]()
    return _read(config.train, config, task, reader)


def _read(path: str, config: DataConfig, task: TaskKind, reader: "Task") -> list[Record]:
    records = reader.read(path, config)
    if config.id_column is not None:
        check_unique_ids(path, config.id_column, task)
    return records


def check_unique_ids(path: str, id_column: str, task: TaskKind) -> None:
    """Ids must be unique: a repeated id usually means rows were duplicated (leaking between splits) or two
    files were concatenated. The column is read with the same reader, so its errors name file and row."""
    ids = read_records(path, text_column=id_column, label_column=None, task=task, require_labels=False)
    first: dict[str, str] = {}
    for record in ids:
        if record.text in first:
            raise DataError(f"{record.where}: id {record.text!r} in column {id_column!r} was already used at "
                            f"{first[record.text].rsplit(':', 1)[-1]}; ids must be unique: remove the duplicate row "
                            "or give it its own id")
        first[record.text] = record.where
