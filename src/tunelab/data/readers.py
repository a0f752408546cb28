"""Reading labelled examples from CSV, TSV, JSON Lines and Parquet files into :class:`Record` lists.

The reader is the first place a user's data meets tunelab, so it is strict and talkative: every problem
raises :class:`DataError` naming the file, the row or line, the bad value and what to change, before a
model is loaded. The whole file is read into memory (these are fine-tuning sets, not pre-training
corpora), which keeps the error paths simple: UTF-8 is checked once, with the exact line and byte.
No pandas: the stdlib ``csv`` module and pyarrow are enough and predictable.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from tunelab.data.labels import is_missing, missing_label, parse_label
from tunelab.data.records import LabelKind, Record
from tunelab.errors import DataError

__all__ = ["read_records", "SUPPORTED_SUFFIXES"]

# suffix -> format; ".json" files are read as JSON Lines (one object per line).
SUPPORTED_SUFFIXES: dict[str, str] = {
    ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
}
_DELIMITERS = {"csv": ",", "tsv": "\t"}
_OTHER_DELIMITERS = (";", "\t", "|", ",")
_FIELD_LIMIT = 2**31 - 1  # a 50 MB text field must not hit csv's 128 KB default
_ABSENT = object()  # the label column does not exist (allowed for prediction input)


class _Row(NamedTuple):
    where: str  # "file:row n", the Record.where of this row
    text: Any
    label: Any  # a raw cell value, or _ABSENT


def read_records(path: str | Path, *, text_column: str, label_column: str | None, label_kind: LabelKind,
                 label_delimiter: str | None = None, require_labels: bool = True) -> list[Record]:
    """Read every row of ``path`` as a :class:`Record`, with the label typed as ``label_kind`` says.

    The format follows the suffix: ``.csv``, ``.tsv``, ``.jsonl``/``.json`` (JSON Lines), ``.parquet``.
    Labels become ``str`` (classification; ``3`` and ``3.0`` become ``"3"``), ``tuple[str, ...]``
    (multilabel; a list, or a string split on ``label_delimiter``, ``"|"`` by default) or a finite
    ``float`` (regression). With ``require_labels=False`` (prediction input) the label column may be
    absent and missing labels become ``""``, ``()`` or ``nan``. ``Record.where`` is ``"{path}:row {n}"``
    with ``n`` the 1-based data row (the header excluded; the line number for JSON Lines).

    Raises DataError for a missing or empty file, an unsupported suffix, a missing column, an empty
    text, a missing or invalid label, undecodable bytes, malformed JSON or a ragged CSV row.
    """
    file = Path(path)
    fmt = _check_file(file)
    if label_column is None and require_labels:
        raise DataError(f"{file}: no label column was given; set label_column to the column that holds "
                        "the labels (only prediction input may leave it out)")
    reader = _FORMAT_READERS[fmt]
    records: list[Record] = []
    for row in reader(file, fmt, text_column, label_column, require_labels):
        text = _check_text(row.text, row.where, text_column)
        if row.label is _ABSENT or (not require_labels and is_missing(row.label)):
            label = missing_label(label_kind)
        else:
            label = parse_label(row.label, label_kind, where=row.where, column=str(label_column),
                                delimiter=label_delimiter)
        records.append(Record(text=text, label=label, where=row.where))
    if not records:
        raise DataError(f"{file}: contains no data rows (only a header or blank lines); add examples, "
                        "one per row, to the file")
    return records


def _check_file(file: Path) -> str:
    """The format of ``file``, after checking that it exists, is a file and is not empty."""
    if not file.exists():
        raise DataError(f"{file}: file does not exist; check the path (relative paths are resolved "
                        f"from the current directory, {Path.cwd()})")
    if not file.is_file():
        raise DataError(f"{file}: is a directory, not a data file; give the path of a "
                        f"{'/'.join(SUPPORTED_SUFFIXES)} file")
    fmt = SUPPORTED_SUFFIXES.get(file.suffix.lower())
    if fmt is None:
        raise DataError(f"{file}: unsupported file type {file.suffix or '(no suffix)'!r}; supported "
                        f"suffixes are {', '.join(SUPPORTED_SUFFIXES)}; rename or convert the file")
    if file.stat().st_size == 0:
        raise DataError(f"{file}: file is empty (0 bytes); write the examples to it, with a header row "
                        "for CSV/TSV")
    return fmt


def _check_text(value: Any, where: str, column: str) -> str:
    """A non-empty text; numbers are accepted as their string form, containers are refused."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not is_missing(value):
        value = str(value)
    if is_missing(value):
        raise DataError(f"{where}: text in column {column!r} is empty; fill it in or remove the row")
    if not isinstance(value, str):
        raise DataError(f"{where}: text in column {column!r} is a {type(value).__name__} "
                        f"({value!r:.80}); it must be a string")
    return value


