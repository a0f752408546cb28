"""Label maps, unknown held-out labels and label normalisation."""

from __future__ import annotations

import math

import pytest

from tunelab.data.labels import build_label_map, check_known_labels, parse_label
from tunelab.data.records import Record
from tunelab.errors import DataError


def rec(label, row: int = 1) -> Record:
    return Record(text="t", label=label, where=f"val.csv:row {row}")


def test_label_map_sorted_unique():
    assert build_label_map([rec("b"), rec("a"), rec("b")], "class") == ["a", "b"]
    assert build_label_map([rec(("z", "a")), rec(()), rec(("m",))], "classes") == ["a", "m", "z"]
    assert build_label_map([rec(1.5)], "number") == []


def test_unknown_label_in_validation():
    known = ["neg", "pos"]
    check_known_labels([rec("pos"), rec("neg")], known, "class", "validation")
    with pytest.raises(DataError) as info:
        check_known_labels([rec("pos", 1), rec("neutral", 2)], known, "class", "validation")
    message = str(info.value)
    assert "val.csv:row 2" in message and "'neutral'" in message
    assert "validation split" in message and "'neg', 'pos'" in message


def test_unknown_multilabel_label():
    with pytest.raises(DataError, match=r"val.csv:row 4: label 'c'"):
        check_known_labels([rec(("a",), 3), rec(("a", "c"), 4)], ["a", "b"], "classes", "test")
    check_known_labels([rec(7.0)], [], "number", "test")  # nothing to check


@pytest.mark.parametrize("value,expected", [(3, "3"), (3.0, "3"), (2.5, "2.5"), (" pos ", "pos")])
def test_parse_classification(value, expected):
    assert parse_label(value, "class", where="f:row 1", column="label") == expected


def test_parse_multilabel_and_regression():
    assert parse_label([1, "a", "a", ""], "classes", where="w", column="c") == ("1", "a")
    assert parse_label("[]", "classes", where="w", column="c") == ()
    assert parse_label(" 1e3 ", "number", where="w", column="c") == 1000.0
    with pytest.raises(DataError, match="w: label in column 'c' is missing"):
        parse_label(math.nan, "number", where="w", column="c")
