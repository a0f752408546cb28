"""Deterministic train / validation / test splits, stratified by label where that makes sense.

Stratification keeps every class in every held-out split, so that validation metrics (macro F1 in
particular) are not silently computed over a subset of the classes. The split depends only on the
records and the seed: the same data and seed give the same splits on every machine, which is what makes
a run directory repeatable and lets a comparison of strategies share one split.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

from tunelab.data.records import LabelKind, Record, Splits
from tunelab.errors import ConfigError, DataError

__all__ = ["stratified_split", "nested_fraction"]

_ALL = "<all>"  # the single stratum of an unstratified (random) split
_NO_LABEL = ""  # the stratum of a multilabel record with no labels


def stratified_split(records: list[Record], *, validation: float, test: float, seed: int,
                     label_kind: LabelKind) -> Splits:
    """Split ``records`` into train / validation / test with the given fractions of the whole.

    One class per record ("class") is stratified by label: each class is split in the requested proportions and has
    at least one example in every non-empty split, so a class needs 3 examples when both validation
    and test are requested (2 with one of them), else DataError. Multi-label ("classes") is stratified by the first
    label of the sorted label tuple, falling back to a random split when a stratum is too small.
    Every other kind (numbers, tags, text) is a random split. A fraction of 0 gives an empty split. Each split keeps the records'
    original order, which makes it easy to trace a record back to its file.
    """
    _check_fractions(validation, test)
    if not records:
        raise DataError("no records to split; the data file(s) contain no examples")
    needed = 1 + (validation > 0) + (test > 0)  # one example per non-empty split
    strata = _strata(records, label_kind)
    small = {key: len(idx) for key, idx in strata.items() if len(idx) < needed}
    if small and label_kind == "class":
        raise DataError(_too_few_message(small, records, strata, needed, validation, test))
    if small:
        strata = {_ALL: list(range(len(records)))}
    if len(records) < needed:
        raise DataError(f"only {len(records)} record(s) (first: {records[0].where}), too few for a split "
                        f"with validation={validation} and test={test}: add examples or set the "
                        "validation and test fractions to 0")

    rng = random.Random(seed)
    counts = {key: len(idx) for key, idx in strata.items()}
    test_n = _allocate(counts, test, {k: int(validation > 0) for k in counts})  # keep one for validation
    val_n = _allocate(counts, validation, {k: test_n[k] for k in counts})
    chosen: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for key in sorted(strata):
        indices = list(strata[key])
        rng.shuffle(indices)
        cut_test, cut_val = test_n[key], test_n[key] + val_n[key]
        chosen["test"] += indices[:cut_test]
        chosen["validation"] += indices[cut_test:cut_val]
        chosen["train"] += indices[cut_val:]
    pick = {name: [records[i] for i in sorted(idx)] for name, idx in chosen.items()}
    return Splits(train=pick["train"], validation=pick["validation"], test=pick["test"])


def nested_fraction(records: list[Record], fraction: float, *, seed: int, label_kind: LabelKind) -> list[int]:
    """Indices (in record order) of a stratified `fraction` of `records`, nested across fractions: each
    stratum is shuffled once by `seed` and its first round(fraction * n) records (at least one) are taken, so
    the 10% lies inside the 30% and a learning curve over fractions adds data instead of swapping it."""
    if fraction >= 1.0:
        return list(range(len(records)))
    rng = random.Random(f"fraction|{seed}")
    chosen: list[int] = []
    for key, indices in sorted(_strata(records, label_kind).items()):
        order = list(indices)
        rng.shuffle(order)
        chosen += order[:max(1, round(fraction * len(order)))]
    return sorted(chosen)


def _check_fractions(validation: float, test: float) -> None:
    """Fractions are of the whole data set; together they must leave something to train on."""
    bad = [f"{name}={value!r}" for name, value in (("validation", validation), ("test", test))
           if not (isinstance(value, (int, float)) and 0 <= value < 1)]
    if bad:
        raise ConfigError(f"split fractions must be in [0, 1), got {', '.join(bad)}")
    if validation + test >= 1:
        raise ConfigError(f"validation + test fractions must be below 1 to leave training data, got "
                          f"{validation} + {test} = {validation + test}")


def _strata(records: list[Record], kind: LabelKind) -> dict[str, list[int]]:
    """Record indices grouped by the key the split is stratified on (the label kind decides it)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        if kind == "class":
            key = str(record.label)
        elif kind == "classes":
            labels = sorted(record.label)  # type: ignore[arg-type]
            key = labels[0] if labels else _NO_LABEL
        else:
            key = _ALL
        groups[key].append(i)
    return dict(groups)


def _allocate(counts: dict[str, int], fraction: float, reserved: dict[str, int]) -> dict[str, int]:
    """How many records of each stratum go to one held-out split.

    Proportional to the stratum size (largest-remainder rounding, so the total is the nearest integer
    to ``fraction * N``), at least one per stratum so every class is present, and never taking the
    ``reserved`` records plus one kept for training.
    """
    if fraction == 0:
        return {key: 0 for key in counts}
    target = round(sum(counts.values()) * fraction)
    exact = {key: n * fraction for key, n in counts.items()}
    cap = {key: max(0, n - reserved[key] - 1) for key, n in counts.items()}
    alloc = {key: min(cap[key], max(1, math.floor(exact[key]))) for key in counts}
    shortfall = target - sum(alloc.values())
    by_remainder = sorted(counts, key=lambda k: (-(exact[k] - math.floor(exact[k])), k))
    while shortfall > 0:
        grown = False
        for key in by_remainder:
            if shortfall > 0 and alloc[key] < cap[key]:
                alloc[key] += 1
                shortfall -= 1
                grown = True
        if not grown:
            break
    return alloc


def _too_few_message(small: dict[str, int], records: list[Record], strata: dict[str, list[int]],
                     needed: int, validation: float, test: float) -> str:
    """Name each class that cannot be stratified, its count and where its examples are."""
    requested = " and ".join(name for name, f in (("validation", validation), ("test", test)) if f > 0)
    lines = []
    for label, count in sorted(small.items(), key=lambda item: (item[1], item[0])):
        where = ", ".join(records[i].where for i in strata[label][:3])
        lines.append(f"class {label!r} has {count} example(s) ({where})")
    return (f"too few examples to split with {requested} requested: every class needs at least {needed} "
            "(one in train and one in each held-out split):\n  " + "\n  ".join(lines)
            + "\nAdd examples of these classes, or drop them from the data.")
