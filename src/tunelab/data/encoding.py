"""Encoded splits and length-bucketed, dynamically padded batches.

Each task encodes its own examples (tasks/base.py) into an :class:`EncodedSplit` once, so epochs,
evaluation and prediction never tokenise again. Batches group examples of similar length (shuffled
between buckets, deterministic per seed) so padding, and the wasted compute it costs, stays small. A
batch is padded to one of four widths per octave rather than to its exact longest row, so the allocator
sees a few tensor sizes again and again instead of a new one in every short batch (`padded_length`).

A split holds token ids (text tasks), optional per-token targets (token tasks: -100 where the loss
ignores a position) and optional fixed-shape per-example features (image tasks: `pixel_values`); a
batch carries every model input by name in `inputs`, so `TaskModel.forward(**inputs)` serves them all.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from tunelab.data.records import Record

__all__ = ["EncodedSplit", "Batch", "IGNORE_INDEX", "encode_texts", "iterate_batches", "batch_order", "collate",
           "padded_length", "unknown_token_rate", "fewest_padded_tokens",
           "CPU_FORWARD_COST_TOKENS"]

BUCKET_FACTOR = 50  # batches per sorting window: large enough to cut padding, small enough to keep randomness
# what one forward pass costs, in padded tokens, on a CPU (see fewest_padded_tokens); on a GPU the fixed cost
# dwarfs the tokens and plain chunks of the sorted split are kept
CPU_FORWARD_COST_TOKENS = 50
IGNORE_INDEX = -100  # per-token target the loss skips (padding, special tokens, non-first sub-words)

# a train-time transform of a batch's features, given a generator seeded by (seed, epoch, batch)
Augment = Callable[[dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]]


@dataclass
class EncodedSplit:
    input_ids: list[list[int]]        # token ids per example; [] per example for tasks without text
    targets: Optional[torch.Tensor]   # (N,) / (N, C) per-example targets; None for token tasks or unlabelled input
    records: list[Record]
    token_targets: Optional[list[list[int]]] = None  # token tasks: one target per token id, IGNORE_INDEX to skip
    word_ids: Optional[list[list[int]]] = None       # token tasks: word index per token id, -1 for special tokens
    features: dict[str, torch.Tensor] = field(default_factory=dict)  # (N, ...) fixed-shape inputs, e.g. pixel_values
    augment: Optional[Augment] = None  # applied to training batches only (the train split carries it)
    # causal LM: the padded token targets also go to the model as `labels`, so it computes logits only
    # where a target is predicted (models/causal_lm.py)
    targets_in_inputs: bool = False
    sampler: Optional[str] = None  # the train split's data.sampler: balanced / sqrt draw by class (batch_order)
    head: Optional[str] = None     # a multi-task run's split of one task: its batches name that task's head

    def __len__(self) -> int:
        return len(self.records) if self.records else len(self.input_ids)

    @property
    def has_tokens(self) -> bool:
        return any(self.input_ids)

    def select(self, indices: list[int]) -> "EncodedSplit":
        """The split of the examples at `indices`, as encoding those records alone would give (each example
        is encoded on its own): a data fraction reuses the full split's encoding instead of tokenising again."""
        index = torch.as_tensor(indices, dtype=torch.long)
        pick = lambda rows: None if rows is None else [rows[i] for i in indices]  # noqa: E731
        return EncodedSplit(input_ids=[self.input_ids[i] for i in indices],
                            targets=None if self.targets is None else self.targets[index],
                            records=[self.records[i] for i in indices] if self.records else [],
                            token_targets=pick(self.token_targets), word_ids=pick(self.word_ids),
                            features={k: v[index] for k, v in self.features.items()}, augment=self.augment,
                            targets_in_inputs=self.targets_in_inputs, sampler=self.sampler, head=self.head)

    def num_batches(self, batch_size: int) -> int:
        """Training batches an epoch has (`iterate_batches` with shuffle)."""
        return -(-len(self) // batch_size)

    @functools.cached_property
    def token_lengths(self) -> np.ndarray:
        """Tokens per example, (N,) int64; zeros for a split without tokens (images). Computed once: batching,
        the cache's keys and rows, and the report's length profile all read it."""
        lengths = np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))
        return lengths if len(lengths) == len(self) else np.zeros(len(self), dtype=np.int64)

    @functools.cached_property
    def longest(self) -> int:
        """Tokens in the split's longest example: the widest a batch is ever padded to."""
        return int(self.token_lengths.max()) if len(self) else 0


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]   # keyword arguments of the model: input_ids + attention_mask, pixel_values, ...
    targets: Optional[torch.Tensor]   # (B,) / (B, C) per example, or (B, T) per token
    indices: torch.Tensor             # (B,) positions in the split, to restore order
    prefix_hidden: Optional[torch.Tensor] = None  # (B, T, H) cached input of block `start_block`, if served
    start_block: int = 0
    head: Optional[str] = None        # the multi-task head these examples belong to (None: the model's one head)

    @property
    def input_ids(self) -> Optional[torch.Tensor]:
        return self.inputs.get("input_ids")  # (B, T) long

    @property
    def attention_mask(self) -> Optional[torch.Tensor]:
        return self.inputs.get("attention_mask")  # (B, T) long

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch({k: move(v) for k, v in self.inputs.items()}, move(self.targets), self.indices,
                     move(self.prefix_hidden), self.start_block, self.head)

    def model_inputs(self) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
        """Positional and keyword arguments of `TaskModel.forward` for this batch."""
        served = {} if self.prefix_hidden is None else {"prefix_hidden": self.prefix_hidden, "start_block": self.start_block}
        head = {} if self.head is None else {"head": self.head}
        return (), {**self.inputs, **served, **head}

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def rows(self, rows: torch.Tensor) -> "Batch":
        """The batch of these rows, at this batch's padded width (a rank's share of a global batch)."""
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Batch({k: v[rows] for k, v in self.inputs.items()}, pick(self.targets), self.indices[rows],
                     pick(self.prefix_hidden), self.start_block, self.head)


