"""`tunelab export RUN_DIR --format onnx|torchscript|merged [--quantize int8] --out DIR`.

The export is built in a hidden sibling of DIR, run there in its own runtime (onnxruntime, `torch.jit.load`)
on the run's test split and compared with the PyTorch run (export/parity.py); only an export that passes is
renamed to DIR, so a failed check leaves nothing. DIR holds the model file, the tokenizer (or image
preprocessor), `labels.json`, the run's `config.yaml` (how to read and encode inputs) and `export.json`
(format, opset, parity figures, the source run's hashes, package versions): `tunelab predict DIR` reads it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Optional

from tunelab.artifacts.model_io import LoadedRun, load_run
from tunelab.atomic import atomic_dir, atomic_write_json, sweep_leftovers
from tunelab.errors import ModelError, TunelabError
from tunelab.evaluation.thresholds import THRESHOLDS_FILE
from tunelab.export import graph
from tunelab.export.decoder import DecoderSpec
from tunelab.export.decoder_parity import measure_decoder_parity
from tunelab.export.merge import export_merged
from tunelab.export.parity import FP32_ATOL, INT8_AGREEMENT, check_parity, measure_parity, parity_data
from tunelab.inference.exported import (EXPORT_META, MODEL_FILES, load_exported_decoder, load_exported_model,
                                        text_or_image_inputs)
from tunelab.optional import require
from tunelab.tasks.base import Task
from tunelab.tasks.registry import get_task

__all__ = ["export_run", "ExportFormat", "EXPORT_FORMATS", "EXPORT_META", "write_companions"]

ExportFormat = Literal["onnx", "torchscript", "merged"]
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript", "merged")
_VERSIONS = ("tunelab", "torch", "transformers", "onnx", "onnxscript", "onnxruntime")
PARITY_PROMPTS = 32   # test prompts a decoder's parity check decodes (each up to decoder_parity.PARITY_NEW_TOKENS)


def export_run(run_dir: Path, out_dir: Path, *, format: ExportFormat, quantize: Optional[str] = None,
               sample: int = 256) -> dict[str, Any]:
    """Export, check parity, write DIR; returns what export.json holds."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    what = f"export --format {format}" + (f" --quantize {quantize}" if quantize else "")
    _check_request(format, quantize, out_dir, what)
    if format == "merged":
        return _export_merged(run_dir, out_dir)
    reference = load_run(run_dir)
    task = get_task(reference.config.task)
    if task.needs_reference:
        raise TunelabError(f"{what}: a {task.name} run scores pairs of replies against its reference, which a graph "
                           "does not hold; its model is a causal LM: export --merge folds a LoRA / IA3 adapter into a "
                           "plain Hugging Face directory (a full run's model/ is one already)")
    model, adapter = graph.graph_model(run_dir, task)
    sig = graph.signature(reference, task, model)
    data = parity_data(reference, task, PARITY_PROMPTS if task.generative else sample)
    sweep_leftovers(out_dir.parent, out_dir.name)  # what a killed export to this folder left
    with atomic_dir(out_dir, replace=False) as staging:  # refuses a DIR filled meanwhile
        opset = _write_graph(model, sig, staging, format, quantize)
        figures = _parity(reference, task, sig, staging, format, data)
        check_parity(figures, int8=quantize is not None, what=what)
        write_companions(staging, run_dir, reference)
        meta = _meta(format, quantize, opset, adapter, task, sig, figures, run_dir)
        atomic_write_json(staging / EXPORT_META, meta)
    return meta


def _parity(reference: LoadedRun, task: Task, sig: graph.Signature, staging: Path, format: str,
            data: Any) -> dict[str, Any]:
    """The staged model in its own runtime against the PyTorch run (export/parity.py, export/decoder_parity.py)."""
    if sig.decoder is not None:
        exported = load_exported_decoder(staging, format, sig.decoder)
        return measure_decoder_parity(reference, exported, DecoderSpec(**sig.decoder), data, task)
    exported_model = load_exported_model(staging, format, task.takes_images)
    return measure_parity(reference.model, exported_model, data, reference, task)


