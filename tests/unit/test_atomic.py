"""atomic_dir / commit_dir / sweep_leftovers: a folder appears under its final name whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunelab.atomic import atomic_dir, commit_dir, discard_dir, sweep_leftovers


class Boom(Exception):
    pass


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def folder_with(path: Path, *files: str) -> Path:
    """`path` made as a folder holding the text files `files` (each containing its own name)."""
    path.mkdir()
    for file in files:
        (path / file).write_text(file)
    return path


@pytest.mark.parametrize("fsync", [True, False])
def test_success_renames_the_temp_folder_into_place(tmp_path: Path, fsync: bool) -> None:
    final = tmp_path / "sub" / "out"
    with atomic_dir(final, replace=False, fsync=fsync) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".") and str(os.getpid()) in tmp.name
        assert not final.exists()
        (tmp / "nested").mkdir()
        (tmp / "nested" / "a.txt").write_text("a")
    assert (final / "nested" / "a.txt").read_text() == "a"
    assert names(final.parent) == ["out"]


def test_exception_leaves_nothing_under_the_final_name_and_no_temp(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(Boom):
        with atomic_dir(final, replace=True) as tmp:
            (tmp / "half.txt").write_text("half")
            raise Boom
    assert names(tmp_path) == []


def test_exception_keeps_the_old_folder(tmp_path: Path) -> None:
    final = folder_with(tmp_path / "out", "old.txt")
    with pytest.raises(Boom):
        with atomic_dir(final, replace=True):
            raise Boom
    assert names(tmp_path) == ["out"] and names(final) == ["old.txt"]


def test_replace_swaps_the_old_folder_out_whole(tmp_path: Path) -> None:
    final = folder_with(tmp_path / "out", "old.txt")
    with atomic_dir(final, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert names(tmp_path) == ["out"] and names(final) == ["new.txt"]


def test_no_replace_refuses_a_folder_with_content_and_cleans_up(tmp_path: Path) -> None:
    final = folder_with(tmp_path / "out", "theirs.txt")
    with pytest.raises(FileExistsError):
        with atomic_dir(final, replace=False) as tmp:
            (tmp / "ours.txt").write_text("ours")
    assert names(tmp_path) == ["out"] and names(final) == ["theirs.txt"]


def test_no_replace_takes_over_an_empty_folder(tmp_path: Path) -> None:
    final = folder_with(tmp_path / "out")
    with atomic_dir(final, replace=False) as tmp:
        (tmp / "ours.txt").write_text("ours")
    assert names(final) == ["ours.txt"]


def test_commit_dir_moves_a_kept_staging_folder(tmp_path: Path) -> None:
    staging, final = folder_with(tmp_path / ".out.staging", "a.txt"), folder_with(tmp_path / "out", "old.txt")
    commit_dir(staging, final, replace=True)
    assert names(tmp_path) == ["out"] and names(final) == ["a.txt"]


def test_sweep_removes_what_killed_writes_left(tmp_path: Path) -> None:
    for name in (".tmp-step-1-123", ".tmp-step-1-end-123", ".trash-step-1-456", "step-1", ".hidden"):
        folder_with(tmp_path / name)
    sweep_leftovers(tmp_path, "step-1")
    assert names(tmp_path) == [".hidden", ".tmp-step-1-end-123", "step-1"]
    sweep_leftovers(tmp_path)
    assert names(tmp_path) == [".hidden", "step-1"]
    discard_dir(tmp_path / "step-1")
    assert names(tmp_path) == [".hidden"]
