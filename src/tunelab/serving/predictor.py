"""One way to load anything tunelab can predict with: a run directory or an export directory.

`load_predictor(path)` reads a run (PyTorch) or an export (`export.json`: ONNX in onnxruntime, TorchScript in
`torch.jit`, merged weights in PyTorch) and returns a :class:`Predictor` whose `predict(records)` gives the
task's :class:`Predictions`, through the same encoding, batching and reduction as the run's own test split,
so every backend writes the same predictions table. `tunelab predict` / `eval` and the server call it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import torch
import yaml
from safetensors.torch import load_file

from tunelab.artifacts.model_io import HEAD_WEIGHTS, LoadedRun, load_run
from tunelab.catalog import parse_config
from tunelab.config.schema import RunConfig
from tunelab.data.encoding import CPU_FORWARD_COST_TOKENS, EncodedSplit, iterate_batches
from tunelab.data.records import Record
from tunelab.errors import ModelError, TunelabError
from tunelab.evaluation.thresholds import read_thresholds
from tunelab.inference.exported import EXPORT_META, load_exported_decoder, load_exported_model
from tunelab.inference.generation import generate_split
from tunelab.inference.precision import resolve_precision
from tunelab.inference.predict import encode_split, predict_logits, predict_split
from tunelab.tasks.base import Predictions, Task
from tunelab.tasks.registry import get_task

__all__ = ["Predictor", "Backend", "load_predictor", "predictor_of", "is_export_dir", "EXPORT_META"]

Backend = Literal["pytorch", "onnx", "torchscript", "merged"]
_DEVICE = torch.device("cpu")


@dataclass
class Predictor:
    """A loaded model with what it needs to read, encode and label inputs. `run` is the PyTorch run for a
    run directory (generative runs generate through it), None for an export."""

    config: RunConfig
    task: Task
    model: Any                  # a TaskModel, or an ExportedModel with the same call signature
    tokenizer: Any              # the task's preprocessor (tokenizer, image preprocessor)
    label_names: list[str]
    source: Path
    backend: Backend
    run: Optional[LoadedRun] = None
    meta: Optional[dict[str, Any]] = None   # export.json of an export directory
    thresholds: Optional[dict[str, float]] = None  # thresholds.json: tuned decisions (evaluation/thresholds.py)

    def encode(self, records: list[Record], *, with_targets: bool = False) -> EncodedSplit:
        return encode_split(records, self.tokenizer, self.config.data.max_length, self.task, self.label_names,
                            with_targets=with_targets)

    def predict(self, records: list[Record]) -> Predictions:
        """The task's predictions for `records` (text, image or prompt records, as the task reads them)."""
        if self.task.generative:
            texts, _ = self.generate(records)
            return Predictions(values=texts, scores=None, raw=texts)
        return self.predict_split(self.encode(records))

    def predict_split(self, split: EncodedSplit) -> Predictions:
        predictions, _ = predict_split(self.model, split, self.task, self.label_names, device=_DEVICE,
                                       batch_size=self.config.train.evaluation_batch_size, pad_id=self.pad_id,
                                       precision=self.precision)
        if self.thresholds:
            return self.task.with_thresholds(predictions, self.thresholds, self.label_names)
        return predictions

    def logits(self, records: list[Record]) -> torch.Tensor:
        """`(N, C)` raw outputs for `records`, in their order: no softmax, no thresholds (what a student distils
        from), through the same encoding, batching and precision as `predict`. Per-example tasks only."""
        split = self.encode(records)
        batches = iterate_batches(split, self.config.train.evaluation_batch_size, pad_id=self.pad_id, shuffle=False,
                                  forward_cost_tokens=CPU_FORWARD_COST_TOKENS)
        outputs, _ = predict_logits(self.model, batches, len(split), _DEVICE, self.precision)
        if not isinstance(outputs, torch.Tensor):
            raise TunelabError(f"{self.source}: a {self.task.name} model has per-token outputs, not one row per example")
        return outputs

    @property
    def precision(self) -> str:
        """A run predicts in the precision its test split was scored in (bf16 autocast for a run trained in
        bf16, where this CPU computes bf16 natively: on an AMX CPU a MiniLM forward of 32 x 32 tokens takes
        31 ms instead of 106 in fp32); an export runs in fp32, as its parity check ran it."""
        if self.run is None:
            return "fp32"
        return resolve_precision(_DEVICE, self.config.train.precision)[0]

    def generate(self, records: list[Record], max_new_tokens: Optional[int] = None) -> tuple[list[str], list[bool]]:
        """Greedy replies of a generative run, or of its export, to the records' prompts."""
        if not self.task.generative:
            raise TunelabError(f"{self.source}: a {self.task.name} model does not generate text")
        split = self.encode(records)
        return generate_split(self.task, self.model, split, self.tokenizer, self.config, _DEVICE, max_new_tokens,
                              autocast=self.run is not None)  # an export runs as it was checked: fp32

    @property
    def pad_id(self) -> int:
        return getattr(self.tokenizer, "pad_token_id", None) or 0