def _read_utf8(file: Path) -> str:
    """The file's text; a byte that is not UTF-8 is reported with its line and byte offset."""
    data = file.read_bytes()
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # a BOM is tolerated (Excel writes one)
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - data.rfind(b"\n", 0, offset)
        raise DataError(
            f"{file}:line {line}: byte 0x{data[offset]:02x} at byte offset {offset} (column {column} of "
            "the line) is not valid UTF-8; "
            "the file must be UTF-8: re-save it as UTF-8 (for example `iconv -f latin1 -t utf-8`)"
        ) from None


def _missing_column(file: Path, place: str, role: str, name: str, present: list[str],
                    hint: str = "") -> DataError:
    """The error for a column that is not there, listing those that are, with a did-you-mean."""
    names = [p for p in present if len(p) <= 100]  # a 50 MB "column name" is a broken file, not a candidate
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if not close:
        lowered = {p.lower(): p for p in names}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    mean = f" Did you mean {close[0]!r}?" if close else ""
    listed = _names(present) or "(none)"
    advice = hint or f"{mean} Set {role}_column to one of them."
    return DataError(f"{file}:{place}: no {role} column {name!r}; the columns present are {listed}.{advice}")


def _check_columns(file: Path, place: str, text_column: str, label_column: str | None, present: list[str],
                   require_labels: bool, hint: str = "") -> None:
    """Both columns checked before either is reported: a file whose columns are named otherwise (`tweet`,
    `mood`) gets one message for the two settings, not one per try."""
    missing = [("text", text_column)] if text_column not in present else []
    if require_labels and (label_column is None or label_column not in present):
        missing.append(("label", str(label_column)))
    if len(missing) == 1:
        raise _missing_column(file, place, *missing[0], present, hint)
    if missing:
        names = [p for p in present if len(p) <= 100]
        parts = []
        for role, name in missing:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            parts.append(f"no {role} column {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise DataError(f"{file}:{place}: {' and '.join(parts)}; the columns present are {_names(present) or '(none)'}."
                        f"{hint or ' Set text_column and label_column to the columns that hold them.'}")


# --- CSV / TSV ----------------------------------------------------------------------------------

def _delimiter_hint(header: list[str], delimiter: str) -> str:
    """When the header is one column containing ';', tab or '|', the file uses another delimiter."""
    if len(header) != 1:
        return ""
    for other in _OTHER_DELIMITERS:
        if other != delimiter and other in header[0]:
            shown = "\\t" if other == "\t" else other
            expected = "tab" if delimiter == "\t" else f"{delimiter!r}"
            return (f" The header looks like the delimiter is {shown!r}, but this file type expects "
                    f"{expected}: re-save the file with {expected} as the delimiter"
                    + (" or rename it to .tsv." if other == "\t" else "."))
    return ""


def _read_csv(file: Path, fmt: str, text_column: str, label_column: str | None,
              require_labels: bool) -> Iterator[_Row]:
    """Rows of a CSV/TSV file; ``where`` counts data records (a quoted field may span lines)."""
    delimiter = _DELIMITERS[fmt]
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    reader = csv.reader(io.StringIO(_read_utf8(file), newline=""), delimiter=delimiter)
    header = _csv_header(file, reader)
    hint = _delimiter_hint(header, delimiter)
    _check_columns(file, "header", text_column, label_column, header, require_labels, hint)
    text_index = header.index(text_column)
    label_index = header.index(label_column) if label_column is not None and label_column in header else None
    n = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{file}:line {reader.line_num}: malformed {fmt.upper()} ({exc}); "
                            "check the quoting of this line") from None
        n += 1
        if not fields:
            continue  # a blank line: counted as a row so numbers match a spreadsheet view, skipped
        where = f"{file}:row {n}"
        if len(fields) != len(header):
            raise _ragged_row(where, reader.line_num, fields, header, hint)
        label = fields[label_index] if label_index is not None else _ABSENT
        yield _Row(where, fields[text_index], label)


