"""`--trust-pickle`: turn a pickle-only model directory into a safetensors one, loading with weights_only=True.

Unpickling can run arbitrary code, so tunelab refuses `.bin/.pt/.ckpt` weights by default. When the user
vouches for the file, it is still loaded with `torch.load(weights_only=True)` (tensors and plain containers
only: a pickle that carries code is refused even then) and written once as safetensors into a cache folder
keyed by the pickle files' hash. From then on the normal safetensors-only loader is used: transformers never
unpickles anything.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from tunelab.atomic import atomic_write_with
from tunelab.errors import ModelError
from tunelab.paths import cache_root

__all__ = ["convert_pickle_dir"]


def convert_pickle_dir(path: Path, pickles: list[Path]) -> Path:
    """A safetensors copy of the model directory `path` whose weights are the pickle files `pickles`."""
    digest = hashlib.sha256()
    for file in sorted(pickles):
        digest.update(file.name.encode() + file.read_bytes())
    out = cache_root() / "pickle-converted" / digest.hexdigest()[:24]
    if (out / "model.safetensors").is_file():
        return out
    state: dict[str, torch.Tensor] = {}
    for file in sorted(pickles):
        state.update(_load_weights_only(file))
    out.mkdir(parents=True, exist_ok=True)
    for item in path.iterdir():  # config and tokenizer files; never the pickles themselves
        if item.is_file() and item not in pickles:
            shutil.copy2(item, out / item.name)
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}  # clone: tied weights share memory
    atomic_write_with(out / "model.safetensors",
                      lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt", "converted_from": path.name}))
    return out


def _load_weights_only(file: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ModelError(f"model: {file} was refused even with --trust-pickle: it is not a plain tensor file "
                         f"(torch.load(weights_only=True) failed: {first}); convert it to safetensors where it was "
                         "made, with code you trust") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # Lightning-style .ckpt
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"model: {file} does not hold a mapping of parameter names to tensors; it cannot be "
                         "used as model weights")
    return state
