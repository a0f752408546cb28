"""read_records: happy paths for every format and task kind, and one test per user error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunelab.data.readers import read_records
from tunelab.data.records import Record
from tunelab.errors import DataError, TunelabError


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def read(path: Path, label_kind="class", **kwargs) -> list[Record]:
    kwargs.setdefault("text_column", "text")
    kwargs.setdefault("label_column", "label")
    return read_records(path, label_kind=label_kind, **kwargs)


def raises(path: Path, *fragments: str, **kwargs) -> str:
    """Assert read() raises DataError whose message names the file and every fragment."""
    with pytest.raises(DataError) as info:
        read(path, **kwargs)
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- happy paths --------------------------------------------------------------------------------

def test_csv_classification(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\nhello,pos\n"a, quoted\ntext",neg\nnum,3\n')
    records = read(path)
    assert [r.text for r in records] == ["hello", "a, quoted\ntext", "num"]
    assert [r.label for r in records] == ["pos", "neg", "3"]
    assert records[1].where == f"{path}:row 2"


def test_csv_with_bom_and_crlf(tmp_path):
    path = write(tmp_path / "d.csv", "\ufefftext,label\r\nhi,a\r\nyo,b\r\n".encode("utf-8"))
    assert [(r.text, r.label) for r in read(path)] == [("hi", "a"), ("yo", "b")]


def test_tsv_regression(tmp_path):
    path = write(tmp_path / "d.tsv", "label\ttext\n1.5\tgood, fine\n-2\tbad\n")
    records = read(path, label_kind="number")
    assert [(r.text, r.label) for r in records] == [("good, fine", 1.5), ("bad", -2.0)]


def test_csv_multilabel_delimiters(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\nx, a | b ||\ny,c\nz,"[""a"", ""c""]"\n')
    records = read(path, label_kind="classes")
    assert [r.label for r in records] == [("a", "b"), ("c",), ("a", "c")]
    path = write(tmp_path / "e.csv", "text,label\nx,a;b\n")
    assert read(path, label_kind="classes", label_delimiter=";")[0].label == ("a", "b")


def test_jsonl_all_tasks(tmp_path):
    lines = [{"text": "a", "label": 3, "tags": ["x", "y"], "score": 0.5},
             {"text": "b", "label": "neg", "tags": "y|z", "score": 2}]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(x) for x in lines[:1]) + "\n\n"
                 + json.dumps(lines[1]) + "\n")
    records = read(path)
    assert [r.label for r in records] == ["3", "neg"]
    assert records[1].where == f"{path}:row 3"  # JSONL rows are line numbers; blank line 2 skipped
    assert [r.label for r in read(path, label_kind="classes", label_column="tags")] == [("x", "y"), ("y", "z")]
    assert [r.label for r in read(path, label_kind="number", label_column="score")] == [0.5, 2.0]


def test_json_suffix_is_json_lines(tmp_path):
    path = write(tmp_path / "d.json", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    assert len(read(path)) == 2


def test_parquet_all_tasks(tmp_path):
    table = pa.table({"text": ["a", "b"], "label": [3.0, 1.0], "tags": [["x"], []],
                      "score": [0.25, 7]})
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    records = read(path)
    assert [r.label for r in records] == ["3", "1"]
    assert records[0].where == f"{path}:row 1"
    assert [r.label for r in read(path, label_kind="classes", label_column="tags")] == [("x",), ()]
    assert [r.label for r in read(path, label_kind="number", label_column="score")] == [0.25, 7.0]


def test_prediction_input_without_labels(tmp_path):
    path = write(tmp_path / "d.csv", "text\nhello\nworld\n")
    assert read(path, require_labels=False)[0].label == ""
    assert read(path, label_kind="classes", require_labels=False)[0].label == ()
    assert math.isnan(read(path, label_kind="number", require_labels=False)[0].label)
    path = write(tmp_path / "p.jsonl", '{"text": "a"}\n{"text": "b", "label": "x"}\n')
    assert [r.label for r in read(path, require_labels=False)] == ["", "x"]
    assert read(path, label_column=None, require_labels=False)[1].label == ""


def test_large_csv_field(tmp_path):
    big = "word " * 10_000_000  # 50 MB on one line, far above csv's 128 KB default limit
    path = write(tmp_path / "big.csv", f"text,label\n{big},a\n")
    assert len(read(path)[0].text) == len(big)


# --- errors: the file ---------------------------------------------------------------------------

def test_missing_file(tmp_path):
    raises(tmp_path / "nope.csv", "does not exist")


def test_unknown_suffix(tmp_path):
    message = raises(write(tmp_path / "d.xlsx", "x"), ".xlsx")
    for suffix in (".csv", ".tsv", ".jsonl", ".parquet"):
        assert suffix in message


def test_empty_file(tmp_path):
    raises(write(tmp_path / "d.csv", ""), "empty (0 bytes)")


def test_header_only(tmp_path):
    raises(write(tmp_path / "d.csv", "text,label\n"), "no data rows")


def test_jsonl_only_blank_lines(tmp_path):
    raises(write(tmp_path / "d.jsonl", "\n\n"), "no data rows")


def test_parquet_without_rows(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string())}), path)
    raises(path, "no rows")


def test_not_a_parquet_file(tmp_path):
    raises(write(tmp_path / "d.parquet", "text,label\na,b\n"), "not a readable Parquet file")


def test_undecodable_bytes(tmp_path):
    path = write(tmp_path / "d.csv", b"text,label\nfine,a\ncaf\xe9,b\n")
    raises(path, "line 3", "byte 0xe9 at byte offset 21 (column 4", "must be UTF-8")


def test_undecodable_bytes_after_bom(tmp_path):
    path = write(tmp_path / "d.csv", b"\xef\xbb\xbftext,label\n\x80,b\n")
    raises(path, "line 2", "byte offset 14 (column 1")


def test_undecodable_bytes_jsonl(tmp_path):
    path = write(tmp_path / "d.jsonl", b'{"text": "ok", "label": "a"}\n{"text": "\xff", "label": "b"}\n')
    raises(path, "line 2", "UTF-8")


# --- errors: columns ----------------------------------------------------------------------------

def test_missing_text_column_did_you_mean(tmp_path):
    path = write(tmp_path / "d.csv", "txt,label\na,b\n")
    raises(path, "header", "'text'", "'txt', 'label'", "Did you mean 'txt'?")


def test_missing_label_column(tmp_path):
    path = write(tmp_path / "d.csv", "text,category\na,b\n")
    message = raises(path, "header", "label column 'label'", "'text', 'category'")
    assert "Did you mean" not in message


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_both_columns_missing_in_one_message(tmp_path, suffix):
    """A file of one's own rarely says text,label: both settings are named at once, with their did-you-means."""
    path = tmp_path / f"d.{suffix}"
    if suffix == "parquet":
        pq.write_table(pa.table({"tweet": ["a"], "labels": ["b"]}), path)
    else:
        write(path, "tweet,labels\na,b\n" if suffix == "csv" else '{"tweet": "a", "labels": "b"}\n')
    raises(path, "no text column 'text' (did you mean 'tweet'?) and no label column 'label' (did you mean 'labels'?)",
           "Set text_column and label_column")


