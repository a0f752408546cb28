"""stratified_split: determinism, stratification, sizes and the too-few-examples error."""

from __future__ import annotations

from collections import Counter

import pytest

from tunelab.data.records import Record
from tunelab.data.splits import stratified_split
from tunelab.errors import ConfigError, DataError


def make(labels) -> list[Record]:
    return [Record(text=f"t{i}", label=label, where=f"d.csv:row {i + 1}") for i, label in enumerate(labels)]


def classes(records: list[Record]) -> Counter:
    return Counter(r.label for r in records)


def test_deterministic_for_a_seed_and_different_across_seeds():
    records = make(["a"] * 30 + ["b"] * 20 + ["c"] * 10)
    first = stratified_split(records, validation=0.2, test=0.2, seed=7, label_kind="class")
    again = stratified_split(records, validation=0.2, test=0.2, seed=7, label_kind="class")
    other = stratified_split(records, validation=0.2, test=0.2, seed=8, label_kind="class")
    assert first == again
    assert first.test != other.test


def test_partition_and_sizes():
    records = make(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    splits = stratified_split(records, validation=0.1, test=0.2, seed=0, label_kind="class")
    everything = splits.train + splits.validation + splits.test
    assert sorted(r.where for r in everything) == sorted(r.where for r in records)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (70, 10, 20)
    assert classes(splits.test) == {"a": 10, "b": 6, "c": 4}  # proportional per class
    assert classes(splits.validation) == {"a": 5, "b": 3, "c": 2}
    # each split keeps the original order
    assert splits.train == sorted(splits.train, key=lambda r: int(r.where.split()[-1]))


def test_every_class_in_every_split_even_when_rare():
    records = make(["big"] * 100 + ["rare"] * 3)
    splits = stratified_split(records, validation=0.1, test=0.1, seed=1, label_kind="class")
    for split in (splits.train, splits.validation, splits.test):
        assert classes(split)["rare"] == 1


def test_zero_fractions_give_empty_splits():
    records = make(["a", "b"] * 10)
    splits = stratified_split(records, validation=0.0, test=0.0, seed=0, label_kind="class")
    assert (len(splits.train), splits.validation, splits.test) == (20, [], [])
    splits = stratified_split(records, validation=0.25, test=0.0, seed=0, label_kind="class")
    assert (len(splits.train), len(splits.validation), splits.test) == (15, 5, [])


def test_too_few_examples_of_a_class():
    records = make(["a"] * 10 + ["b"] * 2 + ["c"] * 1)
    with pytest.raises(DataError) as info:
        stratified_split(records, validation=0.2, test=0.2, seed=0, label_kind="class")
    message = str(info.value)
    assert "class 'b' has 2 example(s)" in message and "class 'c' has 1 example(s)" in message
    assert "d.csv:row 13" in message and "at least 3" in message
    assert "Add examples" in message and "drop them" in message


def test_two_examples_suffice_with_one_held_out_split():
    records = make(["a"] * 10 + ["b"] * 2)
    splits = stratified_split(records, validation=0.2, test=0.0, seed=0, label_kind="class")
    assert classes(splits.validation)["b"] == 1 and classes(splits.train)["b"] == 1
    with pytest.raises(DataError, match="class 'c' has 1"):
        stratified_split(make(["a"] * 10 + ["c"]), validation=0.2, test=0.0, seed=0, label_kind="class")


def test_multilabel_stratified_by_first_sorted_label():
    labels = [("z", "a")] * 10 + [("b",)] * 10 + [()] * 10
    splits = stratified_split(make(labels), validation=0.2, test=0.2, seed=3, label_kind="classes")
    for split in (splits.validation, splits.test):
        assert Counter(r.label for r in split) == {("z", "a"): 2, ("b",): 2, (): 2}


def test_multilabel_falls_back_to_random_when_a_stratum_is_tiny():
    labels = [("a",)] * 20 + [("b",)]
    splits = stratified_split(make(labels), validation=0.2, test=0.2, seed=0, label_kind="classes")
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (13, 4, 4)


def test_regression_random_split():
    records = make([float(i) for i in range(40)])
    splits = stratified_split(records, validation=0.25, test=0.25, seed=5, label_kind="number")
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (20, 10, 10)
    assert splits == stratified_split(records, validation=0.25, test=0.25, seed=5, label_kind="number")


def test_bad_fractions_and_empty_input():
    with pytest.raises(ConfigError, match="below 1"):
        stratified_split(make(["a", "b"] * 5), validation=0.5, test=0.5, seed=0, label_kind="class")
    with pytest.raises(ConfigError, match="validation=-0.1"):
        stratified_split(make(["a", "b"] * 5), validation=-0.1, test=0.1, seed=0, label_kind="class")
    with pytest.raises(DataError):
        stratified_split([], validation=0.1, test=0.1, seed=0, label_kind="class")
    with pytest.raises(DataError, match="too few"):
        stratified_split(make([1.0, 2.0]), validation=0.1, test=0.1, seed=0, label_kind="number")
