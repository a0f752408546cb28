"""The forgetting meter of every run: what the fine-tune cost the pre-trained model, measured against the base
model the run started from, on a small reference set, and written to test_metrics.json under `forgetting`.

- weight drift per LayerStack block, ||theta - theta0|| / ||theta0||, on the effective weights (a mergeable PEFT
  method's delta folded in: a merged copy of each inserted layer; the model itself is untouched); 0 for a
  frozen block, and for methods whose added computation no weight absorbs (adapters, prompts), which leave
  every base weight as it was (their change shows in the CKA);
- representation drift per block: linear CKA between the base's and the tuned model's pooled block outputs;
- retention fitting the backbone: text encoders keep their embedding geometry (overlap of the 10 nearest
  neighbours of the last block's mean-pooled features), decoder LMs their language modelling (perplexity on
  packaged general text, greedy replies to fixed prompts: orchestration/forgetting_lm.py), image backbones
  their features (the last block's CKA).

The base is a copy of the model taken before the strategy compiled (`start_meter`, called by run_one while it
builds the model): no disk read, and no random number drawn, so a measured run trains as an unmeasured one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from tunelab.config.schema import RunConfig
from tunelab.data.encoding import EncodedSplit, iterate_batches
from tunelab.evaluation.forgetting import knn_overlap, linear_cka, relative_drift
from tunelab.inference.features import block_features
from tunelab.inference.predict import encode_split
from tunelab.models.layerstack import EMBEDDING_GROUP
from tunelab.models.task_model import TaskModel
from tunelab.strategies.peft.base import adaptation_of
from tunelab.strategies.peft.quantize_layers import dequantized_linear, is_4bit
from tunelab.training.cache_keys import hash_token_ids, prefix_hashes

__all__ = ["Meter", "start_meter", "measure_forgetting", "effective_weights", "weight_drift", "forgetting_summary"]

KNN_K = 10
_SHARED_BASES = 4  # base models whose reference features a prepared run keeps (continual moves its base)


@dataclass
class Meter:
    """What the meter keeps from the start of a run: the base model (on the CPU) and the reference inputs."""

    base: TaskModel
    reference: EncodedSplit
    described: str


def start_meter(prepared: Any, config: RunConfig, model: TaskModel) -> Optional[Meter]:
    """A copy of `model` as built (before any strategy touched it) and the reference set; None when
    `forgetting.measure` is off or there is nothing to measure on."""
    if not config.forgetting.measure:
        return None
    reference, described = _reference(prepared, config)
    if len(reference) < 2:
        return None
    return Meter(base=copy.deepcopy(model).cpu(), reference=reference, described=described)


def _reference(prepared: Any, config: RunConfig) -> tuple[EncodedSplit, str]:
    """`forgetting.reference` (inputs only), or a seeded sample of the test inputs (validation, then train,
    when a split is empty), at most `forgetting.max_examples` examples."""
    limit = config.forgetting.max_examples
    if config.forgetting.reference:
        records = prepared.task.read(config.forgetting.reference, config.data, require_labels=False)
        split = encode_split(records, prepared.tokenizer, config.data.max_length, prepared.task, prepared.label_names,
                             with_targets=False)
        name = config.forgetting.reference
    else:
        name = next((n for n in ("test", "validation", "train") if len(prepared.encoded[n])), "test")
        split = prepared.encoded[name]
        name = f"{name} split"
    if len(split) > limit:
        keep = np.random.default_rng(config.split_seed).choice(len(split), limit, replace=False)
        split = split.select(sorted(int(i) for i in keep))
    return split, f"{name}: {len(split)} examples"


def effective_weights(model: TaskModel) -> dict[str, torch.Tensor]:
    """The model's weights under the base architecture's names (`X.base_layer.w` -> `X.w`), with every
    mergeable PEFT layer's update folded in on a merged copy of the layer; inserted parameters left out."""
    merged: dict[str, torch.Tensor] = {}
    adaptation = adaptation_of(model)
    layers = adaptation.layers if adaptation is not None else {}
    for path, layer in layers.items():
        if getattr(layer, "mergeable", False) and hasattr(layer, "base_layer"):
            clone = copy.deepcopy(layer)
            with torch.no_grad():
                clone.merge()
            merged.update({f"{path}.{n}": p.detach() for n, p in clone.base_layer.named_parameters()})
    inserted = {f"{path}.{n}" for path, layer in layers.items() for n in layer.declared_names()}
    out = {name.replace(".base_layer.", "."): p.detach() for name, p in model.named_parameters() if name not in inserted}
    out.update(merged)
    for path, module in model.named_modules():  # a QLoRA base's 4-bit layers, as they compute: rounding is drift
        if is_4bit(module) and f"{path.replace('.base_layer', '')}.weight" not in merged:
            out[f"{path.replace('.base_layer', '')}.weight"] = dequantized_linear(module).weight.detach()
    return out


