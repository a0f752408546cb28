"""One tensor per file under the cache root, for what a run computes once from a model and reads back after: a
distillation teacher's logits (teacher_logits.py), a preference run's reference log-probabilities
(reference_logprobs.py). A safetensors file, written atomically; an entry that cannot be read, or whose shape is
not the one asked for, is never served (the caller computes it again and overwrites it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from tunelab.atomic import atomic_write_with

__all__ = ["read_cached", "write_cached"]


def read_cached(file: Path, name: str, shape: tuple[int, ...]) -> Optional[torch.Tensor]:
    """The tensor `name` of `file`, or None when there is no entry (or one of another shape)."""
    if not file.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensor = load_file(str(file))[name]
    except (SafetensorError, KeyError, OSError):
        return None
    return tensor if tuple(tensor.shape) == shape else None


def write_cached(file: Path, name: str, tensor: torch.Tensor, metadata: dict[str, str]) -> None:
    """`tensor` as the entry `file`, atomically: a reader sees the whole file or none."""
    from safetensors.torch import save_file

    atomic_write_with(file, lambda tmp: save_file({name: tensor.contiguous()}, str(tmp), metadata=metadata))
