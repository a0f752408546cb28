"""The run directory: built in a staging folder beside the target and moved into place only when the run
succeeds, so a failed run never changes an existing output directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tunelab.errors import ConfigError

__all__ = ["RunDirectory"]

FINISHED_MARKER = "manifest.json"


class RunDirectory:
    def __init__(self, target: Path, overwrite: bool = False) -> None:
        self.target = target.expanduser().resolve()
        self.overwrite = overwrite
        self.staging = self.target.parent / f".{self.target.name}.staging"

    def check_target(self) -> None:
        """Refuse up front, before any work, to replace an earlier run unless asked to."""
        if self.target.exists() and not self.target.is_dir():
            raise ConfigError(f"output: {self.target} exists and is a file; choose a directory path (--out DIR)")
        if self.target.is_dir() and any(self.target.iterdir()) and not self.overwrite:
            raise ConfigError(f"output: {self.target} already holds files (an earlier run?); choose another "
                              "directory with --out DIR, or pass --overwrite to replace it when this run succeeds")

    def open(self) -> Path:
        self.check_target()
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        return self.staging

    def commit(self) -> Path:
        """Move the finished staging folder to the target (the old target, if any, is removed last)."""
        old = None
        if self.target.exists():
            old = self.target.parent / f".{self.target.name}.old-{os.getpid()}"
            os.replace(self.target, old)
        os.replace(self.staging, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def abandon(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
