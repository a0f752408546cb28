"""The activation cache's keys: what an entry's hidden states depend on, hashed (training/cache.py stores and
serves the entries). A split is keyed by its token ids, or an image split by its pixel tensor; a frozen prefix by
its architecture config and the weights of the embeddings and blocks `[0, k)`, named from the backbone's root."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from tunelab.data.encoding import EncodedSplit
from tunelab.models.layerstack import EMBEDDING_GROUP
from tunelab.models.task_model import TaskModel

__all__ = ["FORMAT_VERSION", "CacheKey", "hash_token_ids", "hash_split_inputs", "example_rows", "prefix_hashes"]

FORMAT_VERSION = 1
# config keys that only concern the head; excluded so a native-head and a pooling-head run share entries
_HEAD_ONLY_CONFIG = {"id2label", "label2id", "num_labels", "problem_type", "architectures", "_name_or_path",
                     "classifier_dropout", "transformers_version", "add_pooling_layer", "return_dict"}


def hash_token_ids(split: EncodedSplit) -> str:
    lengths = split.token_lengths
    flat = np.fromiter((t for ids in split.input_ids for t in ids), dtype=np.int64, count=int(lengths.sum()))
    return hashlib.sha256(lengths.tobytes() + flat.tobytes()).hexdigest()


def hash_split_inputs(split: EncodedSplit) -> str:
    """What a split's entries are keyed by: its token ids, or for a split without tokens (images) its
    fixed-shape feature tensors, bytes and shapes."""
    if split.has_tokens:
        return hash_token_ids(split)
    digest = hashlib.sha256(f"examples={len(split)}".encode())
    for name in sorted(split.features):
        _update_with_tensor(digest, name, split.features[name])
    return digest.hexdigest()


def example_rows(split: EncodedSplit) -> np.ndarray:
    """Rows an example takes in an entry: its tokens, or one for a fixed-shape example (an image)."""
    return split.token_lengths if split.has_tokens else np.ones(len(split), dtype=np.int64)


def _update_with_tensor(digest: "hashlib._Hash", name: str, tensor: torch.Tensor) -> None:
    digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
    digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def prefix_hashes(model: TaskModel, starts: list[int]) -> dict[int, str]:
    """sha256 of the architecture config and the weights of the embeddings + blocks `[0, k)`, per k. Names are
    hashed from the backbone's root (`embeddings.word_embeddings.weight`, whichever wrapper holds it), so a model
    with a pooled head (the bare backbone) and one with the native head (the backbone inside
    `...ForSequenceClassification`) share their entries: the frozen prefix computes the same thing in both."""
    stack = model.layer_stack
    config = getattr(model.network, "config", None)  # a transformers config, or a plain dict (vision backbones)
    config = config if config is None or isinstance(config, dict) else config.to_dict()
    described = {k: v for k, v in (config or {}).items() if k not in _HEAD_ONLY_CONFIG}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode())
    by_group: dict[int, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        by_group.setdefault(stack.group_of(name), []).append((name, tensor))
    root = _backbone_root(stack.blocks_path, stack.embedding_prefixes)
    for name, tensor in by_group.get(EMBEDDING_GROUP, []):
        _update_with_tensor(digest, name[len(root):], tensor)
    out: dict[int, str] = {}
    for index in range(max(starts) + 1):
        if index in starts:
            out[index] = digest.copy().hexdigest()
        for name, tensor in by_group.get(index, []):
            _update_with_tensor(digest, name[len(stack.block_prefix(index)):], tensor)
    return out


def _backbone_root(blocks_path: str, embedding_prefixes: tuple[str, ...]) -> str:
    """The dotted prefix the blocks and the embeddings share (`network.bert.` in a sequence classifier,
    `network.` in a bare BERT)."""
    paths = [f"{blocks_path}.", *embedding_prefixes]
    common = os.path.commonprefix(paths)
    return common[:common.rfind(".") + 1]


@dataclass(frozen=True)
class CacheKey:
    """Everything the cached hidden states depend on; `digest` names the entry on disk."""

    tokens: str        # sha256 of the split's token ids (an image split: of its pixel tensor)
    tokenizer: str     # tokenizer class, vocabulary size, max_length, padding id (images: preprocessor, size)
    model: str         # sha256 of the prefix weights and architecture config
    start_block: int   # k
    dtype: str         # storage dtype
    compute: str       # precision the prefix ran in (fp32 / bf16 autocast)

    def digest(self) -> str:
        text = json.dumps({"version": FORMAT_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]