def weight_drift(base: TaskModel, tuned: TaskModel) -> tuple[list[float], float]:
    """||theta - theta0|| / ||theta0|| per LayerStack block (in order), and for the embeddings."""
    stack = base.layer_stack
    now = effective_weights(tuned)
    sums = {g: [0.0, 0.0] for g in range(EMBEDDING_GROUP, stack.num_blocks)}
    for name, theta0 in base.named_parameters():
        group = stack.group_of(name)
        if group not in sums or name not in now:
            continue
        theta0 = theta0.detach().double()
        sums[group][0] += float((now[name].detach().double().cpu() - theta0).pow(2).sum())
        sums[group][1] += float(theta0.pow(2).sum())
    drift = {g: relative_drift(*s) for g, s in sums.items()}
    return [drift[i] for i in range(stack.num_blocks)], drift[EMBEDDING_GROUP]


def measure_forgetting(meter: Meter, prepared: Any, config: RunConfig, tuned: TaskModel) -> dict[str, Any]:
    """The meter's section of test_metrics.json (the base copy is released afterwards)."""
    started = time.perf_counter()
    drift, embedding = weight_drift(meter.base, tuned)
    features = {"base": _base_features(meter, prepared, config),
                "tuned": _block_features(tuned, meter.reference, prepared, config)}
    cka = [linear_cka(b, t) for b, t in zip(features["base"], features["tuned"])]
    retention = _retention(meter, prepared, config, tuned, features, cka)
    meter.base.cpu()
    return {"weight_drift": _rounded(drift), "cka": _rounded(cka), "retention": retention,
            "reference": meter.described, "embedding_drift": round(embedding, 6),
            "seconds": round(time.perf_counter() - started, 2)}


def _block_features(model: TaskModel, reference: EncodedSplit, prepared: Any, config: RunConfig) -> list[np.ndarray]:
    batches = iterate_batches(reference, config.train.evaluation_batch_size,
                              pad_id=prepared.tokenizer.pad_token_id or 0, shuffle=False)
    return block_features(model.to(prepared.device), batches, len(reference), prepared.device, config.train.precision)


def _base_features(meter: Meter, prepared: Any, config: RunConfig) -> list[np.ndarray]:
    """The base model's features, computed once per reference set, backbone weights, precision and batch size
    (`prepared.base_features`): every row of a comparison and every trial of a search starts from the same
    backbone, and the head, the one part that differs, is not among the blocks measured."""
    if not meter.reference.has_tokens:  # images: no cheap key of the reference; computed every time
        return _block_features(meter.base, meter.reference, prepared, config)
    blocks = meter.base.layer_stack.num_blocks
    key = "|".join([hash_token_ids(meter.reference), prefix_hashes(meter.base, [blocks])[blocks],
                    config.train.precision, str(config.train.evaluation_batch_size), prepared.device.type])
    shared = prepared.base_features
    if key not in shared:
        if len(shared) >= _SHARED_BASES:
            shared.pop(next(iter(shared)))
        shared[key] = _block_features(meter.base, meter.reference, prepared, config)
    return shared[key]


def _retention(meter: Meter, prepared: Any, config: RunConfig, tuned: TaskModel,
               features: dict[str, list[np.ndarray]], cka: list[float]) -> dict[str, Any]:
    task = prepared.task
    if task.generative:
        from tunelab.orchestration.forgetting_lm import lm_retention

        return lm_retention(meter.base.to(prepared.device), tuned, prepared, config)
    if not meter.reference.has_tokens:  # image backbones: no labelled reference of theirs ships; their features
        return {"feature_cka": {"before": 1.0, "after": round(cka[-1], 6)}}
    overlap = knn_overlap(features["base"][-1], features["tuned"][-1], k=KNN_K)
    return {f"knn{KNN_K}_overlap": {"before": 1.0, "after": round(overlap, 6)}}


def _rounded(values: list[float]) -> list[float]:
    return [round(float(v), 6) for v in values]


def forgetting_summary(section: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """One compare row's figures from a run's `forgetting` section: mean weight drift, mean CKA and each
    retention measure's after / before."""
    if not section:
        return None
    mean = lambda values: round(float(np.mean(values)), 6) if values else None  # noqa: E731
    ratios = {name: (round(m["after"] / m["before"], 6) if m.get("before") else None)
              for name, m in section.get("retention", {}).items() if isinstance(m, dict) and "after" in m}
    return {"mean_weight_drift": mean(section.get("weight_drift", [])), "mean_cka": mean(section.get("cka", [])),
            "retention": ratios}