def _csv_header(file: Path, reader: Any) -> list[str]:
    """The header row, stripped of surrounding spaces; refuses a file with no header."""
    try:
        header = next(reader)
        while not header:  # leading blank lines
            header = next(reader)
    except StopIteration:
        raise DataError(f"{file}: has no header row (only blank lines); the first line must name the "
                        "columns, e.g. text,label") from None
    except csv.Error as exc:
        raise DataError(f"{file}:line {reader.line_num}: malformed header ({exc})") from None
    return [name.strip() for name in header]


def _ragged_row(where: str, line: int, fields: list[str], header: list[str], hint: str) -> DataError:
    """The error for a row whose field count differs from the header's."""
    if hint:
        advice = hint.strip()
    elif len(fields) > len(header):
        advice = ("A text probably contains the delimiter: quote such fields (\"...\"), as csv writers "
                  "do, or use another delimiter.")
    else:
        advice = ("A field is probably missing, or an unclosed quote (\") swallowed the line end: "
                  "fill in the field or fix the quoting.")
    return DataError(f"{where} (line {line}): has {len(fields)} fields but the header has {len(header)} "
                     f"({_names(header)}). {advice}")


def _names(names: list[str], limit: int = 20, width: int = 40) -> str:
    """Column names for a message, each and all cut short: a message must not echo a huge broken header."""
    shown = [repr(n if len(n) <= width else f"{n[:width]}... ({len(n):,} characters)") for n in names[:limit]]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(shown) + more


# --- JSON Lines ---------------------------------------------------------------------------------

def _read_jsonl(file: Path, fmt: str, text_column: str, label_column: str | None,
                require_labels: bool) -> Iterator[_Row]:
    """Rows of a JSON Lines file: one object per line, blank lines skipped, ``n`` = line number."""
    text = _read_utf8(file)
    if text.lstrip().startswith("[") and file.suffix.lower() == ".json":
        _refuse_json_array(file, text)
    # split on "\n" only: str.splitlines would also split on U+2028 inside JSON strings
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        obj = _parse_json_line(file, n, line)
        where = f"{file}:row {n}"
        present = list(obj)
        _check_columns(file, f"line {n}", text_column, label_column, present, require_labels)
        label = obj[label_column] if label_column is not None and label_column in obj else _ABSENT
        yield _Row(where, obj[text_column], label)


def _parse_json_line(file: Path, n: int, line: str) -> dict[str, Any]:
    """One JSON object; errors name the line and column."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{file}:line {n}: invalid JSON ({exc.msg} at column {exc.colno}); each line "
                        "must be one complete JSON object, e.g. {\"text\": \"...\", \"label\": \"...\"}"
                        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{file}:line {n}: is a JSON {type(obj).__name__}, not an object; each line "
                        "must be one JSON object, e.g. {\"text\": \"...\", \"label\": \"...\"}")
    return obj


def _refuse_json_array(file: Path, text: str) -> None:
    """A .json file holding one array is a common near-miss: say how to convert it."""
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return  # not a single JSON document: let the line-by-line reader report the exact line
    raise DataError(f"{file}:line 1: is one JSON array, but .json files are read as JSON Lines; write "
                    "one object per line (e.g. `jq -c '.[]' in.json > out.jsonl`)")


# --- Parquet ------------------------------------------------------------------------------------

def _read_parquet(file: Path, fmt: str, text_column: str, label_column: str | None,
                  require_labels: bool) -> Iterator[_Row]:
    """Rows of a Parquet file, reading only the columns needed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{file}: is not a readable Parquet file ({exc}); re-write it with "
                        "pyarrow or pandas' to_parquet, or use another suffix") from None
    present = list(parquet.schema_arrow.names)
    _check_columns(file, "schema", text_column, label_column, present, require_labels)
    wanted = [text_column] + ([label_column] if label_column is not None and label_column in present else [])
    table = parquet.read(columns=wanted)
    if table.num_rows == 0:
        raise DataError(f"{file}: has a schema but no rows; add examples to the file")
    texts = table.column(text_column).to_pylist()
    labels = table.column(wanted[1]).to_pylist() if len(wanted) > 1 else [_ABSENT] * len(texts)
    for n, (text, label) in enumerate(zip(texts, labels), start=1):
        yield _Row(f"{file}:row {n}", text, label)


_Reader = Callable[[Path, str, str, "str | None", bool], Iterator[_Row]]
_FORMAT_READERS: dict[str, _Reader] = {
    "csv": _read_csv, "tsv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet,
}
