"""What the server serves: named models behind one small interface, whatever they were loaded from.

A `ServedModel` predicts and generates for a list of records and describes itself (`ModelInfo`). Today's
implementation is `RunModel`: a run directory loaded with `load_run` (or an adapter sharing one base through
`load_adapters`), predicting through `serving/predict.py`, so the server gives exactly what `tunelab predict`
gives. An exported model (ONNX / TorchScript) plugs in as another class with the same three members.
Nothing here knows about HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

from tunelab.data.chat import instruction_record
from tunelab.data.labels import missing_label
from tunelab.data.records import Record
from tunelab.errors import TunelabError
from tunelab.tasks.base import Predictions
from tunelab.tasks.registry import get_task

__all__ = ["ModelInfo", "ServedModel", "RunModel", "ExportModel", "check_servable", "load_models", "text_records",
           "keep_cast_weights"]


@dataclass(frozen=True)
class ModelInfo:
    """What `GET /v1/models` shows of one served model."""

    name: str
    task: str
    labels: list[str]
    base: str                      # the base model (path or built-in name) the run was trained from
    kind: str                      # "run" or "adapter" (later: "onnx", "torchscript")
    source: str                    # the run (or export) directory
    versions: dict[str, Any] = field(default_factory=dict)  # created, tunelab, torch, transformers, base sha256

    @property
    def generative(self) -> bool:
        return get_task(self.task).generative


class ServedModel(Protocol):
    """One servable model. Calls come from one worker thread at a time (never concurrently)."""

    info: ModelInfo

    def predict(self, records: list[Record]) -> Predictions: ...

    def generate(self, records: list[Record], max_new_tokens: Optional[int]) -> tuple[list[str], list[bool]]: ...


class RunModel:
    """A loaded run directory (a full run, or one adapter on a base shared with the others)."""

    def __init__(self, run: Any, info: ModelInfo) -> None:
        self.run, self.info = run, info

    def predict(self, records: list[Record]) -> Predictions:
        from tunelab.serving.predict import predict_records

        return predict_records(self.run, records)

    def generate(self, records: list[Record], max_new_tokens: Optional[int]) -> tuple[list[str], list[bool]]:
        from tunelab.serving.predict import generate_replies

        return generate_replies(self.run, records, max_new_tokens=max_new_tokens)


class ExportModel:
    """An export directory (`tunelab export`: ONNX in onnxruntime, TorchScript, merged), predicting through
    the same `Predictor` as `tunelab predict EXPORT_DIR`."""

    def __init__(self, predictor: Any, info: ModelInfo) -> None:
        self.predictor, self.info = predictor, info

    def predict(self, records: list[Record]) -> Predictions:
        return self.predictor.predict(records)

    def generate(self, records: list[Record], max_new_tokens: Optional[int]) -> tuple[list[str], list[bool]]:
        return self.predictor.generate(records, max_new_tokens)


def keep_cast_weights() -> None:
    """In the thread that runs the models, for its lifetime: autocast keeps the bf16 copies it makes of the
    weights until its outermost region closes, so a region per call (`predict_split`) recast MiniLM's weights
    for every batch: 6 ms of a 1 x 32-token forward of 11 on an AMX CPU. An outer region held open (autocast
    disabled: fp32 runs stay fp32) keeps the copies; served weights never change, so none goes stale."""
    import torch

    torch.autocast("cpu", enabled=False).__enter__()


def text_records(texts: list[str], task_name: str, where: str, system: Optional[str] = None) -> list[Record]:
    """Prediction-input records of raw texts, as `tunelab predict --text` builds them (words split on
    whitespace for token tasks; one user message for generative ones)."""
    task = get_task(task_name)
    if task.generative:
        return [instruction_record(text, "", f"{where} #{i}", system) for i, text in enumerate(texts, start=1)]
    return [Record(text=text, label=missing_label(task.label_kind), where=f"{where} #{i}", words=tuple(text.split()),
                   messages=(("user", text),)) for i, text in enumerate(texts, start=1)]


def check_servable(run_dir: Path, label: str) -> str:
    """The run's task, read from its config.yaml without loading torch or the model; a clear error (starting
    with `label`, e.g. "--adapter news=runs/news") for what the server cannot serve: not a run, an image task."""
    import yaml

    from tunelab.serving.predictor import is_export_dir

    config = run_dir / "config.yaml"
    if not config.is_file() or not ((run_dir / "model").is_dir() or is_export_dir(run_dir)):
        raise TunelabError(f"{label}: not a tunelab run or export directory (no config.yaml, or neither model/ "
                           "nor export.json); give the folder `tunelab train` or `tunelab export` wrote")
    task = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("task", "classification")
    if get_task(task).takes_images:
        raise TunelabError(f"{label}: a {task} run; the server takes text inputs only, "
                           "so serve a text run (use `tunelab predict --input` for images)")
    if get_task(task).needs_reference:
        raise TunelabError(f"{label}: a {task} run scores pairs of replies, and the server takes single texts; "
                           "use `tunelab predict --input PAIRS.jsonl`, or serve the causal LM (export --merge)")
    return task


def load_models(run_dir: Optional[Path], adapters: dict[str, Path], *,
                threads: Optional[int] = None) -> dict[str, ServedModel]:
    """{name: model}, the first being the default one: RUN_DIR (named after its folder) then the adapters.
    Adapter runs (RUN_DIR too when it is one) share one base in memory. `threads`: torch's intra-op threads for
    the whole process (default: torch's choice, one per core; on a CPU shared with other work 1 can be faster)."""
    import torch

    from tunelab.artifacts.adapter_io import is_adapter_dir
    from tunelab.artifacts.model_io import load_run
    from tunelab.serving.adapters import load_adapters

    if threads is not None:
        torch.set_num_threads(threads)
    named = dict(adapters)
    if run_dir is not None:
        if run_dir.name in named:
            raise TunelabError(f"--adapter {run_dir.name}: the name is taken by RUN_DIR {run_dir}; give the adapter "
                               "another name")
        named = {run_dir.name: run_dir, **named}
    from tunelab.serving.predictor import is_export_dir, load_predictor

    shared = {name: path for name, path in named.items() if is_adapter_dir(path / "model")}
    loaded = load_adapters(shared) if shared else {}
    models: dict[str, ServedModel] = {}
    for name, path in named.items():
        if is_export_dir(path):
            predictor = load_predictor(path, threads=threads or 0)
            models[name] = ExportModel(predictor, _info(name, path, predictor, predictor.backend))
            continue
        run = loaded[name] if name in loaded else load_run(path)
        models[name] = RunModel(run, _info(name, path, run, "adapter" if name in loaded else "run"))
    return models


def _info(name: str, path: Path, run: Any, kind: str) -> ModelInfo:
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    export_path = path / "export.json"
    if not manifest and export_path.is_file():  # an export names its source run and its versions
        meta = json.loads(export_path.read_text(encoding="utf-8"))
        manifest = {"base_model_sha256": (meta.get("source_run") or {}).get("base_model_sha256"),
                    "packages": meta.get("versions", {})}
    packages = manifest.get("packages", {})
    versions = {"created": manifest.get("created"), "base_sha256": manifest.get("base_model_sha256"),
                **{pkg: packages.get(pkg) for pkg in ("tunelab", "torch", "transformers")}}
    return ModelInfo(name=name, task=run.config.task, labels=list(run.label_names), base=str(run.config.model.name),
                     kind=kind, source=str(path), versions={k: v for k, v in versions.items() if v is not None})