def encode_texts(texts: list[str], tokenizer: Any, max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to `max_length` (special tokens included)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)
    return [list(ids) for ids in encoded["input_ids"]]


_SPECIAL_ROLES = ("bos_token_id", "eos_token_id", "pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id")


def unknown_token_rate(split: EncodedSplit, tokenizer: Any) -> Optional[float]:
    """Share of the split's sub-tokens that are the tokenizer's unknown token, special tokens ([CLS], [SEP],
    ...) left out of the count: a high share means the vocabulary does not cover the text (another language,
    another script), which no fine-tuning repairs. None when the split has no token ids or the tokenizer has no
    unknown token of its own (byte-level BPE never needs one; some reuse the end-of-text id as `unk`)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not split.has_tokens or any(getattr(tokenizer, role, None) == unk for role in _SPECIAL_ROLES):
        return None
    ids = np.fromiter(itertools.chain.from_iterable(split.input_ids), dtype=np.int64,
                      count=sum(map(len, split.input_ids)))  # (total tokens,)
    others = [i for i in getattr(tokenizer, "all_special_ids", ()) if i != unk]
    counted = ids[~np.isin(ids, others)]
    return float(np.mean(counted == unk)) if counted.size else None


def iterate_batches(split: EncodedSplit, batch_size: int, *, pad_id: int, shuffle: bool, seed: int = 0,
                    epoch: int = 0, forward_cost_tokens: Optional[int] = None, draw: int = 0) -> Iterator[Batch]:
    """Yield batches; with `shuffle` (training), order and augmentation depend only on (seed, epoch), so a
    run is repeatable and a resumed epoch sees the same batches. `forward_cost_tokens` (inference only):
    see `fewest_padded_tokens`. `draw` > 0: another pass over the split within the same epoch, in an order of
    its own (a small task of a multi-task epoch, data/mixing.py)."""
    order = batch_order(split, batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                        forward_cost_tokens=forward_cost_tokens, draw=draw)
    for number, chunk in enumerate(order):
        batch = collate(split, chunk, pad_id)
        if shuffle and split.augment is not None:
            key = (seed, epoch, number) if not draw else (seed, epoch, draw, number)
            generator = torch.Generator().manual_seed(hash(key) & 0x7FFF_FFFF)
            batch.inputs = split.augment(batch.inputs, generator)
            if split.targets_in_inputs:  # a transform that redraws the targets (masked LM) returns them as labels
                batch.targets = batch.inputs["labels"]
        yield batch


def batch_order(split: EncodedSplit, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                forward_cost_tokens: Optional[int] = None, draw: int = 0) -> list[np.ndarray]:
    lengths = split.token_lengths  # zeros without token ids (image tasks): every example has the same size
    if not shuffle:
        order = np.argsort(-lengths, kind="stable")
        if forward_cost_tokens is not None and split.has_tokens and len(order):
            sizes = fewest_padded_tokens(lengths[order], batch_size, forward_cost_tokens, split.longest)
            return np.split(order, np.cumsum(sizes)[:-1])
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng([seed, epoch] if not draw else [seed, epoch, draw])
    order = rng.permutation(len(split)) if split.sampler is None else _drawn_by_class(split, rng)
    window = batch_size * BUCKET_FACTOR
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        part = order[start:start + window]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _drawn_by_class(split: EncodedSplit, rng: np.random.Generator) -> np.ndarray:
    """An epoch of len(split) examples drawn with replacement, each weighted 1/n (balanced) or 1/sqrt(n) (sqrt)
    of its class's n training examples: every class is drawn equally often (or by the square root of its size)
    while an epoch stays as long as the split, so the schedule and checkpoints count steps as before."""
    assert split.targets is not None and split.targets.dim() == 1
    targets = split.targets.numpy()
    counts = np.bincount(targets).astype(np.float64)
    weights = 1.0 / (counts[targets] if split.sampler == "balanced" else np.sqrt(counts[targets]))
    return rng.choice(len(split), size=len(split), replace=True, p=weights / weights.sum())


def fewest_padded_tokens(lengths: np.ndarray, batch_size: int, forward_cost_tokens: int, limit: int) -> list[int]:
    """Sizes of consecutive batches over `lengths` (sorted longest first) that minimise the padded tokens
    computed plus `forward_cost_tokens` per forward pass, at most `batch_size` rows each (a dynamic programme,
    O(n * batch_size)).

    Why: a batch costs its rows times its width, padding included, plus a fixed cost per forward pass. When a
    split is sorted as a whole, fixed-size chunks of it waste little; a server's batch of whatever requests
    arrived together does not: 32 tweets padded to the longest of them computed twice the tokens they hold.
    Measured on MiniLM on this 2-core CPU: one forward of 1 x 8 tokens 5.8 ms, 32 x 32 tokens 106 ms (0.10 ms a
    token), so a forward pass costs about as much as 50 tokens."""
    n = len(lengths)
    widths = np.array([padded_length(int(length), limit) for length in lengths], dtype=np.float64)
    best, cut = np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        starts = np.arange(max(0, end - batch_size), end)
        costs = best[starts] + forward_cost_tokens + (end - starts) * widths[starts]  # the last batch: starts..end
        pick = int(np.argmin(costs))
        best[end], cut[end] = costs[pick], starts[pick]
    sizes, end = [], n
    while end > 0:
        sizes.append(int(end - cut[end]))
        end = cut[end]
    return sizes[::-1]


def collate(split: EncodedSplit, indices: np.ndarray, pad_id: int) -> Batch:
    """Pad token ids (pad_id), masks (0) and per-token targets (IGNORE_INDEX) to the batch's width class
    (`padded_length` of its longest row)."""
    index = torch.as_tensor(indices, dtype=torch.long)
    inputs: dict[str, torch.Tensor] = {name: values[index] for name, values in split.features.items()}
    targets = None if split.targets is None else split.targets[index]
    if split.has_tokens:
        rows = [split.input_ids[i] for i in indices]
        width = padded_length(max(len(r) for r in rows), split.longest)
        inputs["input_ids"], inputs["attention_mask"] = _pad_with_mask(rows, pad_id, width)
        if split.token_targets is not None:
            targets = _pad([split.token_targets[i] for i in indices], IGNORE_INDEX, width)
            if split.targets_in_inputs:
                inputs["labels"] = targets
    return Batch(inputs, targets, index, head=split.head)


def padded_length(longest: int, limit: int) -> int:
    """Width of a batch whose longest row has `longest` tokens: rounded up to a multiple of 8 and of 1/8
    of the next power of two (..., 65..128 -> 80, 96, 112, 128; 129..256 -> 160, 192, 224, 256), four widths
    per octave, never past `limit` (the split's longest row: never past max_length or the model's positions).

    Why not pad to the longest row exactly: every new width gives every activation of a step a new size,
    and glibc cannot serve the next step's tensors from the blocks the last one freed, so the process keeps
    growing. Measured on BBC News, partial fine-tuning, bf16, where only 11 of 98 batches an epoch are
    narrower than 256: peak RSS 1.56 GiB after one epoch and 1.93 GiB after two with exact widths, 1.32 GiB
    after two with these (eight widths per octave: 1.43 GiB). The cost is masked positions: at most a
    quarter more (or up to 7 below 32 tokens), and only in batches narrower than the split's longest row."""
    step = max(8, 1 << max(0, (int(longest) - 1).bit_length() - 3))
    return max(longest, min(limit, -(-longest // step) * step))


def _pad(rows: list[list[int]], value: int, width: int) -> torch.Tensor:
    return _pad_with_mask(rows, value, width)[0]


def _pad_with_mask(rows: list[list[int]], value: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, T)` rows padded with `value`, and the mask of their real positions. One numpy scatter, not a
    tensor per row: a head trained on cached features spent 0.4 ms a batch here, as long as its backward."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    real = np.arange(width) < lengths[:, None]
    out = np.full((len(rows), width), value, dtype=np.int64)
    out[real] = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(out), torch.from_numpy(real.astype(np.int64))
