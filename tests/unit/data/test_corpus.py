"""Unlabelled text for continued pre-training (data/corpus.py): a .txt file of one document per line, a table's
text column with no label column, and the text of a built-in labelled set (its labels dropped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_csv
from tunelab.config.schema import DataConfig
from tunelab.data.corpus import read_corpus
from tunelab.data.sources import load_data
from tunelab.errors import ConfigError, DataError
from tunelab.tasks.mlm import MaskedLMTask


def test_a_text_file_is_one_document_per_non_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_bytes(b"\xef\xbb\xbffirst line\n\n  second line  \n\nthird\n")
    records = read_corpus(path, text_column="ignored")
    assert [(r.text, r.label, r.where) for r in records] == [
        ("first line", "", f"{path}:line 1"), ("second line", "", f"{path}:line 3"), ("third", "", f"{path}:line 5")]


def test_a_table_gives_its_text_column_and_needs_no_labels(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [{"body": "some text", "other": "x"}, {"body": "more text", "other": "y"}])
    assert [r.text for r in read_corpus(path, text_column="body")] == ["some text", "more text"]
    with pytest.raises(DataError, match="body"):
        read_corpus(write_csv(tmp_path / "u.csv", [{"text": "a"}]), text_column="body")


@pytest.mark.parametrize("content, needle", [(b"\n \n", "holds no text"), (b"ok\n\xff\xfe\n", "line 2: bytes that are not UTF-8")])
def test_text_file_errors_name_the_file(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "c.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=needle):
        read_corpus(path, text_column="text")
    with pytest.raises(DataError, match="unsupported file type '.md'"):
        (tmp_path / "c.md").write_text("x")
        read_corpus(tmp_path / "c.md", text_column="text")


def test_a_built_in_set_lends_its_text_without_labels() -> None:
    data = load_data(DataConfig(builtin="bbc-news", limit=50), MaskedLMTask(), seed=0)
    records = data.splits.train + data.splits.validation + data.splits.test
    assert len(records) == 50 and data.label_names == [] and all(r.label == "" and r.text for r in records)
    with pytest.raises(ConfigError, match="digits holds images, not text"):
        load_data(DataConfig(builtin="digits"), MaskedLMTask(), seed=0)
