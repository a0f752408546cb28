"""The GGUF cache key: the file's sha256, hashed once per process while the file is unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tunelab.models import gguf


def test_key_is_the_files_sha256_and_follows_its_changes(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"first weights")
    assert gguf._file_key(weights) == hashlib.sha256(b"first weights").hexdigest()[:16]
    weights.write_bytes(b"other weights, longer")
    assert gguf._file_key(weights) == hashlib.sha256(b"other weights, longer").hexdigest()[:16]


def test_unchanged_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"x" * 1000)
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: reads.append(path) or real_open(path, *a, **k))
    first = gguf._file_key(weights)
    assert gguf._file_key(weights) == first
    assert len(reads) == 1
    stat = weights.stat()  # same size, new mtime: hashed again
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert gguf._file_key(weights) == first
    assert len(reads) == 2
