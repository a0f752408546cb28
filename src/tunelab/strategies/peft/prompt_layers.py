"""Prompt tuning's layer: k trainable soft tokens `(k, H)`, random or initialised from the embeddings of some
words. The method (and the hooks that put the tokens in front of the input) is in `prompt.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from tunelab.errors import ConfigError
from tunelab.strategies.peft.layer import PeftLayer

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel

__all__ = ["SoftPrompt", "init_from_words"]


class SoftPrompt(PeftLayer):
    declared: ClassVar[tuple[str, ...]] = ("prompt_embeddings",)

    def __init__(self, num_tokens: int, dim: int, init: torch.Tensor | None = None) -> None:
        super().__init__()
        weight = init.detach().clone() if init is not None else torch.randn(num_tokens, dim) * 0.02
        self.prompt_embeddings = nn.Parameter(weight)   # (k, H)

    def forward(self, batch_size: int, dtype: torch.dtype) -> torch.Tensor:
        return self.prompt_embeddings.to(dtype).unsqueeze(0).expand(batch_size, -1, -1)   # (B, k, H)


def init_from_words(model: TaskModel, words: str, k: int) -> torch.Tensor:
    """The embeddings of `words`' tokens, repeated to `k` rows `(k, H)`: a prompt that starts as those words."""
    from transformers import AutoTokenizer

    source = getattr(model.network.config, "_name_or_path", "")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as err:  # transformers raises many types
        raise ConfigError(f"strategy.prompt.init_words: cannot load the base tokenizer from {source!r}: {err}") from None
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError("strategy.prompt.init_words: the words give no tokens; give some words")
    ids = (ids * (k // len(ids) + 1))[:k]
    return model.network.get_input_embeddings().weight[torch.tensor(ids)]
