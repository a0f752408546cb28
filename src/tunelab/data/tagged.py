"""Readers for word-level tagged data (token classification): CoNLL-style files and JSON Lines.

CoNLL style: one word per line with its tag in the last column (tab-separated when the line has a tab,
else whitespace-separated), a blank line between sentences, `-DOCSTART-` lines skipped. JSON Lines: one
object per line with `tokens` (list of words) and `tags` (one tag per word). Tags must be `O` or
`B-`/`I-`/`E-`/`S-` + a type (IOB2 or BIOES); a bad tag is reported with its file and line, because a
typo there silently becomes a new entity type otherwise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

from tunelab.data.records import Record
from tunelab.errors import DataError

__all__ = ["read_tagged", "TAGGED_SUFFIXES", "check_tag"]

TAGGED_SUFFIXES = (".conll", ".conllu", ".txt", ".iob", ".bio", ".tsv", ".jsonl", ".json")
_TAG = re.compile(r"^(O|[BIES]-\S+)$")


def check_tag(tag: str, where: str) -> str:
    """A tag in IOB2 / BIOES form, else DataError naming the place and the expected form."""
    if not _TAG.match(tag):
        raise DataError(f"{where}: tag {tag!r} is not O or B-/I-/E-/S- followed by an entity type "
                        "(IOB2 or BIOES, e.g. B-PER); fix the tag, or check that the tag is the last column")
    return tag


def read_tagged(path: str | Path, *, require_labels: bool = True) -> list[Record]:
    """Sentences of `path` as records: `words` the tokens, `label` a tuple of tags (one per word),
    `text` the words joined by spaces. `where` is `"{path}:line {n}"` (the sentence's first line).
    With `require_labels=False` (prediction input) CoNLL lines may hold the word alone."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: file does not exist or is not a file; check the path")
    if file.suffix.lower() not in TAGGED_SUFFIXES:
        raise DataError(f"{file}: unsupported file type {file.suffix or '(no suffix)'!r} for token classification; "
                        f"use a CoNLL-style file ({', '.join(s for s in TAGGED_SUFFIXES if 'json' not in s)}) "
                        "or JSON Lines (.jsonl) with `tokens` and `tags`")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: byte offset {exc.start} is not valid UTF-8; re-save the file as UTF-8") from None
    reader = _read_jsonl if file.suffix.lower() in (".jsonl", ".json") else _read_conll
    records = reader(file, text, require_labels)
    if not records:
        raise DataError(f"{file}: contains no sentences; add tagged sentences (word and tag per line, blank line between)")
    return records


def _read_conll(file: Path, text: str, require_labels: bool) -> list[Record]:
    records: list[Record] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("-DOCSTART-"):
            if words:
                records.append(_record(words, tags, f"{file}:line {start}", require_labels))
            words, tags = [], []
            continue
        fields = line.rstrip("\r\n").split("\t") if "\t" in line else stripped.split()
        fields = [f.strip() for f in fields]
        if len(fields) < 2 and require_labels:
            raise DataError(f"{file}:line {n}: {stripped!r:.60} has no tag column; each line needs the word and its "
                            "tag (tag in the last column), with a blank line between sentences")
        start = start if words else n
        words.append(fields[0])
        if len(fields) >= 2:
            tags.append(check_tag(fields[-1], f"{file}:line {n}"))
    if words:
        records.append(_record(words, tags, f"{file}:line {start}", require_labels))
    return records


def _read_jsonl(file: Path, text: str, require_labels: bool) -> list[Record]:
    records: list[Record] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file}:line {n}"
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: invalid JSON ({exc.msg}); each line must be one object with tokens and tags") from None
        if not isinstance(obj, dict) or not _str_list(obj.get("tokens")):
            raise DataError(f"{where}: needs \"tokens\": a non-empty list of strings (the words of the sentence)")
        tags = obj.get("tags")
        if tags is None and not require_labels:
            tags = []
        elif not _str_list(tags):
            raise DataError(f"{where}: needs \"tags\": a list of strings, one tag per token")
        records.append(_record(obj["tokens"], [check_tag(t, where) for t in tags], where, require_labels))
    return records


def _str_list(value: Optional[Any]) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def _record(words: list[str], tags: list[str], where: str, require_labels: bool) -> Record:
    if tags and len(tags) != len(words):
        raise DataError(f"{where}: {len(words)} words but {len(tags)} tags; give every word exactly one tag")
    if not tags and require_labels:
        raise DataError(f"{where}: the sentence has no tags; give every word a tag")
    return Record(text=" ".join(words), label=tuple(tags), where=where, words=tuple(words))
