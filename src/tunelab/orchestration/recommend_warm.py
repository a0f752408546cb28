"""The advice's frozen prefix, built into the activation cache before the advice is trained: the same
model, strategy and feed a `tunelab train` of the plan starts with, so its cache keys are the trainer's and
the train reads instead of computing. A plan that freezes nothing (LoRA, full) has nothing to build."""

from __future__ import annotations

import time
from typing import Any, Optional

from tunelab.config.schema import RunConfig
from tunelab.orchestration.prepare import Prepared
from tunelab.strategies.registry import compile_strategy
from tunelab.training.cache import activation_cache_for
from tunelab.training.frozen_prefix import prefix_schedule
from tunelab.training.device import seed_everything
from tunelab.training.prefix_feed import PrefixFeed

__all__ = ["warm_cache"]


def warm_cache(prepared: Prepared, config: RunConfig) -> Optional[dict[str, Any]]:
    """Entries for the train, validation and test splits at the plan's frozen depths; None when the plan or
    the task caches nothing. The head does not enter a cache key (only the frozen prefix's weights do), so the
    prepared run's own head stands in for the plan's."""
    if not prepared.task.supports_cache:
        return None
    started = time.perf_counter()
    run = prepared.for_config(config.model_copy(update={"head": prepared.declared_head}))
    cache = activation_cache_for(run.config.train, prepared.tokenizer, run.config.data.max_length)
    if cache is None:
        return None
    seed_everything(run.config.train.seed)
    model = run.build_model(run.config)
    plan = compile_strategy(run.config.strategy, model, run.config.optim, run.config.train.epochs)
    schedule = prefix_schedule(model, plan, run.config.train.epochs)
    if not any(schedule):
        return None
    feed = PrefixFeed(cache, device=prepared.device, pad_id=prepared.tokenizer.pad_token_id or 0,
                      batch_size=run.config.train.batch_size, precision=run.config.train.precision,
                      seed=run.config.train.seed)
    feed.start(model.to(prepared.device), schedule, [run.encoded[name] for name in ("train", "validation", "test")])
    return {"depths": sorted({k for k in schedule if k}), "seconds": time.perf_counter() - started,
            "summary": cache.summary(), "built_entries": cache.stats.built_entries,
            "reused_entries": cache.stats.reused_entries}