def test_missing_label_column_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a"], "labels": ["b"]}), path)
    raises(path, "label column 'label'", "Did you mean 'labels'?")


def test_missing_key_jsonl(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"Text": "b", "label": "y"}\n')
    raises(path, "line 2", "'text'", "Did you mean 'Text'?")


def test_semicolon_delimiter_hint(tmp_path):
    path = write(tmp_path / "d.csv", "text;label\nhello;pos\n")
    raises(path, "header", "looks like the delimiter is ';'")


def test_tab_delimiter_hint_in_csv(tmp_path):
    path = write(tmp_path / "d.csv", "text\tlabel\nhello\tpos\n")
    raises(path, "looks like the delimiter is '\\\\t'", ".tsv")


def test_ragged_row(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nfine,a\nhello, world,b\n")
    raises(path, "row 2", "3 fields but the header has 2", "quote")


def test_ragged_row_with_delimiter_hint(tmp_path):
    path = write(tmp_path / "d.csv", "text|label\nok|a\nx|y|z,w\n")
    raises(path, "row 2", "looks like the delimiter is '|'", text_column="text|label",
           label_column=None, require_labels=False)


# --- errors: values -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", ['""', "   "])
def test_empty_text(tmp_path, text):
    path = write(tmp_path / "d.csv", f"text,label\nfine,a\n{text},b\n")
    raises(path, "row 2", "text in column 'text' is empty")


def test_null_text_jsonl(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": null, "label": "a"}\n')
    raises(path, "row 1", "is empty")


def test_missing_label_value(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nfine,a\nno label,\n")
    raises(path, "row 2", "label in column 'label' is missing")


def test_missing_label_value_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [1.0, float("nan")]}), path)
    raises(path, "row 2", "missing")


@pytest.mark.parametrize("value,fragment", [("nan", "not finite"), ("inf", "not finite"),
                                            ("-Infinity", "not finite"), ("high", "not a number")])
def test_bad_regression_target(tmp_path, value, fragment):
    path = write(tmp_path / "d.csv", f"text,label\nfine,1\nbad,{value}\n")
    raises(path, "row 2", fragment, label_kind="number")


def test_regression_target_bool_jsonl(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": true}\n')
    raises(path, "row 1", "not a number", label_kind="number")


def test_invalid_json_line(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": }\n')
    raises(path, "line 2", "invalid JSON", "column")


def test_jsonl_line_not_an_object(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n["b", "y"]\n')
    raises(path, "line 2", "not an object")


def test_json_array_file(tmp_path):
    path = write(tmp_path / "d.json", '[{"text": "a", "label": "x"}]')
    raises(path, "line 1", "JSON Lines")


def test_errors_are_tunelab_errors(tmp_path):
    with pytest.raises(TunelabError):
        read(tmp_path / "nope.csv")
