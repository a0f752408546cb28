"""Labels: turning raw cell values into typed labels, and the label map every task shares.

Readers see labels in many shapes (``3`` from JSON, ``3.0`` from a Parquet float column, ``"a|b"`` in a
CSV cell, ``["a", "b"]`` in a JSON list). They are normalised here so that the label map, the splits and
the metrics only ever see ``str`` (classification), ``tuple[str, ...]`` (multilabel) or ``float``
(regression). Errors name the record's ``file:row`` and say what to change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from tunelab.data.records import UNLABELLED_KINDS, Label, LabelKind, Record
from tunelab.errors import DataError

__all__ = ["build_label_map", "check_known_labels", "parse_label", "missing_label", "is_missing"]

_DEFAULT_DELIMITER = "|"
_MAX_LISTED = 20


def is_missing(value: Any) -> bool:
    """True for cells that hold no value: None, NaN and empty or whitespace-only strings."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def missing_label(kind: LabelKind) -> Label:
    """The placeholder label of a prediction-input record that has none ("", (), nan)."""
    if kind in ("class", "text", "none"):
        return ""
    if kind in ("classes", "tags", "pair"):
        return ()
    return math.nan


def _class_name(value: Any, where: str, column: str) -> str:
    """One class name from a scalar: ints and integral floats become "3" so 3, 3.0 and "3" agree."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError(f"{where}: label {value!r} in column {column!r} is not a class name; "
                            "fill in the label or remove the row")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.strip()
    raise DataError(f"{where}: label in column {column!r} is a {type(value).__name__} ({value!r:.80}); "
                    "a class label must be a string or an integer")


def _multilabel(value: Any, where: str, column: str, delimiter: str | None) -> tuple[str, ...]:
    """A tuple of class names from a list, a JSON-list string or a delimited string."""
    if isinstance(value, str):
        text = value.strip()
        if delimiter is None and text.startswith("[") and text.endswith("]"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                value = parsed
        if isinstance(value, str):
            value = text.split(delimiter or _DEFAULT_DELIMITER)
    elif not isinstance(value, Sequence) and hasattr(value, "tolist"):
        value = value.tolist()  # numpy arrays from Arrow list columns
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise DataError(f"{where}: multilabel value in column {column!r} is a {type(value).__name__} "
                        f"({value!r:.80}); give a list of labels or a string like \"a|b\"")
    names: list[str] = []
    for item in value:
        if is_missing(item):
            continue
        if isinstance(item, (list, tuple, dict)):
            raise DataError(f"{where}: multilabel value in column {column!r} contains a nested "
                            f"{type(item).__name__} ({item!r:.80}); give a flat list of labels")
        name = _class_name(item, where, column)
        if name and name not in names:
            names.append(name)
    return tuple(names)


def _regression_target(value: Any, where: str, column: str) -> float:
    """A finite float; NaN, infinities, booleans and text are refused because they poison the loss."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None:
        raise DataError(f"{where}: regression target {value!r:.80} in column {column!r} is not a number; "
                        "fix the value or remove the row")
    if not math.isfinite(number):
        raise DataError(f"{where}: regression target {value!r} in column {column!r} is not finite "
                        "(NaN or infinity); fix the value or remove the row")
    return number


def parse_label(value: Any, kind: LabelKind, *, where: str, column: str,
                delimiter: str | None = None) -> Label:
    """Normalise one raw cell to the label type ``kind``; raises DataError naming ``where``.

    A missing value (None, NaN, empty string) is an error here; callers that accept unlabelled rows
    (prediction input) check :func:`is_missing` first and use :func:`missing_label`. An explicit empty
    list (``[]``) is a valid multilabel value: an example that belongs to none of the classes.
    """
    if is_missing(value):
        raise DataError(f"{where}: label in column {column!r} is missing; fill it in or remove the row")
    if kind == "class":
        return _class_name(value, where, column)
    if kind == "classes":
        return _multilabel(value, where, column, delimiter)
    if kind == "number":
        return _regression_target(value, where, column)
    raise ValueError(f"table cells hold no {kind!r} labels")


def _labels_of(record: Record, kind: LabelKind) -> tuple[str, ...]:
    if kind in ("classes", "tags"):  # a set of classes / one tag per word
        return tuple(record.label)  # type: ignore[arg-type]
    return (str(record.label),)


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = f", ... ({len(names)} in total)" if len(names) > _MAX_LISTED else ""
    return shown + more


def build_label_map(records: list[Record], kind: LabelKind) -> list[str]:
    """Sorted unique class names: index ``i`` of this list is output unit ``i`` of the head.

    Built from the training split only, so that the head size does not depend on held-out data.
    Returns ``[]`` for regression and instruction tuning (free text, no classes). Whether there are enough
    classes to learn is the caller's check.
    """
    if kind in UNLABELLED_KINDS:
        return []
    return sorted({name for r in records for name in _labels_of(r, kind)})


def check_known_labels(records: list[Record], label_names: list[str], kind: LabelKind,
                       split_name: str) -> None:
    """Refuse labels of a held-out split that training never saw: the head has no unit for them."""
    if kind in UNLABELLED_KINDS:
        return
    known = set(label_names)
    first_seen: dict[str, str] = {}
    for record in records:
        for name in _labels_of(record, kind):
            if name not in known and name not in first_seen:
                first_seen[name] = record.where
    if not first_seen:
        return
    lines = [f"{where}: label {name!r}" for name, where in list(first_seen.items())[:5]]
    more = f"\n  ... and {len(first_seen) - 5} more unknown labels" if len(first_seen) > 5 else ""
    raise DataError(
        f"{len(first_seen)} label(s) in the {split_name} split do not occur in the training split:\n  "
        + "\n  ".join(lines) + more
        + f"\nKnown labels: {_listing(label_names)}."
        "\nAdd training examples with these labels, or fix or remove these rows.")
