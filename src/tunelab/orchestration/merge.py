"""`tunelab merge`: several runs of one base model merged into one model in weight space (linear, task
arithmetic, TIES, or a greedy soup), its weights chosen on the validation split, then scored once on the test
split beside every run it was made from, and written as an ordinary run directory.

The validation and test splits are the first run's config prepared again (`prepare`: read, split, encoded as
the run saw them); every run must hold out the same examples (merge_inputs.py says what else must agree). Each
run is loaded as its effective weights (an adapter folded into its copy of the base), scored alone on
validation, and flattened into a WeightSpace against the base model's weights (models/merging.py says how
heads are treated). The search (merge_search.py) never reads the test split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape

from tunelab.artifacts.model_io import LoadedRun
from tunelab.artifacts.rundir import RunDirectory
from tunelab.errors import ConfigError, TunelabError
from tunelab.models.merging import Tensors, WeightSpace, linear_merge
from tunelab.orchestration.merge_inputs import (MergeInput, architecture_difference, expand_sources, fold, read_input,
                                                scoring_difference)
from tunelab.orchestration.merge_output import write_merge_dir
from tunelab.orchestration.merge_search import GREEDY_SOUP, METHODS, Scorer, greedy_soup, scalars, search
from tunelab.orchestration.prepare import Prepared, prepare
from tunelab.training.device import seed_everything

__all__ = ["MergeRequest", "merge", "METHODS"]

FORMAT_VERSION = 1


@dataclass
class MergeRequest:
    sources: list[Path]          # run directories, or compare / tune directories standing for their rows
    method: str                  # linear | task_arithmetic | ties | greedy_soup
    out: Path
    overwrite: bool = False


@dataclass
class _Candidate:
    input: MergeInput
    run: LoadedRun
    validation: dict[str, Any]


def merge(request: MergeRequest, console: Optional[Console] = None) -> dict[str, Any]:
    """Merge as `request` says into `request.out`; returns merge.json's record. Nothing is written unless the
    whole merge succeeds. The cost in the record: `load_s` (prepare, load the runs, score each on validation),
    `search_s` (merge and score every grid point or soup step on validation), `test_s` (score the runs and the
    written merge on test, write the folder)."""
    started = time.perf_counter()
    console = console or Console(stderr=True)
    say = lambda line: console.print(escape(line), highlight=False)  # noqa: E731
    soup = _check_request(request)
    run_dir = RunDirectory(request.out, overwrite=request.overwrite)
    run_dir.check_target()
    paths, skipped = expand_sources(request.sources)
    _check_out(run_dir.target, [*request.sources, *paths])
    inputs = _scorable([read_input(path) for path in paths], skipped, soup)
    prepared = prepare(inputs[0].config, console=console)
    _check_splits(prepared, inputs[0])
    scorer = Scorer(prepared, model=None, loss_fn=prepared.task.loss_fn(prepared.config.loss,  # type: ignore[arg-type]
                                                                         prepared.encoded["train"], prepared.label_names))
    candidates = _load(inputs, scorer, skipped, soup, say)
    if soup:  # best validation first (stable: equal runs keep their order)
        candidates = sorted(candidates, key=lambda c: scorer.key(c.validation), reverse=True)
    kept = _same_architecture(candidates, skipped, soup)
    reference = kept[0]
    space = WeightSpace.of(_base_state(prepared, reference), [c.run.model.state_dict() for c in kept],
                           reference.run.model)
    scorer.model = reference.run.model
    for candidate in kept[1:]:
        candidate.run.model = None  # type: ignore[assignment]  # their weights live in the space now
    loaded_s = time.perf_counter() - started
    chosen, state, search_record = _choose(request.method, space, kept, scorer, say)
    search_s = time.perf_counter() - started - loaded_s
    tested = time.perf_counter()
    runs = [{**c.input.describe(), "validation": scalars(c.validation),
             "test": scalars(scorer.score(linear_merge(space, _one_hot(i, len(kept))), "test"))}
            for i, c in enumerate(kept)]
    best = max(range(len(kept)), key=lambda i: scorer.key(kept[i].validation))
    record = {"format_version": FORMAT_VERSION, "method": request.method, "metric": scorer.metric, "mode": scorer.mode,
              "heads": "averaged with the merge's run weights (uniform for task_arithmetic and ties): "
                       "models/merging.py says why",
              "chosen": chosen, **search_record, "runs": runs, "skipped": skipped,
              "best_single_run_on_validation": runs[best]["run"],
              "splits": {name: len(prepared.encoded[name]) for name in ("train", "validation", "test")}}
    scorer.model.load_state_dict(state)
    written = write_merge_dir(run_dir, prepared, scorer.model, reference.run, record,
                              seconds={"load": loaded_s, "search": search_s, "tested": tested, "started": started})
    say(f"wrote {run_dir.target}")
    return written


def _check_request(request: MergeRequest) -> bool:
    if request.method not in METHODS:
        raise ConfigError(f"merge --method {request.method!r}: choose one of {', '.join(METHODS)}")
    if not request.sources:
        raise ConfigError("merge: give the RUN_DIRs to merge (or a compare / tune folder)")
    return request.method == GREEDY_SOUP


def _check_out(target: Path, sources: list[Path]) -> None:
    """--out must not be (or hold) a run it reads: --overwrite would replace it."""
    for source in sources:
        if source.resolve().is_relative_to(target):
            raise ConfigError(f"merge --out {target}: it holds {source}, one of the runs to merge; write the merge to "
                              "another folder")


def _scorable(inputs: list[MergeInput], skipped: list[dict[str, str]], soup: bool) -> list[MergeInput]:
    """The inputs that can be scored on the first one's splits (and, for a method, whose heads line up with its):
    the rest refused (a method) or skipped (a soup, which checks heads against its best run later)."""
    if not inputs:
        raise TunelabError("merge: no finished run to merge" + "".join(f"; {s['run']}: {s['reason']}" for s in skipped))
    first = inputs[0]
    own = scoring_difference(first, first)  # a generative task is refused even alone
    if own is not None:
        raise ConfigError(f"merge: {first.name}: {own}")
    kept = [first]
    for other in inputs[1:]:
        reason = scoring_difference(first, other) or (None if soup else architecture_difference(first, other))
        if reason is None:
            kept.append(other)
        elif soup:
            skipped.append({"run": other.name, "reason": reason})
        else:
            raise ConfigError(f"merge: {other.name} cannot be merged with {first.name}: {reason}")
    if len(kept) < 2 and not soup:
        raise ConfigError(f"merge --method: give two or more runs to merge (got {len(kept)})")
    return kept


def _check_splits(prepared: Prepared, first: MergeInput) -> None:
    """The splits prepared now are the ones the runs held out (the data file has not changed since)."""
    for split in ("validation", "test"):
        saved = first.manifest.get("data_sha256", {}).get(split)
        if saved != prepared.data_hashes[split]:
            raise TunelabError(f"merge: the {split} split read now from {first.name}'s data differs from the one it "
                               f"held out (hash {prepared.data_hashes[split][:12]} vs {str(saved)[:12]}); was the data "
                               "file changed? Merge runs whose data is still as they read it")


def _load(inputs: list[MergeInput], scorer: Scorer, skipped: list[dict[str, str]], soup: bool,
          say: Any) -> list[_Candidate]:
    """Each run as its effective weights, scored alone on validation; a run whose adaptation does not fold is
    refused (a method) or skipped (a soup)."""
    out = []
    for item in inputs:
        try:
            run = fold(item.run_dir)
        except ConfigError as err:
            if not soup:
                raise
            skipped.append({"run": item.name, "reason": str(err).split(": ", 2)[-1]})
            continue
        run.model.to(scorer.prepared.device)
        metrics = scorer.score_model(run.model, "validation")
        say(f"{item.name} ({item.config.strategy.name}): validation {scorer.metric} {float(metrics[scorer.metric]):.4f}")
        out.append(_Candidate(item, run, metrics))
    if not out:
        reasons = "; ".join(f"{s['run']}: {s['reason']}" for s in skipped)
        raise TunelabError(f"merge: none of the runs can be merged; {reasons}")
    return out


def _same_architecture(candidates: list[_Candidate], skipped: list[dict[str, str]], soup: bool) -> list[_Candidate]:
    """The candidates whose tensors line up with the first's (for a soup, the best's)."""
    first = candidates[0]
    shapes = {k: v.shape for k, v in first.run.model.state_dict().items()}
    kept = [first]
    for other in candidates[1:]:
        reason = architecture_difference(first.input, other.input)
        theirs = {k: v.shape for k, v in other.run.model.state_dict().items()}
        if reason is None and theirs != shapes:
            odd = sorted(set(theirs) ^ set(shapes)) or sorted(k for k in shapes if shapes[k] != theirs[k])
            reason = f"its tensors differ from {first.input.name}'s (first: {odd[0]})"
        if reason is None:
            kept.append(other)
        elif soup:
            skipped.append({"run": other.input.name, "reason": reason})
        else:
            raise ConfigError(f"merge: {other.input.name} cannot be merged with {first.input.name}: {reason}")
    return kept


def _base_state(prepared: Prepared, reference: _Candidate) -> Tensors:
    """The pre-trained weights in the runs' architecture (the head it builds is random and never read)."""
    seed_everything(0)
    config = reference.input.config
    base = prepared.task.build_model(config.model.model_copy(update={"init_from": None}), config.head,
                                     prepared.label_names, prepared.model_dir)
    return base.state_dict()


def _choose(method: str, space: WeightSpace, kept: list[_Candidate], scorer: Scorer,
            say: Any) -> tuple[dict[str, Any], Tensors, dict[str, Any]]:
    """(the chosen point, its weights, the search's record: the grid or the soup's steps)."""
    names = [c.input.name for c in kept]
    if method == GREEDY_SOUP:
        members, state, steps = greedy_soup(space, names, scorer, [c.validation for c in kept], say)
        chosen = {"runs": [names[i] for i in members], "weights": [round(1 / len(members), 6)] * len(members),
                  "validation": [s for s in steps if s["added"]][-1]["soup_validation"]}
        return chosen, state, {"steps": steps}
    point, state, rows = search(space, method, scorer, say)
    return point, state, {"grid": rows}


def _one_hot(i: int, n: int) -> list[float]:
    return [1.0 if j == i else 0.0 for j in range(n)]
