"""What the data says before any training: how many examples each class has, how unbalanced the classes
are, how much text the length limit cuts, and how much of it the vocabulary misses. `recommend` turns
these into its plan's class weights and its warnings; each warning says what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from tunelab.data.encoding import EncodedSplit

__all__ = ["DataFacts", "data_facts", "FEW_PER_CLASS", "HEAVY_TRUNCATION", "HIGH_UNKNOWN"]

FEW_PER_CLASS = 10        # training examples of the rarest class below which no validation score is stable
HEAVY_TRUNCATION = 0.3    # share of training examples cut at max_length past which the limit costs signal
# share of a split's sub-tokens that are [UNK] past which a run warns (prepare) and recommend does: English text
# through an English vocabulary stays well under 1%; the Japanese hironsan-ner set through MiniLM's is at about 24%
HIGH_UNKNOWN = 0.05


@dataclass
class DataFacts:
    train_examples: int
    per_class: dict[str, int]                 # training examples per class; {} for tasks without classes
    imbalance_ratio: Optional[float]          # largest / smallest class of the training split
    truncated_share: Optional[float]          # training examples whose tokens reach max_length (cut, or exactly that long)
    unknown_token_rate: Optional[float]       # of the training split's sub-tokens
    only_outside_train: list[str] = field(default_factory=list)  # classes in validation / test but not in train

    def warnings(self, max_length: int) -> list[str]:
        """The facts that put a run at risk, each with what to do."""
        out = []
        if self.per_class and min(self.per_class.values()) < FEW_PER_CLASS:
            rare = sorted((n, c) for c, n in self.per_class.items())[0]
            out.append(f"class {rare[1]!r} has {rare[0]} training examples (fewer than {FEW_PER_CLASS}): its scores "
                       "will swing from seed to seed; add examples of it, or merge it into a neighbouring class")
        if self.only_outside_train:
            out.append(f"classes {', '.join(map(repr, self.only_outside_train))} appear in validation / test but never "
                       "in train: no model can learn them; move some of their examples into the training data")
        if self.truncated_share is not None and self.truncated_share > HEAVY_TRUNCATION:
            out.append(f"{100 * self.truncated_share:.0f}% of the training examples reach data.max_length "
                       f"({max_length} tokens) and are cut there: raise data.max_length if the end of a text matters")
        if self.unknown_token_rate is not None and self.unknown_token_rate > HIGH_UNKNOWN:
            out.append(f"{100 * self.unknown_token_rate:.1f}% of the training sub-tokens are unknown to the backbone's "
                       "vocabulary: pick a backbone for the text's language or script")
        return out


def data_facts(encoded: dict[str, EncodedSplit], label_names: list[str], max_length: int,
               unknown_token_rate: Optional[float]) -> DataFacts:
    """The facts of a prepared run's encoded splits (`train`, `validation`, `test`)."""
    train = encoded["train"]
    counts = {name: _class_counts(split, len(label_names)) for name, split in encoded.items()}
    per_class = {} if counts["train"] is None else dict(zip(label_names, counts["train"]))
    present = [n for n in per_class.values() if n > 0]
    imbalance = max(present) / min(present) if present else None
    outside = [label_names[i] for i in range(len(label_names)) if per_class and per_class[label_names[i]] == 0
               and any(c is not None and c[i] > 0 for c in counts.values())]
    truncated = (sum(len(ids) >= max_length for ids in train.input_ids) / len(train)
                 if train.has_tokens and len(train) else None)
    return DataFacts(train_examples=len(train), per_class=per_class, imbalance_ratio=imbalance,
                     truncated_share=truncated, unknown_token_rate=unknown_token_rate, only_outside_train=outside)


def _class_counts(split: EncodedSplit, num_classes: int) -> Optional[list[int]]:
    """Examples per class: (N,) class indices, or (N, C) indicators of a multi-label split; None otherwise."""
    targets = split.targets
    if targets is None or num_classes == 0 or targets.is_floating_point() and targets.dim() == 1:
        return None
    if targets.dim() == 2:
        return [int(v) for v in targets.sum(dim=0).tolist()]
    return [int(v) for v in torch.bincount(targets.long(), minlength=num_classes).tolist()]
