"""The run directory: built in a staging folder beside the target and moved into place only when the run
succeeds, so a failed run never changes an existing output directory.

The staging folder is also where an unfinished run keeps its checkpoints (`.NAME.staging/checkpoints/`):
a killed run leaves it behind and `tunelab train --resume` continues from it; a new run refuses to
discard it unless given --overwrite."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from tunelab.atomic import commit_dir
from tunelab.errors import ConfigError

__all__ = ["RunDirectory", "staging_path", "target_of_staging"]

FINISHED_MARKER = "manifest.json"
_STAGING_SUFFIX = ".staging"


def staging_path(target: Path) -> Path:
    """`.NAME.staging` beside the output folder `NAME`: hidden, and in the same folder so that moving the
    finished run into place is one rename. The one place this name is made."""
    return target.parent / f".{target.name}{_STAGING_SUFFIX}"


def target_of_staging(path: Path) -> Optional[Path]:
    """The output folder whose staging folder is `path` (`.NAME.staging` -> `NAME`), or None when `path` is not
    named like a staging folder: users may point `--resume` at either."""
    if path.name.startswith(".") and path.name.endswith(_STAGING_SUFFIX):
        return path.parent / path.name[1:-len(_STAGING_SUFFIX)]
    return None


class RunDirectory:
    def __init__(self, target: Path, overwrite: bool = False) -> None:
        self.target = target.expanduser().resolve()
        self.overwrite = overwrite
        self.staging = staging_path(self.target)

    def check_target(self, resume: bool = False) -> None:
        """Refuse up front, before any work, to replace an earlier run (or an unfinished one) unless asked to,
        and never to replace a folder that holds the current directory (`output: ..` with --overwrite)."""
        if self.target == Path(self.target.anchor) or self.target == Path.home():
            raise ConfigError(f"output: {self.target} is a filesystem root or your home folder; give a run folder "
                              "inside it (--out runs/NAME)")
        if self.overwrite and Path.cwd().resolve().is_relative_to(self.target):
            raise ConfigError(f"output: {self.target} contains the current directory, so --overwrite would delete "
                              "it; choose a separate run folder (--out runs/NAME)")
        if self.target.exists() and not self.target.is_dir():
            raise ConfigError(f"output: {self.target} exists and is a file; choose a directory path (--out DIR)")
        if self.target.is_dir() and any(self.target.iterdir()) and not self.overwrite:
            raise ConfigError(f"output: {self.target} already holds files (an earlier run?); choose another "
                              "directory with --out DIR, or pass --overwrite to replace it when this run succeeds")
        checkpoints = self.staging / "checkpoints"
        if not resume and not self.overwrite and checkpoints.is_dir() and any(checkpoints.iterdir()):
            raise ConfigError(f"output: {self.staging} holds the checkpoints of an unfinished run to {self.target}; "
                              "continue it with --resume, or pass --overwrite to discard it and start over")

    def open(self, resume: bool = False) -> Path:
        """The staging folder: fresh, or (resume) the unfinished run's own with its checkpoints."""
        self.check_target(resume)
        if resume and self.staging.is_dir():
            return self.staging
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        return self.staging

    def commit(self) -> Path:
        """Move the finished staging folder to the target (the old target, if any, is removed last). Not
        fsync'd (it never was): this guards against a failed or killed process, not a power cut."""
        commit_dir(self.staging, self.target, replace=True, fsync=False)
        return self.target

    def abandon(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
