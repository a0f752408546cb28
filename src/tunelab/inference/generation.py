"""Greedy generation for generative tasks, with the run's own batch size and precision, so a served run
writes exactly what its test split wrote."""

from __future__ import annotations

from typing import Any, Optional

import torch

from tunelab.config.schema import RunConfig
from tunelab.data.encoding import EncodedSplit
from tunelab.inference.precision import autocast_for
from tunelab.tasks.base import Task

__all__ = ["generate_split", "generate_test"]


def generate_split(task: Task, model: Any, split: EncodedSplit, tokenizer: Any, config: RunConfig, device: torch.device,
                   max_new_tokens: Optional[int] = None, *, autocast: bool = True) -> tuple[list[str], list[bool]]:
    """Greedy replies to the split's prompts and whether each stopped on its own. `autocast=False`: fp32
    whatever the run's precision (an exported graph runs as its parity check ran it)."""
    generation = config.generation
    if max_new_tokens is not None:
        generation = generation.model_copy(update={"max_new_tokens": max_new_tokens})
    return task.generate(model, split, tokenizer, generation, device=device,
                         batch_size=config.train.evaluation_batch_size,
                         autocast=autocast_for(device, config.train.precision) if autocast else None)


def generate_test(task: Task, model: Any, split: EncodedSplit, tokenizer: Any, config: RunConfig,
                  device: torch.device) -> tuple[list[str], dict[str, float]]:
    """Greedy replies to the split's prompts and their scores against its responses."""
    texts, stopped = generate_split(task, model, split, tokenizer, config, device)
    return texts, task.generation_metrics(split.records, texts, stopped)
