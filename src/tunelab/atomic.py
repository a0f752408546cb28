"""Atomic files and folders: a crash never leaves a half-written file or folder under its final name.

A file is written to a temp file in the same folder, fsync'd, then renamed over its final name.

A folder is built in a hidden sibling `.tmp-NAME-PID` and renamed into place by :func:`commit_dir` (with
`fsync`: every file and folder in it fsync'd before the rename, the parent after it). A folder it replaces is
first renamed to `.trash-NAME-PID` and deleted once the new one is in place, so a kill at any moment leaves
under NAME the old folder, the new one or nothing, never a mix; the `.tmp-*` / `.trash-*` siblings a kill
leaves are ignored by readers and removed by :func:`sweep_leftovers` where the caller owns the folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_write_with", "atomic_dir",
           "commit_dir", "discard_dir", "sweep_leftovers", "fsync_dir", "give_usual_modes"]

TMP_PREFIX, TRASH_PREFIX = ".tmp-", ".trash-"
_LEFTOVER = re.compile(r"^\.(?:tmp|trash)-(?P<name>.+)-\d+$")


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, then move the finished file into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        give_usual_modes(tmp_path)  # mkstemp and safetensors' save_file make 0600
        with tmp_path.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def give_usual_modes(*paths: Path) -> None:
    """Give each file, and every file below each folder, the mode a plain `open` would (0o666 & ~umask).

    Writers that go through a private temp file leave 0600: mkstemp, and safetensors' `save_file` (>= 0.8),
    hence transformers' `save_pretrained`. A model another user or a serving container under another uid
    must read is then unreadable, so every writer of run files calls this on what it wrote."""
    mode = 0o666 & ~_umask()
    for path in paths:
        files = [path] if not path.is_dir() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
        for file in files:
            os.chmod(file, mode)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# -- folders -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_dir(final: Path, *, replace: bool, fsync: bool = True) -> Iterator[Path]:
    """Yield a fresh temp folder beside `final`; on normal exit move it to `final` (:func:`commit_dir`), on an
    exception remove it and re-raise, so `final` only ever appears complete.

    `replace=False` raises FileExistsError at the end when `final` is a folder with content (an empty one is
    taken over, as a POSIX rename does); `replace=True` swaps out whatever is there."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # this process's own leftover of an earlier attempt
    tmp.mkdir()
    try:
        yield tmp
        commit_dir(tmp, final, replace=replace, fsync=fsync)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def commit_dir(tmp: Path, final: Path, *, replace: bool, fsync: bool = True) -> None:
    """Rename the finished folder `tmp` (a sibling of `final`) to `final`; see :func:`atomic_dir` for `replace`.

    The primitive on its own is for folders that must outlive a failed process, such as a run's staging
    folder that `--resume` continues. With `fsync`, a power loss after the rename cannot expose unwritten
    files under `final`."""
    if fsync:
        _fsync_tree(tmp)
    if not replace:
        _rename_refusing(tmp, final)
    else:
        old = _move_aside(final) if final.exists() else None
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    if fsync:
        fsync_dir(final.parent)


def discard_dir(path: Path) -> None:
    """Delete a folder without ever leaving it half-deleted under its own name (a kill leaves `.trash-*`)."""
    shutil.rmtree(_move_aside(path), ignore_errors=True)


def sweep_leftovers(folder: Path, name: Optional[str] = None) -> None:
    """Remove the `.tmp-*` / `.trash-*` folders that killed writes left in `folder` (with `name`: only those of
    writes to `folder / name`). Only for a folder one process writes at a time: another process's write in
    progress would be removed too."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if not path.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
            continue
        match = _LEFTOVER.match(path.name)
        if name is None or (match is not None and match["name"] == name):
            shutil.rmtree(path, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    """fsync a folder, which makes the names created or renamed in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file below `root`, then every folder bottom-up (`root` last)."""
    for folder, _subfolders, files in os.walk(root, topdown=False):
        for file in files:
            fd = os.open(os.path.join(folder, file), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def _move_aside(path: Path) -> Path:
    trash = path.parent / f"{TRASH_PREFIX}{path.name}-{os.getpid()}"
    os.replace(path, trash)
    return trash


def _rename_refusing(tmp: Path, final: Path) -> None:
    """`os.rename`, which refuses a non-empty folder under `final`: one check-free step, so two processes
    committing the same name cannot both win."""
    try:
        os.rename(tmp, final)
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        raise FileExistsError(errno.EEXIST, "a folder with content already has this name", str(final)) from None
