"""Causal-language-model continued pre-training of a decoder LM (Llama, GPT-2, ...) on unlabelled text: plain
next-token loss on every token.

Each document is tokenised whole (with the special tokens its tokenizer adds, no end-of-turn token: this is
text, not a conversation) and cut into chunks of `data.max_length` tokens; a chunk is one training example, so a
long document is read to its end rather than truncated. Documents are not packed together (no attention across
two documents; the length-bucketed batches keep the padding of short ones small). A chunk of one token has no
next token to predict and is left out. Prediction input (`tunelab predict`) is one example per text, truncated,
so each text gets its own perplexity.

The model, loss and reduction are instruction tuning's (models/causal_lm.py) with every token a target.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from tunelab.config.schema import HeadConfig, LossConfig, ModelConfig, RunConfig
from tunelab.data.records import Record
from tunelab.errors import DataError, ModelError
from tunelab.tasks.base import Predictions
from tunelab.tasks.pretraining import PretrainingTask, perplexity

if TYPE_CHECKING:  # torch and the model are imported where used (tasks/base.py says why)
    import torch
    from torch import nn

    from tunelab.data.encoding import Batch, EncodedSplit
    from tunelab.models.task_model import TaskModel

__all__ = ["CausalLMTask", "refuse_encoder"]


class CausalLMTask(PretrainingTask):
    name = "causal_lm"
    metric_names = ("perplexity",)
    hf_problem_type = "causal_lm"
    peft_task_type = "CAUSAL_LM"

    def check_config(self, config: RunConfig) -> list[str]:
        errors = super().check_config(config)
        if config.data.train_fraction < 1:
            errors.append("data.train_fraction: task causal_lm cuts documents into chunks after the split, so a share "
                          "of the documents is not a share of the training examples; use data.limit (documents)")
        return errors

    def load_preprocessor(self, model_dir: Path, config: RunConfig) -> Any:
        """The tokenizer, after checking that the model is not an encoder: transformers would give a BERT a causal
        head (BertLMHeadModel), but its blocks were pre-trained to see both sides of a token."""
        refuse_encoder(model_dir, self.name, "for an encoder use task: mlm")
        return super().load_preprocessor(model_dir, config)

    def encode(self, records: list[Record], tokenizer: Any, max_length: int, label_names: list[str], *,
               with_targets: bool = True, train: bool = False) -> EncodedSplit:
        """Chunks of every document with every token a target; prediction input (`with_targets=False`): one
        example per text, truncated, so each text gets its own perplexity."""
        from tunelab.data.encoding import EncodedSplit, encode_texts

        if not with_targets:
            ids = encode_texts([r.text for r in records], tokenizer, max_length) if records else []
            return EncodedSplit(input_ids=ids, targets=None, records=records, token_targets=[list(i) for i in ids],
                                targets_in_inputs=True)
        chunks, chunk_records = _chunks(records, tokenizer, max_length)
        if records and not chunks:
            raise DataError(f"{records[0].where}: every document of this split is a single token, which leaves no next "
                            "token to predict; give longer texts")
        return EncodedSplit(input_ids=chunks, targets=None, records=chunk_records,
                            token_targets=[list(c) for c in chunks], targets_in_inputs=True)

    def build_model(self, model_cfg: ModelConfig, head_cfg: HeadConfig, label_names: list[str],
                    model_dir: Optional[Path] = None) -> TaskModel:
        from tunelab.models.loading import build_causal_lm

        return build_causal_lm(model_cfg, model_dir)

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> nn.Module:
        from tunelab.models.causal_lm import NextTokenLoss

        return NextTokenLoss()

    def reduce_outputs(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """`(B, 2)` per example: summed next-token loss and the number of tokens predicted."""
        from tunelab.models.causal_lm import next_token_nll

        return next_token_nll(logits, batch.inputs["labels"])

    def metrics(self, split: EncodedSplit, predictions: Predictions, label_names: list[str]) -> dict[str, Any]:
        total, count = self.summed(predictions, 2)
        loss = total / count if count else float("nan")
        return {"loss": loss, "perplexity": perplexity(loss), "target_tokens": int(count)}


def refuse_encoder(model_dir: Path, task: str, advice: str) -> None:
    """A ModelError for an encoder given a decoder LM's task: transformers would give a BERT a causal head
    (BertLMHeadModel), but its blocks were pre-trained to see both sides of a token."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    from tunelab.models.loading import model_type

    kind = model_type(model_dir)
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise ModelError(f"model: {model_dir} is a {kind} model, pre-trained as a masked LM (it reads both sides "
                         f"of a token); task {task} needs a decoder LM (Llama, GPT-2, ...); {advice}")


def _chunks(records: list[Record], tokenizer: Any, max_length: int) -> tuple[list[list[int]], list[Record]]:
    """Each document's tokens in chunks of `max_length`, and a record per chunk (the document's own record when it
    is one chunk; else the chunk's text, `where` naming its tokens)."""
    if not records:
        return [], []
    encoded = tokenizer([r.text for r in records], add_special_tokens=True, truncation=False,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    chunks: list[list[int]] = []
    out: list[Record] = []
    for record, ids in zip(records, encoded):
        pieces = [(i, list(ids[i:i + max_length])) for i in range(0, len(ids), max_length)]
        pieces = [(i, piece) for i, piece in pieces if len(piece) > 1]
        whole = len(ids) <= max_length
        for start, piece in pieces:
            chunks.append(piece)
            out.append(record if whole else Record(text=tokenizer.decode(piece), label="",
                                                   where=f"{record.where} tokens {start + 1}-{start + len(piece)}"))
    return chunks, out
