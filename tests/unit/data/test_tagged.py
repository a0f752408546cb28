"""CoNLL-style and JSON Lines readers for word-level tags: formats, and errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.data.tagged import read_tagged
from tunelab.errors import DataError


def test_conll_tab_and_space_separated_tag_in_last_column(tmp_path: Path) -> None:
    path = tmp_path / "train.conll"
    path.write_text("-DOCSTART- -X- O O\n\nJohn\tNNP\tB-PER\nlives\tVBZ\tO\n\n\nParis NNP B-LOC\n. . O\n", encoding="utf-8")
    records = read_tagged(path)
    assert [r.words for r in records] == [("John", "lives"), ("Paris", ".")]
    assert [r.label for r in records] == [("B-PER", "O"), ("B-LOC", "O")]
    assert records[0].where.endswith("train.conll:line 3") and records[1].where.endswith(":line 7")
    assert records[0].text == "John lives"


def test_jsonl_tokens_and_tags(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["S-X", "O"]}) + "\n\n", encoding="utf-8")
    assert read_tagged(path)[0].label == ("S-X", "O")


@pytest.mark.parametrize("content, message", [
    ("John\tB-PER\nlives\tXX\n", r"line 2: tag 'XX' is not O or B-/I-/E-/S-"),
    ("John\n", r"line 1: 'John' has no tag column"),
    ("", "contains no sentences"),
])
def test_conll_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_tagged(path)


@pytest.mark.parametrize("obj, message", [
    ({"tokens": ["a", "b"], "tags": ["O"]}, "2 words but 1 tags"),
    ({"tokens": "a b", "tags": ["O"]}, "needs \"tokens\""),
    ({"tokens": ["a"]}, "needs \"tags\""),
])
def test_jsonl_errors_name_the_line(tmp_path: Path, obj: dict, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + json.dumps(obj) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"bad.jsonl:line 2: .*{message}"):
        read_tagged(path)


def test_prediction_input_may_leave_tags_out(tmp_path: Path) -> None:
    path = tmp_path / "words.conll"
    path.write_text("John\nlives\n", encoding="utf-8")
    assert read_tagged(path, require_labels=False)[0].label == ()
