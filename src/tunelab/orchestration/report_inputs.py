"""What a run's report needs that the other run files do not hold, written at run time so `tunelab report`
rebuilds the report from the run directory alone (no data, no model):

- `profile.json`: the data per split (examples, class or tag counts / target summary, token-length counts with
  the `max_length` cut and the share that reached it), trainable and total parameters per LayerStack group at
  the first step, and, for generative tasks, the base model's replies to the first test prompts;
- `misclassified.npz` (image tasks): up to 32 misclassified test images as small uint8 thumbnails.

The schema is `PROFILE_FORMAT` 1 (README "Run directory"); the report reads every key as optional.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tunelab.atomic import atomic_write_json, atomic_write_with
from tunelab.data.encoding import EncodedSplit
from tunelab.models.layerstack import EMBEDDING_GROUP
from tunelab.models.loading import parameter_count
from tunelab.models.task_model import TaskModel
from tunelab.tasks.base import Predictions

__all__ = ["PROFILE_FORMAT", "parameters_by_block", "data_profile", "write_profile", "write_misclassified",
           "GENERATION_SAMPLES", "MISCLASSIFIED_LIMIT"]

PROFILE_FORMAT = 1
GENERATION_SAMPLES = 8      # test prompts whose replies before and after training the report shows
MISCLASSIFIED_LIMIT = 32    # misclassified test images kept as thumbnails
THUMBNAIL = 64              # pixels on a side, at most


def parameters_by_block(model: TaskModel) -> dict[str, Any]:
    """Trainable and total parameters per LayerStack group (embeddings, block 0..N-1, head), as the model is
    now: call it at the first step, before torch.compile renames the blocks' parameters."""
    stack = model.layer_stack
    trainable: collections.Counter[int] = collections.Counter()
    total: collections.Counter[int] = collections.Counter()
    for name, param in model.named_parameters():
        group = stack.group_of(name)
        total[group] += parameter_count(param)
        if param.requires_grad:
            trainable[group] += parameter_count(param)
    groups = [EMBEDDING_GROUP, *range(stack.num_blocks), stack.head_group]
    names = {EMBEDDING_GROUP: "embeddings", stack.head_group: "head"}
    return {"num_blocks": stack.num_blocks, "blocks_path": stack.blocks_path,
            "groups": [{"group": g, "name": names.get(g, f"block {g}"), "trainable": trainable[g], "total": total[g]}
                       for g in groups]}


def data_profile(prepared: Any) -> dict[str, Any]:
    """Per split: examples, what its labels hold, and its token lengths (`prepared.encoded`)."""
    max_length = prepared.config.data.max_length
    kind = prepared.task.label_kind
    return {"max_length": max_length, "label_kind": kind,
            "splits": {name: {"examples": len(split), **_labels_profile(split, kind), **_lengths(split, max_length)}
                       for name, split in prepared.encoded.items()}}


def _labels_profile(split: EncodedSplit, kind: str) -> dict[str, Any]:
    labels = [r.label for r in split.records]
    if kind == "class":
        return {"class_counts": dict(collections.Counter(str(label) for label in labels))}
    if kind in ("classes", "tags"):  # multi-label: per class; token tags: per tag
        return {"class_counts": dict(collections.Counter(str(one) for label in labels for one in label))}
    if kind == "number" and labels:
        values = np.asarray(labels, dtype=np.float64)
        counts, edges = np.histogram(values, bins=20)
        return {"targets": {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
                            "std": float(values.std()), "histogram": {"counts": counts.tolist(),
                                                                      "edges": edges.tolist()}}}
    return {}


def _lengths(split: EncodedSplit, max_length: int) -> dict[str, Any]:
    """`length_counts[n]`: examples of n tokens (special tokens included). An example that reached
    `max_length` was cut there (or fits it exactly: the tokenizer does not say which)."""
    if not split.has_tokens:
        return {}
    lengths = split.token_lengths
    reached = int((lengths >= max_length).sum())
    return {"length_counts": np.bincount(lengths).tolist(), "truncated": reached,
            "truncated_share": reached / len(lengths) if len(lengths) else 0.0}


def write_profile(staging: Path, prepared: Any, parameters: dict[str, Any],
                  base_texts: Optional[list[str]] = None) -> None:
    """`profile.json` in the staging folder; `base_texts`: the base model's replies, in test order."""
    profile: dict[str, Any] = {"format_version": PROFILE_FORMAT, "task": prepared.task.name,
                               **data_profile(prepared), "parameters": parameters}
    if base_texts:
        records = prepared.encoded["test"].records
        profile["generations"] = [{"where": r.where, "prompt": r.text, "reference": str(r.label), "before": text}
                                  for r, text in zip(records[:GENERATION_SAMPLES], base_texts)]
    atomic_write_json(staging / "profile.json", profile)


def write_misclassified(staging: Path, prepared: Any, predictions: Predictions) -> None:
    """`misclassified.npz` for image classification: `images` (N, H, W, 3) uint8 thumbnails, `true`, `predicted`
    and `where` (str arrays) of the first MISCLASSIFIED_LIMIT misclassified test images. Nothing otherwise."""
    test = prepared.encoded["test"]
    pixels = test.features.get("pixel_values")
    if not prepared.task.takes_images or pixels is None or test.targets is None:
        return
    true = test.targets.numpy().reshape(-1)
    predicted = np.asarray(predictions.raw).reshape(-1)
    wrong = np.flatnonzero(true != predicted)[:MISCLASSIFIED_LIMIT]
    images = _thumbnails(pixels[wrong], prepared.tokenizer.mean, prepared.tokenizer.std)
    names = prepared.label_names
    arrays = {"images": images, "true": np.array([names[int(true[i])] for i in wrong], dtype=str),
              "predicted": np.array([names[int(predicted[i])] for i in wrong], dtype=str),
              "where": np.array([test.records[i].where for i in wrong], dtype=str)}
    atomic_write_with(staging / "misclassified.npz", lambda tmp: _savez(tmp, arrays))


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as handle:  # a file object: np.savez would append .npz to a path
        np.savez_compressed(handle, **arrays)


def _thumbnails(pixels: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(N, 3, S, S) normalised pixels -> (N, s, s, 3) uint8 with s <= THUMBNAIL."""
    import torch
    import torch.nn.functional as F

    if len(pixels) and pixels.shape[-1] > THUMBNAIL:
        pixels = F.interpolate(pixels, size=(THUMBNAIL, THUMBNAIL), mode="bilinear", antialias=True)
    restored = pixels * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    return (restored.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
