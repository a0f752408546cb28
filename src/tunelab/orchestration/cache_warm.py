"""Frozen prefixes built into the activation cache before the runs that read them, with the same model,
strategy and feed each run's trainer starts with, so the cache keys are the trainer's and the runs read
instead of computing.

Several runs at once (the rows of a comparison) get one capture pass per training split: a pass that
stores the input of block 6 computes the inputs of blocks 3, 4 and 5 on the way, so `head` (depth 6),
`partial` (depth 4) and `gradual` (depths 6, 5, 4, 3) cost one forward pass of the data, where separate runs
cost three. A plan that freezes nothing (LoRA, full) has nothing to build."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from tunelab.config.schema import RunConfig
from tunelab.models.task_model import TaskModel
from tunelab.orchestration.prepare import SPLITS, Prepared
from tunelab.strategies.registry import compile_strategy
from tunelab.training.cache import ActivationCache, activation_cache_for
from tunelab.training.cache_keys import prefix_hashes
from tunelab.training.device import seed_everything
from tunelab.training.frozen_prefix import prefix_schedule
from tunelab.training.prefix_feed import PrefixFeed

__all__ = ["warm_cache"]


@dataclass
class _Group:
    """Runs whose frozen prefixes are one computation: the same training split, backbone weights, cache
    settings and build batch size (a build batches like the trainer does, so its entries are the trainer's
    bit for bit)."""

    run: Prepared
    model: TaskModel
    cache: ActivationCache
    depths: set[int] = field(default_factory=set)


def warm_cache(prepared: Prepared, configs: Sequence[RunConfig]) -> Optional[dict[str, Any]]:
    """Entries for the train, validation and test splits at every depth the runs of `configs` freeze; None
    when no run caches anything. The head enters no cache key (only the frozen prefix's weights do), so the
    prepared run's own head stands in for each run's."""
    if not prepared.task.supports_cache:
        return None
    started = time.perf_counter()
    groups: dict[tuple, _Group] = {}
    notes = []
    for config in configs:
        try:
            _add_run(prepared, config, groups)
        except Exception as err:  # noqa: BLE001 - that run meets the error itself, and reports it as its own
            notes.append(f"{config.strategy.name}: not warmed ({type(err).__name__}: {err})")
    if not groups:
        return {"depths": [], "seconds": time.perf_counter() - started, "summary": "", "built_entries": 0,
                "reused_entries": 0, "notes": notes} if notes else None
    for group in groups.values():
        train = group.run.config.train
        feed = PrefixFeed(group.cache, device=prepared.device, pad_id=prepared.tokenizer.pad_token_id or 0,
                          batch_size=train.batch_size, precision=train.precision, seed=train.seed)
        feed.start(group.model.to(prepared.device), sorted(group.depths), [group.run.encoded[n] for n in SPLITS])
        group.model.cpu()
    stats = [g.cache.stats for g in groups.values()]
    built, reused = sum(s.built_entries for s in stats), sum(s.reused_entries for s in stats)
    summary = (f"{built} entries built from {sum(s.computed_examples for s in stats):,} examples in "
               f"{len(groups)} pass{'es' if len(groups) > 1 else ''} ({sum(s.bytes_written for s in stats) / 2**20:,.0f} "
               f"MiB), {reused} reused, under {groups[next(iter(groups))].cache.root}")
    return {"depths": sorted(set().union(*(g.depths for g in groups.values()))),
            "seconds": time.perf_counter() - started, "summary": summary, "built_entries": built,
            "reused_entries": reused, "passes": len(groups), "notes": notes}


def _add_run(prepared: Prepared, config: RunConfig, groups: dict[tuple, _Group]) -> None:
    """The depths one run will freeze, added to the group of runs that share its prefix computation."""
    run = prepared.for_config(config.model_copy(update={"head": prepared.declared_head}))
    train = run.config.train
    cache = activation_cache_for(train, prepared.tokenizer, run.config.data.max_length)
    if cache is None or run.encoded["train"].augment is not None:  # run_one turns the cache off for these too
        return
    seed_everything(train.seed)
    model = run.build_model(run.config)
    plan = compile_strategy(run.config.strategy, model, run.config.optim, train.epochs)
    depths = {k for k in prefix_schedule(model, plan, train.epochs) if k}
    if not depths:
        return
    blocks = model.layer_stack.num_blocks
    key = (run.config.data.train_fraction, str(cache.root), cache.dtype, cache.tokenizer_settings, cache.compute,
           train.batch_size, prefix_hashes(model, [blocks])[blocks])
    groups.setdefault(key, _Group(run, model, cache)).depths.update(depths)
