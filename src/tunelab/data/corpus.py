"""Unlabelled text for continued pre-training: a plain-text file (one document per line) or the text column of a
CSV / JSONL / Parquet file, read into records whose label is empty (label kind "none").

A `.txt` file has no header and no columns: every non-blank line is a document (blank lines separate nothing, they
are skipped), `where` is `"file:line n"`. Tables go through the ordinary reader with no label column, so its
errors (missing text column, empty text, bad bytes) name the row as for every other task.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.data.readers import SUPPORTED_SUFFIXES, read_records
from tunelab.data.records import Record
from tunelab.errors import DataError

__all__ = ["read_corpus", "TEXT_SUFFIXES"]

TEXT_SUFFIXES = (".txt",)


def read_corpus(path: str | Path, *, text_column: str) -> list[Record]:
    """Every document of `path` as a record with an empty label."""
    file = Path(path)
    if file.suffix.lower() not in TEXT_SUFFIXES:
        if file.suffix.lower() not in SUPPORTED_SUFFIXES and file.is_file():
            raise DataError(f"{file}: unsupported file type {file.suffix or '(no suffix)'!r} for unlabelled text; "
                            f"give a .txt file (one document per line) or a {'/'.join(SUPPORTED_SUFFIXES)} file "
                            "with a text column (data.text_column)")
        return read_records(file, text_column=text_column, label_column=None, label_kind="none",
                            require_labels=False)
    if not file.is_file():
        raise DataError(f"{file}: file does not exist; check the path (relative paths are resolved from the current "
                        f"directory, {Path.cwd()})")
    data = file.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a BOM is tolerated (Notepad writes one)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(f"{file}:line {line}: bytes that are not UTF-8 ({err.reason}); save the file as UTF-8") from None
    records = [Record(text=line.strip(), label="", where=f"{file}:line {n}")
               for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not records:
        raise DataError(f"{file}: holds no text (only blank lines); write one document per line")
    return records
