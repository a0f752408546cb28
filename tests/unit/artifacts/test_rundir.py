from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tunelab.artifacts import RunDirectory, atomic_write_json, atomic_write_text
from tunelab.errors import ConfigError


def test_atomic_write_leaves_no_temp_and_normal_mode(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    mode = stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode)
    assert mode & 0o044  # readable by others like any file the user writes, not mkstemp's 0600


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "f.txt", "old")

    class Boom(Exception):
        pass

    from tunelab.atomic import atomic_write_with

    def write(tmp: Path) -> None:
        tmp.write_text("half")
        raise Boom

    with pytest.raises(Boom):
        atomic_write_with(tmp_path / "f.txt", write)
    assert (tmp_path / "f.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_existing_run_is_refused_then_replaced_only_on_commit(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "model.txt").write_text("earlier run")
    with pytest.raises(ConfigError, match="--overwrite"):
        RunDirectory(target).check_target()
    rundir = RunDirectory(target, overwrite=True)
    staging = rundir.open()
    (staging / "model.txt").write_text("new run")
    assert (target / "model.txt").read_text() == "earlier run"  # untouched until commit
    rundir.abandon()
    assert (target / "model.txt").read_text() == "earlier run" and not staging.exists()
    staging = rundir.open()
    (staging / "model.txt").write_text("new run")
    rundir.commit()
    assert (target / "model.txt").read_text() == "new run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
