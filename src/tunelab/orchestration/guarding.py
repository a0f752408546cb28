"""A forgetting guard's run-time side: EWC's Fisher estimated once on the reference data or the earlier runs (or
read back from the run directory when resuming), replay's sources (replay_sources.py), and what the guard cost,
for the manifest and test_metrics.json.

The guard's penalty itself is on the Plan (strategies/guards/); this module has what needs the prepared data,
the task's loss and the run directory, which the strategies layer does not see.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from tunelab.atomic import atomic_write_with
from tunelab.config.schema import RunConfig
from tunelab.data.encoding import EncodedSplit, iterate_batches
from tunelab.inference.predict import encode_split
from tunelab.orchestration.earlier_runs import check_same_backbone, load_earlier_run, seeded_sample
from tunelab.orchestration.replay_sources import set_replay_sources
from tunelab.strategies.guards import guard_penalty, replay_term
from tunelab.strategies.guards.fisher import diagonal_fisher
from tunelab.strategies.guards.penalty import AnchorPenalty
from tunelab.strategies.guards.replay_loss import state_bytes
from tunelab.strategies.plan import Plan
from tunelab.strategies.registry import guard_section

__all__ = ["FISHER_FILE", "prepare_guard", "guard_report"]

FISHER_FILE = Path("guards") / "fisher.safetensors"


def prepare_guard(prepared: Any, config: RunConfig, model: torch.nn.Module, plan: Plan, loss_fn: torch.nn.Module,
                  staging: Path, resumed: bool) -> Optional[dict[str, Any]]:
    """Give the plan's guard what it needs before the first step; its report so far, or None without a guard."""
    section = guard_section(config.strategy)
    replay = replay_term(plan)
    if replay is not None:
        return {"name": section.name, "strength": section.strength,
                **set_replay_sources(replay, prepared, config, model, loss_fn)}
    penalty = guard_penalty(plan)
    if penalty is None:
        return None
    report: dict[str, Any] = {"name": section.name, "strength": section.strength,
                              "held_parameters": penalty.held_count()}
    if penalty.needs_fisher:
        report.update(_fisher(prepared, config, model, penalty, loss_fn, staging / FISHER_FILE, resumed))
    return report


def _fisher(prepared: Any, config: RunConfig, model: torch.nn.Module, penalty: AnchorPenalty, loss_fn: torch.nn.Module,
            path: Path, resumed: bool) -> dict[str, Any]:
    from safetensors.torch import load_file, save_file

    section = guard_section(config.strategy)
    if resumed and path.is_file():
        penalty.set_weights(load_file(str(path)))
        return {"fisher": f"read back from {FISHER_FILE}", "fisher_s": 0.0}
    started = time.perf_counter()
    if section.runs:
        weights, source = _fisher_of_runs(section, penalty, prepared.device, config.train.seed)
    else:
        split, source = _fisher_data(prepared, config, section)
        batches = iterate_batches(split, 1, pad_id=prepared.tokenizer.pad_token_id or 0, shuffle=False)
        weights = diagonal_fisher(model, penalty.weight_names(), batches, loss_fn, prepared.device)
        source = f"{len(split)} examples of {source}"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda tmp: save_file({n: w.contiguous() for n, w in weights.items()}, str(tmp)))
    penalty.set_weights(weights)
    mean = float(sum(w.sum() for w in weights.values()) / max(sum(w.numel() for w in weights.values()), 1))
    return {"fisher": source, "fisher_s": round(time.perf_counter() - started, 2),
            "fisher_mean": mean, "fisher_file": str(FISHER_FILE)}


def _fisher_of_runs(section: Any, penalty: AnchorPenalty, device: torch.device,
                    seed: int) -> tuple[dict[str, torch.Tensor], str]:
    """Each earlier run's Fisher on its own model, training sample and head, summed (online EWC)."""
    names, total = penalty.weight_names(), {}
    for run_dir in section.runs:
        earlier = load_earlier_run(run_dir, section.fisher_examples, seed)
        check_same_backbone(earlier, names)
        batches = iterate_batches(earlier.train, 1, pad_id=earlier.pad_id, shuffle=False)
        for name, weight in diagonal_fisher(earlier.model, names, batches, earlier.loss_fn, device).items():
            total[name] = total[name] + weight if name in total else weight
        del earlier
    return total, f"the Fishers of {len(section.runs)} earlier run(s), summed: {', '.join(map(str, section.runs))}"


def _fisher_data(prepared: Any, config: RunConfig, section: Any) -> tuple[EncodedSplit, str]:
    """`guard.data` (labelled, this run's label set), or the training split as a stand-in for the previous
    task; a seeded sample of `fisher_examples`."""
    if section.data:
        records = prepared.task.read(section.data, config.data, require_labels=True)
        split = encode_split(records, prepared.tokenizer, config.data.max_length, prepared.task, prepared.label_names)
        source = section.data
    else:
        split, source = prepared.encoded["train"], "the training split (stand-in for a previous task's data)"
    return seeded_sample(split, section.fisher_examples, config.train.seed), source


def guard_report(report: Optional[dict[str, Any]], plan: Plan) -> Optional[dict[str, Any]]:
    """The guard's cost after training: time in the penalty (forward side; its backward is part of the step),
    the memory it holds (anchors and Fisher), and the last penalty value."""
    replay = replay_term(plan)
    if report is not None and replay is not None:
        return {**report, "replay_s": round(replay.seconds, 3), "replayed_examples": replay.examples,
                "replay_calls": replay.calls, "last_replay_loss": replay.last,
                "state_mb": round(state_bytes(replay.sources) / 2 ** 20, 2)}
    penalty = guard_penalty(plan)
    if report is None or penalty is None:
        return report
    return {**report, "penalty_s": round(penalty.seconds, 3), "penalty_calls": penalty.calls,
            "state_mb": round(penalty.state_bytes() / 2 ** 20, 2), "last_penalty": float(penalty.last)}
