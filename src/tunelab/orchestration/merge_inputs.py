"""The runs a merge reads: run directories given one by one, or the rows of a compare / tune directory; what
must be equal for their weights to be merged and scored together, and each run's weights with any adapter
folded in.

Two levels of "equal". To be scored on one prepared validation and test split, runs must share the task, the
label set (names and order), the base weights (manifest's base_model_sha256), and the validation and test
examples (manifest's data hashes: otherwise one run's test split may hold another run's training examples),
and must have started from the base (no `model.init_from`). To be merged, they must also have one
architecture: the same head (type, pooling, normalisation, width), and an adaptation that folds into the
base weights (full, partial, gradual, head, BitFit, LoRA, IA3; not adapters or prompts, which add modules).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from tunelab.artifacts.model_io import LoadedRun, load_run
from tunelab.artifacts.rundir import FINISHED_MARKER
from tunelab.catalog import parse_config
from tunelab.config.schema import RunConfig
from tunelab.errors import ConfigError, TunelabError
from tunelab.export.merge import merge_adapter
from tunelab.strategies.peft.base import adaptation_of
from tunelab.tasks.registry import get_task

__all__ = ["MergeInput", "expand_sources", "read_input", "scoring_difference", "architecture_difference",
           "fold", "unfoldable_reason"]

_HEAD_SHAPE = ("type", "pooling", "normalize", "hidden_size")  # what the head computes; dropout only trains


@dataclass
class MergeInput:
    run_dir: Path
    config: RunConfig
    labels: list[str]
    manifest: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)   # what the merge learns of it (validation, test)

    @property
    def name(self) -> str:
        return str(self.run_dir)

    def describe(self) -> dict[str, Any]:
        return {"run": self.name, "strategy": self.config.strategy.name, "seed": self.config.train.seed, **self.extra}


def expand_sources(sources: list[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Run directories in the order given; a compare directory (compare.json) stands for its rows and a tune
    directory (tune.json) for its trials, in their files' order. Rows without a finished model (failed, pruned)
    come back as skipped, with the reason."""
    runs: list[Path] = []
    skipped: list[dict[str, str]] = []
    for source in sources:
        if (source / "compare.json").is_file():
            rows = json.loads((source / "compare.json").read_text(encoding="utf-8"))["rows"]
            found = [(source / row["run_dir"], row.get("status") == "done", row.get("error")) for row in rows]
        elif (source / "tune.json").is_file():
            trials = json.loads((source / "tune.json").read_text(encoding="utf-8"))["trials"]
            found = [(source / "trials" / str(t["number"]), t.get("state") == "COMPLETE", t.get("state"))
                     for t in trials]
        else:
            runs.append(source)
            continue
        for run_dir, done, why in found:
            if done and (run_dir / "model").is_dir():
                runs.append(run_dir)
            else:
                skipped.append({"run": str(run_dir.resolve()),
                                "reason": f"no finished model ({why or 'pruned or unfinished'})"})
    return runs, skipped


def read_input(run_dir: Path) -> MergeInput:
    """A finished run directory's config, labels and manifest; refused, naming what is missing, otherwise."""
    for name in ("config.yaml", "labels.json", FINISHED_MARKER, "model"):
        if not (run_dir / name).exists():
            raise TunelabError(f"merge: {run_dir} is not a finished run directory (no {name}); give folders that "
                               "`tunelab train` (or a compare / tune row) wrote, or a compare or tune folder")
    config = parse_config(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")),
                          source=str(run_dir / "config.yaml"))
    labels = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))["labels"]
    manifest = json.loads((run_dir / FINISHED_MARKER).read_text(encoding="utf-8"))
    return MergeInput(run_dir.resolve(), config, labels, manifest)  # merge.json names runs by absolute path


def scoring_difference(first: MergeInput, other: MergeInput) -> Optional[str]:
    """Why `other` cannot be scored with `first` on one prepared split, or None."""
    if get_task(first.config.task).generative:
        return (f"it is a {first.config.task} run: merging scores every candidate on the validation split's "
                "predictions, which a generative task does not give; merge classification-like runs")
    if get_task(first.config.task).needs_reference:
        return (f"it is a {first.config.task} run: its scores are rewards against the reference model's "
                "log-probabilities, which merging does not compute; merge classification-like runs")
    if other.config.task != first.config.task:
        return f"its task is {other.config.task}, {first.name}'s is {first.config.task}"
    if other.labels != first.labels:
        return f"its labels are {other.labels}, {first.name}'s are {first.labels} (names and order must be equal)"
    if other.manifest.get("base_model_sha256") != first.manifest.get("base_model_sha256"):
        return (f"it was trained from other base weights ({other.config.model.name}, sha256 "
                f"{str(other.manifest.get('base_model_sha256'))[:12]}) than {first.name} ({first.config.model.name}, "
                f"{str(first.manifest.get('base_model_sha256'))[:12]})")
    if other.config.model.init_from:
        return (f"it started from run {other.config.model.init_from} (model.init_from), not from the base weights, "
                "so its task vector is not against the base")
    for split in ("validation", "test"):
        ours, theirs = (r.manifest.get("data_sha256", {}).get(split) for r in (first, other))
        if ours != theirs:
            return (f"its {split} split holds other examples than {first.name}'s (data hash {str(theirs)[:12]} vs "
                    f"{str(ours)[:12]}): other data or another data.split_seed; runs to merge must hold out the same "
                    "validation and test examples (train them with one data.split_seed)")
    return None


def architecture_difference(first: MergeInput, other: MergeInput) -> Optional[str]:
    """Why `other`'s weights do not line up with `first`'s, or None (after `scoring_difference`)."""
    ours, theirs = (r.config.head.model_dump(include=set(_HEAD_SHAPE)) for r in (first, other))
    if ours != theirs:
        return f"its head is {theirs}, {first.name}'s is {ours}: the tensors do not line up"
    return None


def unfoldable_reason(run: LoadedRun) -> Optional[str]:
    """Why this loaded run's adaptation cannot be folded into the base weights, or None."""
    adaptation = adaptation_of(run.model)
    if adaptation is None:
        return None
    stuck = sorted(type(layer).__name__ for layer in adaptation.layers.values() if not layer.mergeable)
    if stuck or adaptation.hooks:
        what = f"layers ({stuck[0]})" if stuck else "hooks"
        return (f"its strategy {run.config.strategy.name} adds {what} that no base weight absorbs, so it has no "
                "place in weight space; use tunelab predict --ensemble for it")
    return None


def fold(run_dir: Path) -> LoadedRun:
    """The run loaded as its effective weights: a LoRA / IA3 adapter folded into its copy of the base (the
    model is then a plain model of the base architecture); refused for adapters that do not fold."""
    run = load_run(run_dir)
    reason = unfoldable_reason(run)
    if reason is not None:
        raise ConfigError(f"merge: {run_dir}: {reason}")
    merge_adapter(run.model)
    return run
