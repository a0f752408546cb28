"""The saved model of a continued pre-training run (task mlm or causal_lm): a plain backbone directory that a later
config names as `model: runs/x/model` and transformers loads (AutoModel, AutoModelForMaskedLM /
AutoModelForCausalLM), never an adapter.

- A LoRA or IA3 update is merged into the weights first (BitFit's biases are base weights already).
- Weights of the base checkpoint that the bare architecture has and the trained model lacks are carried over
  unchanged: BERT's pooler, which a masked LM does not hold. Without it a later classifier with the native head
  (pooler on [CLS]) would start from a random pooler where the base's run starts from the pre-trained one.
- A sentence-transformers base (modules.json, 1_Pooling/, ...) keeps those files: continued pre-training leaves
  the architecture as it was, so a later `head` run (frozen features) reads the features as the backbone was
  trained to be read, the L2-normalised mean of the token states (models/pooling.py), and sentence-transformers
  loads the directory as the sentence encoder it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tunelab.atomic import atomic_write_with, give_usual_modes
from tunelab.models.task_model import TaskModel
from tunelab.strategies.peft.base import merge_adapter

__all__ = ["save_backbone", "carry_base_weights", "copy_pooling_files", "SENTENCE_FILES"]

SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
WEIGHTS = "model.safetensors"


def save_backbone(model: TaskModel, tokenizer: Any, out_dir: Path, base_dir: Path) -> None:
    """Write `model` (merged in place: a run saves its model last) with its tokenizer as a transformers directory."""
    merge_adapter(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.network.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    carry_base_weights(out_dir, base_dir, model.network)
    copy_pooling_files(base_dir, out_dir)
    give_usual_modes(out_dir)  # save_pretrained's safetensors files come out 0600


def carry_base_weights(out_dir: Path, base_dir: Path, network: torch.nn.Module) -> list[str]:
    """Add to `out_dir`'s weights the base checkpoint's tensors that the bare architecture (`AutoModel`) has and
    the saved model lacks, under the saved model's names; returns those names. A sharded save is left as it is."""
    saved = out_dir / WEIGHTS
    if not saved.is_file():
        return []
    from transformers import AutoModel

    prefix = network.base_model_prefix
    with torch.device("meta"):
        bare = {f"{prefix}.{name}" for name, _ in AutoModel.from_config(network.config).named_parameters()}
    with safe_open(str(saved), "pt") as handle:
        have = set(handle.keys())
    carried: dict[str, torch.Tensor] = {}
    for path in sorted(base_dir.glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            for key in handle.keys():
                name = key if key.startswith(prefix + ".") else f"{prefix}.{key}"
                if name in bare and name not in have and name not in carried:
                    carried[name] = handle.get_tensor(key)
    if carried:
        tensors = {**load_file(str(saved)), **carried}
        atomic_write_with(saved, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    return sorted(carried)


def copy_pooling_files(base_dir: Path, out_dir: Path) -> list[str]:
    """The base's sentence-transformers files (modules.json, its modules' folders and settings), if it has them."""
    if not (base_dir / "modules.json").is_file():
        return []
    copied = []
    for name in SENTENCE_FILES:
        if (base_dir / name).is_file():
            shutil.copyfile(base_dir / name, out_dir / name)
            copied.append(name)
    for module in json.loads((base_dir / "modules.json").read_text(encoding="utf-8")):
        folder = str(module.get("path", "")) if isinstance(module, dict) else ""
        if folder and (base_dir / folder).is_dir():
            shutil.copytree(base_dir / folder, out_dir / folder, dirs_exist_ok=True)
            copied.append(folder)
    return copied
