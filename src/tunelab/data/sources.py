"""From the `data:` section of a config to train / validation / test records with a label map.

The caller passes the reader of its task (anything with `name`, `label_kind` and `read`): data never imports
tasks, and what it needs to know about one is the kind of its labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from tunelab.config.schema import DataConfig
from tunelab.data.builtin import BUILTIN_DATASETS, BUILTIN_TASKS
from tunelab.data.labels import build_label_map, check_known_labels
from tunelab.data.readers import read_records
from tunelab.data.records import UNLABELLED_KINDS, LabelKind, Record, Splits
from tunelab.data.splits import nested_fraction, stratified_split
from tunelab.errors import ConfigError, DataError

__all__ = ["LoadedData", "ExampleReader", "load_data", "check_unique_ids"]


class ExampleReader(Protocol):
    """What the data layer needs of a task: its name (for messages and built-in sets), the kind of its
    labels (parsing, label map, stratification) and its file reader."""

    name: ClassVar[str]
    label_kind: ClassVar[LabelKind]

    def read(self, path: str | Path, config: DataConfig, *, require_labels: bool = True) -> list[Record]: ...


@dataclass
class LoadedData:
    splits: Splits
    label_names: list[str]


def load_data(config: DataConfig, reader: ExampleReader, seed: int) -> LoadedData:
    """Read the files (or the built-in set) with the task's reader, hold out validation/test where no file
    is given, check labels."""
    kind = reader.label_kind
    pool = _read_train_pool(config, reader)
    if config.limit is not None and config.limit < len(pool):
        pool = stratified_split(pool, validation=0.0, test=1 - config.limit / len(pool), seed=seed,
                                label_kind=kind).train
    validation = _read(config.validation, config, reader) if config.validation else None
    test = _read(config.test, config, reader) if config.test else None
    held_val = 0.0 if validation is not None else config.validation_split
    held_test = 0.0 if test is not None else config.test_split
    split = stratified_split(pool, validation=held_val, test=held_test, seed=seed, label_kind=kind)
    train = split.train
    if config.train_fraction < 1.0:
        train = [train[i] for i in nested_fraction(train, config.train_fraction, seed=seed, label_kind=kind)]
    splits = Splits(train=train,
                    validation=validation if validation is not None else split.validation,
                    test=test if test is not None else split.test)
    if not splits.train:
        raise DataError(f"data: no training examples are left after holding out validation/test from {_source(config)}")
    label_names = build_label_map(splits.train, kind)
    if kind not in UNLABELLED_KINDS and len(label_names) < 2:
        raise DataError(f"data: the training data of {_source(config)} has {len(label_names)} class(es) {label_names}; "
                        "classification needs at least 2")
    check_known_labels(splits.validation, label_names, kind, "validation")
    check_known_labels(splits.test, label_names, kind, "test")
    return LoadedData(splits=splits, label_names=label_names)


def _source(config: DataConfig) -> str:
    return config.builtin or config.train or "?"


def _read_train_pool(config: DataConfig, reader: ExampleReader) -> list[Record]:
    if config.builtin is not None:
        if config.builtin not in BUILTIN_DATASETS:
            raise ConfigError(f"data.builtin: unknown data set {config.builtin!r}; choose one of: {', '.join(BUILTIN_DATASETS)}")
        labelled_for = BUILTIN_TASKS[config.builtin]
        if reader.label_kind == "none":  # unlabelled text: any built-in set of text lends its text
            return _text_only(config.builtin, BUILTIN_DATASETS[config.builtin]())
        if reader.name != labelled_for:
            raise ConfigError(f"data.builtin: {config.builtin} is a {labelled_for} data set; set task: {labelled_for}")
        return BUILTIN_DATASETS[config.builtin]()
    return _read(config.train, config, reader)


def _text_only(name: str, records: list[Record]) -> list[Record]:
    """A built-in set's texts without their labels (continued pre-training reads text alone)."""
    if any(r.image is not None for r in records[:1]):
        raise ConfigError(f"data.builtin: {name} holds images, not text; give a text data set or file")
    return [Record(text=r.text, label="", where=r.where) for r in records]


def _read(path: str, config: DataConfig, reader: ExampleReader) -> list[Record]:
    records = reader.read(path, config)
    if config.id_column is not None:
        check_unique_ids(path, config.id_column)
    return records


def check_unique_ids(path: str, id_column: str) -> None:
    """Ids must be unique: a repeated id usually means rows were duplicated (leaking between splits) or two
    files were concatenated. The column is read with the same reader, so its errors name file and row."""
    ids = read_records(path, text_column=id_column, label_column=None, label_kind="class", require_labels=False)
    first: dict[str, str] = {}
    for record in ids:
        if record.text in first:
            raise DataError(f"{record.where}: id {record.text!r} in column {id_column!r} was already used at "
                            f"{first[record.text].rsplit(':', 1)[-1]}; ids must be unique: remove the duplicate row "
                            "or give it its own id")
        first[record.text] = record.where
