"""Token classification (NER, chunking): one tag per word, predicted on the word's first sub-token.

Words are tokenised with their boundaries kept (`is_split_into_words`), so every tag refers to exactly the
word the file gave. The first sub-token of a word carries its tag; the other sub-tokens and the special
tokens carry -100 and the loss skips them. Predictions go back to words the same way; a word cut off by
`data.max_length` is predicted as `O` (the count is reported as `truncated_words`). Metrics are
entity-level (exact span, per type) plus word accuracy, with the majority-tag baseline beside them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tunelab.config.schema import DataConfig, LossConfig
from tunelab.data.records import Record
from tunelab.data.tagged import read_tagged
from tunelab.errors import ModelError
from tunelab.tasks.base import NativeModel, Outputs, Predictions, SequenceTask

if TYPE_CHECKING:  # torch and the encoding are imported by the methods that use them (tasks/base.py says why)
    from torch import nn

    from tunelab.data.encoding import EncodedSplit

__all__ = ["TokenClassificationTask"]


class TokenClassificationTask(SequenceTask):
    name = "token_classification"
    metric_names = ("entity_f1", "entity_precision", "entity_recall", "macro_entity_f1", "token_accuracy")
    hf_problem_type = "token_classification"
    default_metric = "entity_f1"
    label_kind = "tags"
    native_model: ClassVar[NativeModel] = "token"
    per_token: ClassVar[bool] = True
    supports_cache: ClassVar[bool] = True  # the served forward is checked numerically; it falls back if it differs

    def read(self, path: str | Path, config: DataConfig, *, require_labels: bool = True) -> list[Record]:
        return read_tagged(path, require_labels=require_labels)

    def encode(self, records: list[Record], tokenizer: Any, max_length: int, label_names: list[str], *,
               with_targets: bool = True, train: bool = False) -> EncodedSplit:
        from tunelab.data.encoding import EncodedSplit

        if not records:
            return EncodedSplit(input_ids=[], targets=None, records=[], token_targets=[], word_ids=[])
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(f"token_classification needs a fast tokenizer (word alignment); {type(tokenizer).__name__} "
                             "is not one: give a model directory with a tokenizer.json")
        words = [list(r.words or r.text.split()) for r in records]
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length,
                            return_attention_mask=False, return_token_type_ids=False)
        index = {name: i for i, name in enumerate(label_names)}
        ids, word_ids, targets = [], [], []
        for row, record in enumerate(records):
            wids = [-1 if w is None else w for w in encoded.word_ids(row)]
            ids.append(list(encoded["input_ids"][row]))
            word_ids.append(wids)
            if with_targets:
                targets.append(_first_subtoken_targets(wids, [index[t] for t in record.label]))
        return EncodedSplit(input_ids=ids, targets=None, records=records, word_ids=word_ids,
                            token_targets=targets if with_targets else None)

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> nn.Module:
        import torch

        from tunelab.data.encoding import IGNORE_INDEX
        from tunelab.tasks.losses import TokenLoss

        weight = None
        if config.class_weights == "balanced" and train.token_targets is not None:
            counts = Counter(t for row in train.token_targets for t in row if t != IGNORE_INDEX)
            freq = torch.tensor([max(counts[i], 1) for i in range(len(label_names))], dtype=torch.float32)
            weight = freq.sum() / (len(label_names) * freq)
        return TokenLoss(weight)

    def predict(self, outputs: Outputs, label_names: list[str], split: EncodedSplit) -> Predictions:
        """Word tags from the first sub-token of each word; `raw` holds the per-word tag ids."""
        fallback = label_names.index("O") if "O" in label_names else 0
        values, raw = [], []
        for logits, wids, record in zip(outputs, split.word_ids or [], split.records):
            n_words = len(record.words or record.text.split())
            chosen = [fallback] * n_words
            best = logits.argmax(-1).tolist() if len(logits) else []
            seen: set[int] = set()
            for position, word in enumerate(wids[:len(best)]):
                if word >= 0 and word not in seen:
                    seen.add(word)
                    chosen[word] = best[position]
            raw.append(chosen)
            values.append(tuple(label_names[i] for i in chosen))
        return Predictions(values=values, scores=None, raw=raw)

    def metrics(self, split: EncodedSplit, predictions: Predictions, label_names: list[str]) -> dict[str, Any]:
        from tunelab.evaluation.entities import entity_metrics

        gold = [list(r.label) for r in split.records]
        scores = entity_metrics(gold, [list(v) for v in predictions.values])
        majority = Counter(t for g in gold for t in g).most_common(1)[0][0] if gold else "O"
        baseline = entity_metrics(gold, [[majority] * len(g) for g in gold])
        covered = sum(len({w for w in wids if w >= 0}) for wids in split.word_ids or [])
        return {**scores, "majority_tag": majority, "baseline_entity_f1": baseline["entity_f1"],
                "baseline_token_accuracy": baseline["token_accuracy"],
                "truncated_words": sum(len(g) for g in gold) - covered}

    def score_columns(self, label_names: list[str]) -> list[str]:
        return []  # one tag per word: no per-example scores

    def show(self, value: Any) -> str:
        return " ".join(value) if isinstance(value, tuple) else str(value)


def _first_subtoken_targets(word_ids: list[int], tags: list[int]) -> list[int]:
    """`(T,)` targets: the word's tag on its first sub-token, IGNORE_INDEX on the rest and on special tokens."""
    from tunelab.data.encoding import IGNORE_INDEX

    out, previous = [], -1
    for word in word_ids:
        out.append(tags[word] if word >= 0 and word != previous else IGNORE_INDEX)
        previous = word if word >= 0 else previous
    return out
