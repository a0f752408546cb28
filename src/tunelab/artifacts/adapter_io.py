"""Save and load a PEFT result: only the method's declared parameters, the trained head and a config.

Methods with a `peft_type` (LoRA, IA3, prompt tuning) are written in the peft library's format
(`adapter_config.json` + `adapter_model.safetensors`, the head as modules_to_save keys) so that
`peft.PeftModel.from_pretrained(AutoModelForSequenceClassification..., dir)` loads them. The others use
`tunelab_adapter.safetensors`, keyed by TaskModel parameter names. Both get `tunelab_adapter.json` with
the format version, the method and the hash of the base weights the adapter belongs to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tunelab.atomic import atomic_write_json, atomic_write_with
from tunelab.config.schema import RunConfig
from tunelab.errors import ModelError
from tunelab.models.task_model import TaskModel
from tunelab.strategies.peft.base import Adaptation, PeftMethod, adaptation_of, head_names

__all__ = ["save_adapter", "load_adapter", "adapter_state", "ADAPTER_META", "FORMAT_VERSION", "is_adapter_dir"]

FORMAT_VERSION = 1
ADAPTER_META = "tunelab_adapter.json"
TUNELAB_WEIGHTS = "tunelab_adapter.safetensors"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
HEAD_WEIGHTS = "tunelab_head.safetensors"


def is_adapter_dir(model_dir: Path) -> bool:
    return (Path(model_dir) / ADAPTER_META).is_file()


def _network_key(prefix: str, name: str) -> str:
    return prefix + name[len("network."):]


def adapter_state(model: TaskModel, method: PeftMethod, adaptation: Adaptation) -> tuple[dict[str, str], dict[str, str]]:
    """(saved key -> TaskModel parameter name) for the adapter file, and for a separate tunelab head file.

    One mapping serves saving and loading, so the two cannot disagree."""
    heads = head_names(model)
    if method.peft_type is None:
        keys = {n: n for n in sorted(adaptation.params)} | {n: n for n in heads}
        return keys, {}
    prefix = method.peft_prefix
    keys: dict[str, str] = {}
    for path, layer in adaptation.layers.items():
        for local, suffix in layer.peft_keys().items():
            full = f"{path}.{local}"
            keys[method.peft_key(path, suffix)] = full
    extra = set(adaptation.params) - set(keys.values())
    if extra:  # every declared parameter must have a place in the file
        raise ModelError(f"{method.name}: declared parameters without a saved key: {sorted(extra)[:3]}")
    head_file: dict[str, str] = {}
    for name in heads:
        if name.startswith("network."):
            keys[_network_key(prefix, name)] = name
        else:
            head_file[name[len("head."):]] = name
    return keys, head_file


def _head_modules(model: TaskModel) -> list[str]:
    """Module names (relative to the HF model) whose weights form a native head: peft's modules_to_save."""
    return sorted({n[len("network."):].rsplit(".", 1)[0] for n in head_names(model) if n.startswith("network.")})


def save_adapter(model: TaskModel, out_dir: Path, config: RunConfig, method: PeftMethod, base_hash: str, base_dir: str) -> None:
    adaptation = adaptation_of(model)
    if adaptation is None:
        raise ModelError(f"strategy {method.name}: the model carries no adaptation to save")
    out_dir.mkdir(parents=True, exist_ok=True)
    keys, head_file = adapter_state(model, method, adaptation)
    params = dict(model.named_parameters())
    meta = {"format": "pt", "tunelab_format_version": str(FORMAT_VERSION), "tunelab_method": method.name}

    def tensors(mapping: dict[str, str]) -> dict[str, torch.Tensor]:
        return {k: params[n].detach().contiguous().cpu() for k, n in mapping.items()}

    weights = PEFT_WEIGHTS if method.peft_type else TUNELAB_WEIGHTS
    atomic_write_with(out_dir / weights, lambda tmp: save_file(tensors(keys), str(tmp), metadata=meta))
    if head_file:
        atomic_write_with(out_dir / HEAD_WEIGHTS, lambda tmp: save_file(tensors(head_file), str(tmp), metadata=meta))
    if method.peft_type:
        atomic_write_json(out_dir / PEFT_CONFIG, _peft_config(model, config, method, adaptation, base_dir))
    atomic_write_json(out_dir / ADAPTER_META, {
        "format_version": FORMAT_VERSION, "method": method.name, "weights": weights,
        "head": "native" if model.is_native else config.head.type, "head_weights": HEAD_WEIGHTS if head_file else None,
        "base_model": base_dir, "base_model_hash": base_hash,
        "adapter_params": sum(params[n].numel() for n in adaptation.params),
    })


def _peft_config(model: TaskModel, config: RunConfig, method: PeftMethod, adaptation: Adaptation, base_dir: str) -> dict[str, Any]:
    from tunelab.tasks.registry import get_task

    native = model.is_native
    return {
        "peft_type": method.peft_type,
        # a native head means the HF task model (sequence classification, or the task's own: CAUSAL_LM);
        # a tunelab head sits outside the HF model
        "task_type": get_task(config.task).peft_task_type if native else "FEATURE_EXTRACTION",
        "base_model_name_or_path": base_dir,
        "inference_mode": True,
        "modules_to_save": _head_modules(model) if native else None,
        **method.peft_config(model, config.strategy, adaptation),
    }


def read_meta(model_dir: Path) -> dict[str, Any]:
    meta = json.loads((model_dir / ADAPTER_META).read_text(encoding="utf-8"))
    version = int(meta.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise ModelError(f"{model_dir / ADAPTER_META}: written by a newer tunelab (adapter format {version}); this "
                         f"tunelab reads format {FORMAT_VERSION} and older; upgrade tunelab to load it")
    return meta


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"{path} is missing; the adapter cannot be restored (was the run directory copied in full?)")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        version = int((handle.metadata() or {}).get("tunelab_format_version", 0))
    if version > FORMAT_VERSION:
        raise ModelError(f"{path}: written by a newer tunelab (adapter format {version}); this tunelab reads format "
                         f"{FORMAT_VERSION} and older; upgrade tunelab to load it")
    return load_file(str(path))


def load_adapter(model: TaskModel, model_dir: Path, config: RunConfig, method: PeftMethod) -> None:
    """Apply `method` to the fresh base `model` and load the saved adapter and head into it; every saved key
    must find its parameter and every declared parameter its key (a head is never left untrained)."""
    meta = read_meta(model_dir)
    if meta.get("method") != method.name:
        raise ModelError(f"{model_dir}: the adapter was trained with {meta.get('method')!r} but the config says "
                         f"{method.name!r}; the run directory is inconsistent")
    adaptation = method.apply(model, method.for_loading(model, config.strategy))
    keys, head_file = adapter_state(model, method, adaptation)
    state = _read(model_dir / meta["weights"])
    if head_file:
        state.update({f"head:{k}": v for k, v in _read(model_dir / HEAD_WEIGHTS).items()})
        keys.update({f"head:{k}": n for k, n in head_file.items()})
    missing = sorted(set(keys) - set(state))
    if missing:
        raise ModelError(f"{model_dir}: the adapter files lack {len(missing)} tensors (first: {missing[0]}); "
                         "they were written for a different model or method")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, name in keys.items():
            if params[name].shape != state[key].shape:
                raise ModelError(f"{model_dir}: {key} has shape {tuple(state[key].shape)}, the model expects "
                                 f"{tuple(params[name].shape)}; the adapter belongs to another base model or config")
            params[name].copy_(state[key])
