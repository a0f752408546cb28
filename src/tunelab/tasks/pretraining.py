"""What the continued pre-training tasks share (`mlm` for encoders, `causal_lm` for decoder LMs): unlabelled
in-domain text in, the model's own language-modelling objective, and a backbone out.

Before a supervised run on a domain far from the pre-training text (tweets, clinical notes, legal text), a model
can first read unlabelled text of that domain with the objective it was pre-trained with (Gururangan et al.
2020, "Don't Stop Pretraining"). The run's `model/` is then a plain backbone directory (weights, config,
tokenizer) that a later config names as `model: runs/x/model`; a LoRA or IA3 update is merged into its weights,
and methods whose added computation no weight absorbs are refused, since a backbone could not hold them.

Data: a `.txt` file (one document per line) or the text column of a table (data/corpus.py), or the text of any
built-in text set; no label column. Validation and test are held out as for every task; their scores are the
language-modelling loss and its perplexity, exp(loss).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tunelab.config.schema import DataConfig, RunConfig
from tunelab.data.records import Record
from tunelab.tasks.base import Outputs, Predictions, TaskBase

__all__ = ["PretrainingTask", "REFUSED_STRATEGIES", "perplexity"]

_NO_BACKBONE = ("adds computation that no weight absorbs, so the saved backbone could not hold it; use lora or ia3 "
                "(merged into the saved weights), bitfit, full, partial or gradual")
REFUSED_STRATEGIES = {
    "head": "trains only the language-modelling head's last layers; the blocks a later run reads would stay as they "
            "were: use full, partial, gradual, lora or ia3",
    "houlsby": _NO_BACKBONE, "pfeiffer": _NO_BACKBONE, "prompt_tuning": _NO_BACKBONE, "prefix_tuning": _NO_BACKBONE,
}


def perplexity(loss: float) -> float:
    """exp(loss), capped where exp overflows (a diverged run reads as huge, not as an error)."""
    return math.exp(min(loss, 50.0))


class PretrainingTask(TaskBase):
    """Defaults of the two pre-training tasks; each sets its objective (encode, model, loss, reduction)."""

    label_kind = "none"
    default_metric = "loss"
    supports_cache = False  # the training tokens change every step (masks) or the stack is a decoder's
    takes_class_weights = False
    saves_backbone = True

    def check_config(self, config: RunConfig) -> list[str]:
        """No labels, the model's own head, and a strategy whose result a backbone can hold."""
        errors = super().check_config(config)
        if config.head.type not in ("native", "auto"):
            errors.append(f"head.type: task {self.name} trains the model's own language-modelling head; set "
                          "head.type: native")
        if config.data.label_column != DataConfig.model_fields["label_column"].default or config.data.label_delimiter:
            errors.append(f"data.label_column: task {self.name} learns from text alone (data.text_column) and reads no "
                          "labels; remove data.label_column / data.label_delimiter, or train a supervised task")
        if config.strategy.name in REFUSED_STRATEGIES:
            errors.append(f"strategy.name: {config.strategy.name} with task {self.name}: "
                          f"{REFUSED_STRATEGIES[config.strategy.name]}")
        return errors

    def num_outputs(self, label_names: list[str]) -> int:
        return 0

    def read(self, path: str | Path, config: DataConfig, *, require_labels: bool = True) -> list[Record]:
        from tunelab.data.corpus import read_corpus

        return read_corpus(path, text_column=config.text_column)

    def load_preprocessor(self, model_dir: Path, config: RunConfig) -> Any:
        from tunelab.models.loading import load_tokenizer

        return load_tokenizer(model_dir, config.model.trust_remote_code)

    def predict(self, outputs: Outputs, label_names: list[str], split: Any) -> Predictions:
        """Each example's perplexity, from its summed loss (column 0) and its scored tokens (column 1)."""
        import torch

        assert isinstance(outputs, torch.Tensor)
        values = [perplexity(row[0] / row[1]) if row[1] else float("nan") for row in outputs.tolist()]
        return Predictions(values=values, scores=None, raw=outputs)

    @staticmethod
    def summed(predictions: Predictions, width: int) -> list[float]:
        """The `width` per-example columns summed over the split (zeros for an empty split)."""
        return predictions.raw.sum(0).tolist() if len(predictions.raw) else [0.0] * width

    def score_columns(self, label_names: list[str]) -> list[str]:
        return []

    def show(self, value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)
