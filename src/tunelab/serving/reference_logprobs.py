"""A preference run's reference: each pair's summed log-probabilities of the chosen and the rejected reply under the
model before training, computed once and kept under the cache root.

The reference is the model as built for the run, before its first step, in eval mode and with any adapter switched
off (strategies/peft/base.py `adapter_off`): for LoRA, IA3 and the bottleneck adapters the base itself, for full
fine-tuning the model as loaded. An entry is one safetensors file `$TUNELAB_CACHE/reference_logprobs/<key>.safetensors`
(`(N, 2)` fp32), written atomically. The key hashes the base weights (their hash, and the model settings that change
the network: `model.num_blocks`, `model.init_from`), the precision and device type the pass runs in, and every
pair's tokens in order (the row and where its replies start), so later runs, compare rows, tune trials and a resumed
run on the same split read it back, and other data, another base or another precision never meet a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from tunelab.config.schema import ModelConfig, RunConfig
from tunelab.data.encoding import EncodedSplit
from tunelab.errors import TunelabError
from tunelab.inference.predict import predict_split
from tunelab.paths import reference_logprobs_dir
from tunelab.serving.cached_tensors import read_cached, write_cached
from tunelab.strategies.peft.base import adapter_off
from tunelab.tasks.base import Task

__all__ = ["ReferenceLogprobs", "reference_logprobs", "reference_key", "base_settings", "run_reference"]

FORMAT_VERSION = 1


@dataclass
class ReferenceLogprobs:
    logprobs: torch.Tensor   # (N, 2): log ref(chosen), log ref(rejected)
    computed: int            # pairs scored in this call (0: read from the cache)
    reused: int              # pairs read back from the cache
    seconds: float
    key: str
    file: Path


def reference_key(split: EncodedSplit, base: dict[str, Any], precision: str, device: torch.device) -> str:
    """sha256 of what the reference's log-probs depend on: `base` (the weights' hash and the model settings), the
    precision and device type of the pass, and the pairs' tokens in order."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, "base": base, "precision": precision,
                                        "device": device.type}, sort_keys=True, default=str).encode())
    for name in sorted(split.features):
        digest.update(name.encode() + split.features[name].numpy().tobytes())
    for ids in split.input_ids:
        digest.update(len(ids).to_bytes(4, "little") + torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
    return digest.hexdigest()


def base_settings(base_hash: str, model: ModelConfig) -> dict[str, Any]:
    """What identifies the reference network: the base weights' hash and the model settings that change it."""
    return {"model": base_hash, "num_blocks": model.num_blocks, "init_from": model.init_from}


def reference_logprobs(build: Callable[[], torch.nn.Module], split: EncodedSplit, task: Task, *, base: dict[str, Any],
                       precision: str, device: torch.device, batch_size: int, pad_id: int) -> ReferenceLogprobs:
    """The reference's `(N, 2)` log-probs of `split`'s pairs: read from the cache, else computed with the model
    `build()` returns (the model before training) in eval mode with its adapter off, and stored."""
    started = time.perf_counter()
    key = reference_key(split, base, precision, device)
    file = reference_logprobs_dir() / f"{key}.safetensors"
    logprobs = read_cached(file, "logprobs", (len(split), 2))
    computed = 0
    if logprobs is None:
        model = build()
        with adapter_off(model):
            predictions, _ = predict_split(model.to(device), split, task, [], batch_size=batch_size, pad_id=pad_id,
                                           device=device, precision=precision)
        logprobs = predictions.raw.float()
        write_cached(file, "logprobs", logprobs, {"format_version": str(FORMAT_VERSION), "pairs": str(len(split))})
        computed = len(split)
    return ReferenceLogprobs(logprobs=logprobs, computed=computed, reused=len(split) - computed,
                             seconds=time.perf_counter() - started, key=key, file=file)


def run_reference(config: RunConfig, task: Task, split: EncodedSplit, *, precision: str, device: torch.device,
                  pad_id: int) -> ReferenceLogprobs:
    """A finished run's reference for other pairs (`tunelab eval`): the base model `model.name` names, as the run's
    own reference was (the test split of the run itself is read back from the cache); built only on a miss."""
    from tunelab.models.loading import hash_model_dir, resolve_model_dir

    if config.model.init_from:
        raise TunelabError(f"model.init_from: this run started from {config.model.init_from}, whose model is its "
                           "reference; evaluate pairs by training on them as test data (data.test) instead")
    base_dir = resolve_model_dir(config.model.name)
    return reference_logprobs(lambda: task.build_model(config.model, config.head, [], base_dir), split, task,
                              base=base_settings(hash_model_dir(base_dir), config.model), precision=precision,
                              device=device, batch_size=config.train.evaluation_batch_size, pad_id=pad_id)
