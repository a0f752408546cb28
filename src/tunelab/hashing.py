"""sha256 of files, streamed in chunks (model weights and checkpoints are hundreds of MB: never whole in memory).

`hash_files` remembers its answer per process while every file keeps its path, size and mtime: a run, an
export or a server resolves the same base model several times (the run's identity, the adapter's recorded
base, the check on load) and each pass over a 100-500 MB directory cost 0.1-1 s. Checks that exist to catch
a file changed on disk (checkpoint verification) read it again with `update_with_file` instead.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import IO, Sequence

__all__ = ["update_with_file", "hash_files"]

_CHUNK = 1 << 22


def update_with_file(digest: "hashlib._Hash", handle: IO[bytes]) -> None:
    """Feed the rest of an open binary file into `digest`, 4 MiB at a time."""
    for chunk in iter(lambda: handle.read(_CHUNK), b""):
        digest.update(chunk)


def hash_files(paths: Sequence[Path], *, with_names: bool = False) -> str:
    """sha256 hex of the files' bytes in the given order (each preceded by its file name with `with_names`)."""
    stats = tuple((str(Path(p).resolve()), *_size_mtime(Path(p))) for p in paths)
    return _hash_files(stats, with_names)


def _size_mtime(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=16)
def _hash_files(stats: tuple[tuple[str, int, int], ...], with_names: bool) -> str:
    digest = hashlib.sha256()
    for path, _, _ in stats:
        if with_names:
            digest.update(Path(path).name.encode())
        with open(path, "rb") as handle:
            update_with_file(digest, handle)
    return digest.hexdigest()
