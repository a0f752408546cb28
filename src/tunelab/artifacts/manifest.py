"""manifest.json: what a run needs to be repeated and audited (versions, hashes, seed, git state)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from tunelab.data.records import Record

__all__ = ["build_manifest", "hash_records"]

PACKAGES = ("tunelab", "torch", "transformers", "tokenizers", "safetensors", "numpy", "pydantic")


def hash_records(records: list[Record]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(repr((record.text, record.label)).encode("utf-8"))
    return digest.hexdigest()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_state() -> dict[str, Any] | None:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def build_manifest(*, seed: int, data_hashes: dict[str, str], base_model: str, base_model_hash: str,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "data_sha256": data_hashes,
        "base_model": base_model,
        "base_model_sha256": base_model_hash,
        "git": _git_state(),
        **(extra or {}),
    }