def predictor_of(run: LoadedRun, source: Path | str = "") -> Predictor:
    """A Predictor over an already loaded run (e.g. one of several adapters sharing a base)."""
    return Predictor(config=run.config, task=get_task(run.config.task), model=run.model, tokenizer=run.tokenizer,
                     label_names=run.label_names, source=Path(source), backend="pytorch", run=run,
                     thresholds=read_thresholds(Path(source)) if source else None)


def is_export_dir(path: Path) -> bool:
    return (Path(path) / EXPORT_META).is_file()


def load_predictor(path: Path | str, *, threads: int = 0, head: Optional[str] = None) -> Predictor:
    """A run directory (`tunelab train`) or an export directory (`tunelab export`); `threads`: onnxruntime's
    intra-op threads (0: its default); `head`: the head of a multi-task run to predict with."""
    path = Path(path)
    if not is_export_dir(path):
        return predictor_of(load_run(path, head), path)
    if head is not None:
        raise TunelabError(f"--head {head}: {path} is an export directory (one head); --head picks a head of a "
                           "multi-task run directory")
    meta = json.loads((path / EXPORT_META).read_text(encoding="utf-8"))
    for name in ("config.yaml", "labels.json"):
        if not (path / name).is_file():
            raise TunelabError(f"{path}: an export directory without {name}; export the run again with tunelab export")
    config = parse_config(yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")), source=str(path / "config.yaml"))
    labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))["labels"]
    task = get_task(config.task)
    backend = meta.get("format")
    if backend == "merged":
        model = _merged_model(path, config, task, labels)
    elif backend in ("onnx", "torchscript") and task.generative:
        if "decoder" not in meta:
            raise TunelabError(f"{path}/{EXPORT_META}: a generative export without its `decoder` layout; export the "
                               "run again with this tunelab")
        model = load_exported_decoder(path, backend, meta["decoder"], threads)
    elif backend in ("onnx", "torchscript"):
        model = load_exported_model(path, backend, task.takes_images, threads)
    else:
        raise TunelabError(f"{path}/{EXPORT_META}: format {backend!r} is not known to this tunelab; upgrade tunelab")
    return Predictor(config=config, task=task, model=model, tokenizer=task.load_preprocessor(path, config),
                     label_names=labels, source=path, backend=backend, meta=meta, thresholds=read_thresholds(path))


def _merged_model(path: Path, config: RunConfig, task: Task, labels: list[str]) -> Any:
    model = task.build_model(config.model, config.head, labels, path)
    if model.head is not None:
        if not (path / HEAD_WEIGHTS).is_file():
            raise ModelError(f"{path}: {HEAD_WEIGHTS} is missing; the trained head cannot be restored")
        model.head.load_state_dict(load_file(str(path / HEAD_WEIGHTS)))
    return model.eval()
