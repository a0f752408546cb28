"""Parity of an exported model with the PyTorch run, measured before anything is written under its name.

Both models see the same batches (`predict_logits`, the path every prediction takes) of the run's test split,
re-read with the run's own config (a sample when it is large), or of probe inputs when the run's data cannot
be read here. fp32 exports must agree within `FP32_ATOL` on every logit; int8 exports must take the same
decision (argmax; the thresholded labels for multilabel; a value within 1% of the targets' range for
regression) on at least `INT8_AGREEMENT` of the examples, and the metric change is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tunelab.artifacts.model_io import LoadedRun
from tunelab.data.encoding import EncodedSplit, iterate_batches
from tunelab.data.sources import load_data
from tunelab.errors import TunelabError
from tunelab.export.graph import example_inputs
from tunelab.inference.predict import encode_split, is_labelled, predict_logits
from tunelab.tasks.base import Outputs, Task

__all__ = ["ParityData", "parity_data", "measure_parity", "check_parity", "FP32_ATOL", "INT8_AGREEMENT"]

FP32_ATOL = 1e-4
INT8_AGREEMENT = 0.99
_CPU = torch.device("cpu")


@dataclass
class ParityData:
    split: EncodedSplit
    source: str   # what the examples are, for export.json and the CLI


def parity_data(run: LoadedRun, task: Task, limit: int = 256) -> ParityData:
    """The run's test split (evenly spaced `limit` examples of it), or probe inputs when it cannot be read."""
    try:
        test = load_data(run.config.data, task, run.config.train.seed).splits.test
    except (TunelabError, OSError) as err:
        return _probe(run, task, f"probe inputs (the run's data is not readable here: {str(err).splitlines()[0]})")
    if not test:
        return _probe(run, task, "probe inputs (the run has no test split)")
    picked = test if len(test) <= limit else [test[i * len(test) // limit] for i in range(limit)]
    split = encode_split(picked, run.tokenizer, run.config.data.max_length, task, run.label_names, with_targets=True)
    return ParityData(split, f"test split ({len(picked)} of {len(test)} examples)")


def _probe(run: LoadedRun, task: Task, why: str) -> ParityData:
    inputs = example_inputs(run, task)
    if task.takes_images:
        n = inputs[0].shape[0]
        return ParityData(EncodedSplit(input_ids=[[] for _ in range(n)], targets=None, records=[],
                                       features={"pixel_values": inputs[0]}), why)
    ids, mask = inputs
    rows = [row[: int(m.sum())].tolist() for row, m in zip(ids, mask)]
    return ParityData(EncodedSplit(input_ids=rows, targets=None, records=[]), why)


def _outputs(model: Any, data: ParityData, run: LoadedRun) -> Outputs:
    batches = iterate_batches(data.split, run.config.train.evaluation_batch_size, pad_id=run.tokenizer.pad_token_id or 0,
                              shuffle=False)
    return predict_logits(model, batches, len(data.split), _CPU)[0]


def _rows(outputs: Outputs) -> torch.Tensor:
    """`(N, C)`, or every example's tokens stacked `(sum T_i, C)` for per-token outputs."""
    return torch.cat(list(outputs)) if isinstance(outputs, list) else outputs


def _decisions(task: Task, ref: torch.Tensor, got: torch.Tensor, split: EncodedSplit) -> torch.Tensor:
    """Per row: whether the exported model decides as the PyTorch one does (regression: a value within 1% of the
    range of the split's targets, or of the PyTorch outputs where there are no targets)."""
    if task.hf_problem_type == "regression":
        values = split.targets.float() if split.targets is not None else ref
        spread = float(values.max() - values.min()) if values.numel() > 1 else 0.0
        return ((ref - got).abs() <= 0.01 * (spread or 1.0)).all(dim=-1)
    if task.hf_problem_type == "multi_label_classification":
        return ((ref > 0) == (got > 0)).all(dim=-1)
    return ref.argmax(dim=-1) == got.argmax(dim=-1)


def measure_parity(reference: Any, exported: Any, data: ParityData, run: LoadedRun, task: Task) -> dict[str, Any]:
    """Largest |Δlogit| (and where), decision agreement, and the metrics of both models on a labelled split."""
    ref_out, got_out = _outputs(reference, data, run), _outputs(exported, data, run)
    ref, got = _rows(ref_out), _rows(got_out)
    diff = (ref.float() - got.float()).abs()
    flat = int(diff.argmax()) if diff.numel() else 0
    row, column = divmod(flat, max(1, diff.shape[-1]))
    figures: dict[str, Any] = {"data": data.source, "examples": len(data.split),
                               "max_abs_logit_diff": float(diff.max()) if diff.numel() else 0.0,
                               "largest_at": {"example": _where(data, ref_out, row), "output": column},
                               "decision_agreement": float(_decisions(task, ref, got, data.split).float().mean()) if len(ref) else 1.0}
    if is_labelled(data.split) and data.split.records:
        before, after = (_metrics(task, data, run, out) for out in (ref_out, got_out))
        figures["metrics_pytorch"], figures["metrics_export"] = before, after
        figures["metric_delta"] = {k: after[k] - before[k] for k in before if k in after}
    return figures


def _where(data: ParityData, outputs: Outputs, row: int) -> str:
    """The example a row of `_rows(outputs)` belongs to (per-token rows: its token too), as the user finds it."""
    token = ""
    if isinstance(outputs, list):
        lengths = torch.tensor([len(o) for o in outputs]).cumsum(0)
        example = int((lengths <= row).sum())
        token = f", token {row - (int(lengths[example - 1]) if example else 0)}"
        row = example
    records = data.split.records
    return (records[row].where if row < len(records) else f"probe example {row}") + token


def _metrics(task: Task, data: ParityData, run: LoadedRun, outputs: Outputs) -> dict[str, float]:
    predictions = task.predict(outputs, run.label_names, data.split)
    scores = task.metrics(data.split, predictions, run.label_names)
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}


def check_parity(figures: dict[str, Any], *, int8: bool, what: str) -> None:
    """Raise, naming the largest difference, when the figures break the rule for this kind of export."""
    diff, agree = figures["max_abs_logit_diff"], figures["decision_agreement"]
    at = figures["largest_at"]
    largest = f"the largest |Δlogit| is {diff:.3g} (at {at['example']}, output {at['output']})"
    if not int8 and not diff <= FP32_ATOL:
        raise TunelabError(f"{what}: parity failed on {figures['data']}: {largest} > {FP32_ATOL:g}; nothing was "
                           "written. Please report this with the run directory")
    if int8 and not agree >= INT8_AGREEMENT:
        raise TunelabError(f"{what}: parity failed on {figures['data']}: the int8 model decides as the PyTorch run "
                           f"on {100 * agree:.1f}% of the examples (< {100 * INT8_AGREEMENT:g}%); {largest}; nothing "
                           "was written. Export without --quantize for this model")
