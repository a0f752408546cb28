"""Where tunelab keeps what it can rebuild: one cache root, `activations/`, `models/`, `teacher_logits/` and
`reference_logprobs/` below it.

The root is `$TUNELAB_CACHE`, else `$XDG_CACHE_HOME/tunelab`, else `~/.cache/tunelab`: one variable moves
every cache together (to a bigger disk, a CI scratch folder, a test's temp folder), where there used to be
one per kind. `train.cache_dir` still points one run's activation cache elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "activation_cache_dir", "model_cache_dir", "teacher_logits_dir", "reference_logprobs_dir"]


def cache_root() -> Path:
    """The cache root (an empty variable counts as unset, as the XDG spec says)."""
    explicit = os.environ.get("TUNELAB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tunelab"


def activation_cache_dir() -> Path:
    """Frozen-prefix activations (training/cache.py), shared by every run that does not set train.cache_dir."""
    return cache_root() / "activations"


def model_cache_dir() -> Path:
    """Models converted once for reuse (GGUF dequantised, EfficientNet weights as safetensors)."""
    return cache_root() / "models"


def teacher_logits_dir() -> Path:
    """A distillation teacher's logits for a training split, computed once (serving/teacher_logits.py)."""
    return cache_root() / "teacher_logits"


def reference_logprobs_dir() -> Path:
    """A preference run's reference log-probabilities for a split, computed once (serving/reference_logprobs.py)."""
    return cache_root() / "reference_logprobs"