def _check_request(format: str, quantize: Optional[str], out_dir: Path, what: str) -> None:
    if format not in EXPORT_FORMATS:
        raise TunelabError(f"export --format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if quantize is not None and (quantize != "int8" or format != "onnx"):
        raise TunelabError(f"{what}: --quantize int8 is offered for --format onnx only (dynamic int8 with onnxruntime)")
    if format == "onnx":
        require(what, "onnx", "onnxscript", "onnxruntime", error=ModelError)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise TunelabError(f"export --out: {out_dir} exists and is not empty; choose a new folder")


def _write_graph(model: Any, sig: graph.Signature, staging: Path, format: str, quantize: Optional[str]) -> Optional[int]:
    """The model file in `staging`; the ONNX opset (None for TorchScript)."""
    target = staging / MODEL_FILES[format]
    if format == "torchscript":
        graph.to_torchscript(model, sig.inputs, target)
        return None
    fp32 = staging / "model.fp32.onnx" if quantize else target
    graph.to_onnx(model, sig, fp32)
    if quantize:
        graph.quantize_int8(fp32, target)
        fp32.unlink()
    return graph.onnx_opset(target)


def write_companions(staging: Path, run_dir: Path, run: LoadedRun) -> None:
    """What a predictor needs beside the model file: tokenizer / preprocessor, labels and the run's config."""
    run.tokenizer.save_pretrained(staging)
    for name in ("labels.json", "config.yaml"):
        shutil.copyfile(run_dir / name, staging / name)
    if (run_dir / THRESHOLDS_FILE).is_file():  # tuned decisions travel with the model
        shutil.copyfile(run_dir / THRESHOLDS_FILE, staging / THRESHOLDS_FILE)


def _meta(format: str, quantize: Optional[str], opset: Optional[int], adapter: str, task: Task,
          sig: Optional[graph.Signature], figures: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """export.json; `sig` None: a merged export, a plain Hugging Face directory with the task's usual inputs."""
    tolerance = ({"decision_agreement_min": INT8_AGREEMENT} if quantize else {"max_abs_logit_diff": FP32_ATOL})
    if sig is None:
        inputs, outputs, axes = list(text_or_image_inputs(task.takes_images)), ["logits"], graph.dynamic_axes(task.takes_images)
    elif sig.decoder is None:
        inputs, outputs, axes = sig.input_names, sig.output_names, sig.axes
    else:
        inputs, outputs, axes = ["input_ids", "attention_mask", "past.*"], ["logits", "present.*"], sig.axes
    meta = {"format_version": 1, "format": format, "quantize": quantize, "opset": opset,
            "model_file": MODEL_FILES.get(format), "task": task.name, "inputs": inputs, "outputs": outputs,
            "dynamic_axes": axes, "adapter": adapter,
            "parity": {**figures, "tolerance": tolerance, "passed": True},
            "source_run": source_run(run_dir), "versions": {name: _version(name) for name in _VERSIONS},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if sig is not None and sig.decoder is not None:  # how a decoding loop calls the graph (inference/exported.py reads it)
        meta["decoder"] = {**sig.decoder, "cache": "past.<layer>.key/value in, present.<layer>.key/value out",
                           "logits": "last position only", "first_cache": "one slot per layer, masked (mask 0)"}
    return meta


def source_run(run_dir: Path) -> dict[str, Any]:
    """The run an export came from: its path, manifest hashes (data, base model) and the manifest's own sha256."""
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    return {"path": str(run_dir.resolve()), "strategy": _strategy(run_dir),
            "manifest_sha256": hashlib.sha256(manifest_path.read_bytes()).hexdigest() if manifest else None,
            "data_sha256": manifest.get("data_sha256"), "base_model": manifest.get("base_model"),
            "base_model_sha256": manifest.get("base_model_sha256")}


def _strategy(run_dir: Path) -> Optional[str]:
    import yaml

    raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    strategy = raw.get("strategy")
    return strategy.get("name") if isinstance(strategy, dict) else strategy


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _export_merged(run_dir: Path, out_dir: Path) -> dict[str, Any]:
    """`--format merged` (alias `--merge`): export/merge.py's plain Hugging Face directory, plus labels, config and
    export.json, so `tunelab predict DIR` reads it too."""
    written: list[dict[str, Any]] = []

    def extras(staging: Path, run: LoadedRun, diff: float) -> None:
        write_companions(staging, run_dir, run)
        figures = {"data": "probe inputs", "examples": 4, "max_abs_logit_diff": diff}
        written.append(_meta("merged", None, None, f"merged ({run.config.strategy.name})", get_task(run.config.task),
                             None, figures, run_dir))
        atomic_write_json(staging / EXPORT_META, written[-1])

    export_merged(run_dir, out_dir, extra=extras)
    return written[-1]
