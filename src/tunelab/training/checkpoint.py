"""Checkpoint directories: written atomically, verified by content hash, pruned to the last K plus the best.

Layout (under `checkpoints/` in a run's staging folder, see `tunelab.artifacts.rundir`, which becomes
`NAME/checkpoints/` when the run finishes, so a killed run keeps its checkpoints where `--resume` looks)::

    checkpoints/
      step-00000012/            one checkpoint: tensors as safetensors, everything else as JSON
        model.safetensors       the parameters the plan ever trains (frozen ones reload from the base model)
        optimizer.safetensors   optimizer moments, keyed "<param index>.<key>"
        rng.safetensors         torch (and CUDA) generator states
        checkpoint.json         written last: state (position, RNG, schedule, ...) + sha256 and size per file
      step-00000018-end/        an epoch-end checkpoint (after evaluation and early stopping)

A checkpoint is first built in `.tmp-NAME-PID/` (each file fsync'd), then renamed into place and the parent
fsync'd (`tunelab.atomic.atomic_dir`): a kill at any moment leaves either a complete checkpoint or a `.tmp-*`
folder that is ignored and cleaned up. Pruned checkpoints are renamed to `.trash-*` before deletion for the
same reason. No pickle is ever written or read here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save_file as st_save_file

from tunelab.atomic import atomic_dir, discard_dir, give_usual_modes, sweep_leftovers
from tunelab.hashing import update_with_file

__all__ = ["Checkpoint", "CheckpointStore", "checkpoint_name", "MANIFEST", "FORMAT_VERSION"]

MANIFEST = "checkpoint.json"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{8})(-end)?$")


def checkpoint_name(step: int, epoch_end: bool) -> str:
    """`step-00000012` or `step-00000012-end`: names sort in training order, end-of-epoch after mid-epoch."""
    return f"step-{step:08d}{'-end' if epoch_end else ''}"


def _order(path: Path) -> tuple[int, int]:
    match = _NAME.match(path.name)
    assert match is not None, path
    return int(match.group(1)), 1 if match.group(2) else 0


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_tensors_synced(path: Path, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Stream `tensors` into a safetensors file (never the whole file in memory: a full fine-tune's weights and
    AdamW moments are hundreds of MB), fsync it, and return its sha256 and size read back in chunks."""
    st_save_file(tensors, str(path), metadata={"format": "pt"})
    give_usual_modes(path)  # safetensors writes 0600
    digest = hashlib.sha256()
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())
        update_with_file(digest, handle)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


@dataclass
class Checkpoint:
    """A verified checkpoint: `state` is the JSON part; `tensors(kind)` reads one safetensors file."""

    path: Path
    state: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    def tensors(self, kind: str) -> dict[str, torch.Tensor]:
        return st_load((self.path / f"{kind}.safetensors").read_bytes())


class CheckpointStore:
    """The checkpoints of one run. `sidecars` are append-only logs (metrics.jsonl) whose size is recorded
    with each checkpoint, so a resumed run can cut off the lines written after the checkpoint it resumes."""

    def __init__(self, root: Path, keep: int, sidecars: Sequence[Path] = ()) -> None:
        self.root, self.keep, self.sidecars = root, keep, list(sidecars)

    # -- writing ----------------------------------------------------------------------------------
    def save(self, name: str, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> Path:
        """Write checkpoint `name` atomically and prune old ones; `state["best_checkpoint"]` is kept."""
        final = self.root / name
        with atomic_dir(final, replace=True) as tmp:  # a resumed run writes the same step again: replaced whole
            files: dict[str, dict[str, Any]] = {}
            for kind, group in tensors.items():
                files[f"{kind}.safetensors"] = _write_tensors_synced(
                    tmp / f"{kind}.safetensors", {k: v.detach().cpu().contiguous() for k, v in group.items()})
            manifest = {"format_version": FORMAT_VERSION, "name": name, "created": time.time(), "files": files,
                        "sidecars": {p.name: p.stat().st_size if p.exists() else 0 for p in self.sidecars},
                        "state": state}
            _write_synced(tmp / MANIFEST, (json.dumps(manifest, allow_nan=True) + "\n").encode("utf-8"))
        self._prune(keep_also=state.get("best_checkpoint"))
        return final

    def _prune(self, keep_also: Optional[str]) -> None:
        existing = self.names()
        for path in existing[:-self.keep]:
            if path.name != keep_also:
                discard_dir(path)

    # -- reading ----------------------------------------------------------------------------------
    def names(self) -> list[Path]:
        """Checkpoint folders in training order (temp and trash folders excluded)."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)), key=_order)

    def clean_partial(self) -> None:
        """Remove what a killed write or prune left behind (`.tmp-*`, `.trash-*`)."""
        sweep_leftovers(self.root)

    def latest_valid(self, warn: Callable[[str], None]) -> Optional[Checkpoint]:
        """The newest checkpoint whose files match their recorded hashes; each one skipped is warned about."""
        for path in reversed(self.names()):
            problem = verify(path)
            if problem is None:
                return Checkpoint(path, json.loads((path / MANIFEST).read_text(encoding="utf-8"))["state"])
            warn(f"checkpoint {path} is unusable ({problem}); skipping it for the previous checkpoint")
        return None

    def load(self, name: str) -> Checkpoint:
        """Checkpoint `name` of this store; the name comes from a manifest on disk, so it is checked to be one
        of ours (`step-...`) and never a path that could lead outside the checkpoints folder."""
        from tunelab.errors import ModelError

        if not _NAME.match(name):
            raise ModelError(f"checkpoints in {self.root} refer to {name!r}, which is not a checkpoint name; "
                             "the checkpoint manifests were edited: start a new run")
        path = self.root / name
        problem = verify(path)
        if problem is not None:
            raise ModelError(f"checkpoint {path} is unusable ({problem}); it cannot be restored")
        return Checkpoint(path, json.loads((path / MANIFEST).read_text(encoding="utf-8"))["state"])

    def rewind_sidecars(self, checkpoint: Checkpoint) -> None:
        """Truncate each sidecar log to its size when `checkpoint` was written."""
        sizes = json.loads((checkpoint.path / MANIFEST).read_text(encoding="utf-8")).get("sidecars", {})
        for path in self.sidecars:
            if path.exists() and path.name in sizes:
                with path.open("r+b") as handle:
                    handle.truncate(int(sizes[path.name]))


def verify(path: Path) -> Optional[str]:
    """None when the checkpoint is complete and intact; otherwise what is wrong with it."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {MANIFEST}: the write did not finish"
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{MANIFEST} is not valid JSON ({err})"
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        return f"{MANIFEST} is not a tunelab checkpoint manifest of format {FORMAT_VERSION}"
    files = manifest.get("files")
    if not isinstance(files, dict) or not isinstance(manifest.get("state"), dict):
        return f"{MANIFEST} lacks its file list or state"
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != expected.get("bytes"):
            return f"{name} has {size} bytes, the manifest recorded {expected.get('bytes')}: truncated or changed"
        if _sha256(file) != expected.get("sha256"):
            return f"the sha256 of {name} does not match its manifest: corrupted on disk"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()  # read again on every verification: this check exists to catch changed files
    with path.open("rb") as handle:
        update_with_file(digest, handle)
    return digest.hexdigest()
