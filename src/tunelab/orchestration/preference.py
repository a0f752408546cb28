"""Preference tuning's run-time side: before the first step, the reference's log-probs of every split's pairs
(computed once per base model and split, cached: serving/reference_logprobs.py) become the splits' targets with
`preference.beta`, so the DPO loss, validation and the test metrics all read them; what it cost goes to the manifest.
The task (tasks/preference.py) encodes and scores pairs; this module has what needs the prepared data and the model
before training, which the tasks layer does not see."""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console

from tunelab.config.schema import RunConfig
from tunelab.models.task_model import TaskModel
from tunelab.serving.reference_logprobs import ReferenceLogprobs, base_settings, reference_logprobs
from tunelab.tasks.preference import reference_targets
from tunelab.training.callbacks.progress import print_phrases

__all__ = ["attach_reference"]

SPLITS = ("train", "validation", "test")


def attach_reference(prepared: Any, config: RunConfig, model: TaskModel, console: Console) -> Optional[dict[str, Any]]:
    """Set each split's targets to (log ref(chosen), log ref(rejected), beta) from `model` as built, before training
    (rank 0 computes a missing entry, the other ranks read it after); the manifest's report, or None for a task
    without a reference."""
    if not prepared.task.needs_reference:
        return None
    base = base_settings(prepared.base_model_hash, config.model)
    report: dict[str, Any] = {}
    for name in SPLITS:
        split = prepared.encoded[name]
        if not len(split):
            continue
        got = _reference(prepared, config, model, split, base)
        split.targets = reference_targets(got.logprobs, config.preference.beta)
        report[name] = {"pairs": len(split), "computed": got.computed, "reused": got.reused,
                        "seconds": round(got.seconds, 2), "key": got.key}
    _say(console, report)
    return {"beta": config.preference.beta, "label_smoothing": config.loss.label_smoothing, "reference": report}


def _reference(prepared: Any, config: RunConfig, model: TaskModel, split: Any, base: dict[str, Any]) -> ReferenceLogprobs:
    dist = prepared.dist

    def get() -> ReferenceLogprobs:
        return reference_logprobs(lambda: model, split, prepared.task, base=base, precision=config.train.precision,
                                  device=prepared.device, batch_size=config.train.evaluation_batch_size,
                                  pad_id=prepared.tokenizer.pad_token_id or 0)
    got = get() if dist.is_main else None
    dist.barrier()
    return got if got is not None else get()


def _say(console: Console, report: dict[str, Any]) -> None:
    computed = sum(r["computed"] for r in report.values())
    reused = sum(r["reused"] for r in report.values())
    seconds = sum(r["seconds"] for r in report.values())
    parts = ([f"{computed} computed"] if computed else []) + ([f"{reused} read from the cache"] if reused else [])
    print_phrases(console, [f"reference log-probs (the model before training, adapter off): {' and '.join(parts) or 'none'}"
                            f" in {seconds:.1f} s", "(" + ", ".join(f"{n} {r['pairs']}" for n, r in report.items()) + ")"],
                  sep=" ")
