"""File hashes of base weights: the GGUF cache key and the model-directory hash keep their values, and an
unchanged file is read once per process."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tunelab.models import gguf
from tunelab.models.loading import hash_model_dir


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths opened through the builtin open while the test runs."""
    paths: list[str] = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: paths.append(str(path)) or real_open(path, *a, **k))
    return paths


def test_key_is_the_files_sha256_and_follows_its_changes(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"first weights")
    assert gguf._file_key(weights) == hashlib.sha256(b"first weights").hexdigest()[:16]
    weights.write_bytes(b"other weights, longer")
    assert gguf._file_key(weights) == hashlib.sha256(b"other weights, longer").hexdigest()[:16]


def test_unchanged_file_is_read_once(tmp_path: Path, opened: list[str]) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"x" * 1000)
    first = gguf._file_key(weights)
    assert gguf._file_key(weights) == first
    assert opened.count(str(weights)) == 1
    stat = weights.stat()  # same size, new mtime: hashed again
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert gguf._file_key(weights) == first
    assert opened.count(str(weights)) == 2


def test_model_dir_hash_is_names_then_bytes_in_name_order(tmp_path: Path, opened: list[str]) -> None:
    (tmp_path / "b.safetensors").write_bytes(b"second shard")
    (tmp_path / "a.safetensors").write_bytes(b"first shard")
    (tmp_path / "config.json").write_text("{}")
    expected = hashlib.sha256(b"a.safetensors" b"first shard" b"b.safetensors" b"second shard").hexdigest()
    assert hash_model_dir(tmp_path) == expected  # the value runs and adapters recorded before stays valid
    assert hash_model_dir(tmp_path) == expected
    assert opened.count(str(tmp_path / "a.safetensors")) == 1
    (tmp_path / "b.safetensors").write_bytes(b"changed shard")
    assert hash_model_dir(tmp_path) != expected
