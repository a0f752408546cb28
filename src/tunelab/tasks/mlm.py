"""Masked-language-model continued pre-training of an encoder (BERT, RoBERTa, ...) on unlabelled text.

Each example is one document, truncated to `data.max_length` tokens. BERT's masking (data/masking.py): 15% of
an example's own tokens, 80% of them replaced by the mask token, 10% by a random token, 10% kept; training
batches are masked afresh each epoch from a generator seeded by (seed, epoch, batch), validation and test
examples carry masks fixed by their own tokens. The loss is the cross-entropy of the masked tokens; validation
and test report it with its perplexity and the share of masked tokens predicted exactly (`masked_accuracy`).

A checkpoint without an MLM head (a sentence encoder saved as a bare BertModel, as the built-in `minilm` is) gets
the head transformers builds: the run says so (models/loading.py, build_masked_lm).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from tunelab.config.schema import HeadConfig, LossConfig, ModelConfig, RunConfig
from tunelab.data.records import Record
from tunelab.errors import ModelError
from tunelab.tasks.base import Predictions
from tunelab.tasks.pretraining import PretrainingTask, perplexity

if TYPE_CHECKING:  # torch and the model are imported where used (tasks/base.py says why)
    import torch
    from torch import nn

    from tunelab.data.encoding import Batch, EncodedSplit
    from tunelab.models.task_model import TaskModel

__all__ = ["MaskedLMTask"]


class MaskedLMTask(PretrainingTask):
    name = "mlm"
    metric_names = ("perplexity", "masked_accuracy")
    hf_problem_type = "masked_lm"

    def load_preprocessor(self, model_dir: Path, config: RunConfig) -> Any:
        """The tokenizer, which must have a mask token: a decoder's has none (it was never trained to fill one)."""
        tokenizer = super().load_preprocessor(model_dir, config)
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise ModelError(f"model: the tokenizer in {model_dir} has no mask token, so the model was not pre-trained "
                             "as a masked language model; task mlm needs an encoder such as BERT or RoBERTa (for a "
                             "decoder LM such as smollm2 use task: causal_lm)")
        return tokenizer

    def encode(self, records: list[Record], tokenizer: Any, max_length: int, label_names: list[str], *,
               with_targets: bool = True, train: bool = False) -> EncodedSplit:
        """Masked ids and their targets per example (the text is its own target, so `with_targets` changes
        nothing); the training split also carries the transform that masks each batch afresh."""
        from tunelab.data.encoding import EncodedSplit, encode_texts
        from tunelab.data.masking import fixed_masks, make_mlm_masking, masking_spec

        spec = masking_spec(tokenizer)
        ids = encode_texts([r.text for r in records], tokenizer, max_length) if records else []
        masked, targets = fixed_masks(ids, spec)
        return EncodedSplit(input_ids=masked, targets=None, records=records, token_targets=targets,
                            targets_in_inputs=True, augment=make_mlm_masking(spec) if train else None)

    def build_model(self, model_cfg: ModelConfig, head_cfg: HeadConfig, label_names: list[str],
                    model_dir: Optional[Path] = None) -> TaskModel:
        from tunelab.models.loading import build_masked_lm

        return build_masked_lm(model_cfg, model_dir)

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> nn.Module:
        from tunelab.models.masked_lm import MaskedTokenLoss

        return MaskedTokenLoss()

    def reduce_outputs(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """`(B, 3)` per example: summed loss of its masked tokens, their count, how many were predicted exactly."""
        from tunelab.models.masked_lm import masked_token_stats

        return masked_token_stats(logits, batch.inputs["labels"])

    def metrics(self, split: EncodedSplit, predictions: Predictions, label_names: list[str]) -> dict[str, Any]:
        total, count, correct = self.summed(predictions, 3)
        loss = total / count if count else float("nan")
        return {"loss": loss, "perplexity": perplexity(loss), "masked_accuracy": correct / count if count else 0.0,
                "masked_tokens": int(count)}
