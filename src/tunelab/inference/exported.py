"""Exported models (ONNX, TorchScript) run in their own runtime behind the call signature of a TaskModel.

`predict_logits` calls a model as `model(**batch.inputs)` and reads a tensor back; an :class:`ExportedModel`
does the same with an onnxruntime `InferenceSession` or a `torch.jit` module, so an export directory predicts
through the very code a run directory does (same batches, same task reduction, same predictions table), and
export's parity check compares the two runtimes on equal footing.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import torch

from tunelab.errors import ModelError
from tunelab.optional import require

__all__ = ["ExportedModel", "ExportedDecoder", "GraphFormat", "MODEL_FILES", "EXPORT_META", "load_exported_model",
           "load_exported_decoder", "text_or_image_inputs"]

GraphFormat = Literal["onnx", "torchscript"]
# the model file of each graph format inside an export directory
MODEL_FILES: dict[str, str] = {"onnx": "model.onnx", "torchscript": "model.pt"}
# what marks an export directory (format, parity, source run): written by export, read by serving
EXPORT_META = "export.json"


def text_or_image_inputs(takes_images: bool) -> tuple[str, ...]:
    """The graph's input names, in the order the traced module takes them."""
    return ("pixel_values",) if takes_images else ("input_ids", "attention_mask")


class ExportedModel:
    """A model file run by its own runtime: `model(input_ids=..., attention_mask=...)` or
    `model(pixel_values=...)` -> logits tensor `(B, C)` or `(B, T, C)` (float32, CPU)."""

    def __init__(self, path: Path, kind: GraphFormat, input_names: Sequence[str], threads: int = 0) -> None:
        self.path, self.kind, self.input_names = Path(path), kind, tuple(input_names)
        self._session = _open_session(self.path, kind, threads)

    def eval(self) -> "ExportedModel":
        return self

    def to(self, device: Any) -> "ExportedModel":
        return self

    def __call__(self, *args: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, args)) | {k: v for k, v in inputs.items() if k in self.input_names}
        missing = [n for n in self.input_names if n not in named]
        if missing:
            raise ModelError(f"{self.path}: the exported model needs inputs {list(self.input_names)}; missing {missing}")
        if self.kind == "onnx":
            feed = {name: named[name].cpu().numpy() for name in self.input_names}
            return torch.from_numpy(self._session.run(None, feed)[0])
        with torch.no_grad():
            return self._session(*(named[name] for name in self.input_names)).float()


def _open_session(path: Path, kind: GraphFormat, threads: int) -> Any:
    """An onnxruntime `InferenceSession` (CPU) or a loaded `torch.jit` module."""
    if kind == "onnx":
        require(f"export {path.name}", "onnxruntime", error=ModelError)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():  # torch.jit is deprecated; the CLI says so once, at export
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


class ExportedDecoder:
    """An exported decoder LM (export/decoder.py's one-step graph) in its own runtime, behind the part of a
    causal-LM TaskModel that generation uses: `model.network.generate(input_ids=, attention_mask=,
    max_new_tokens=, eos_token_id=, pad_token_id=)` returns `(B, T + n)` ids, greedy, as transformers' does."""

    def __init__(self, path: Path, kind: GraphFormat, spec: dict[str, int], threads: int = 0) -> None:
        self.path, self.kind = Path(path), kind
        self.layers, self.kv_heads, self.head_dim = int(spec["layers"]), int(spec["kv_heads"]), int(spec["head_dim"])
        self._session = _open_session(self.path, kind, threads)
        cache = [f"past.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]
        self.input_names = ("input_ids", "attention_mask", *cache)
        self.network = self

    def eval(self) -> "ExportedDecoder":
        return self

    def to(self, device: Any) -> "ExportedDecoder":
        return self

    def step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             cache: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One call of the graph: the last position's logits and the grown cache."""
        inputs = (input_ids, attention_mask, *cache)
        if self.kind == "onnx":
            outputs = self._session.run(None, {n: t.cpu().numpy() for n, t in zip(self.input_names, inputs)})
            outputs = [torch.from_numpy(o) for o in outputs]
        else:
            with torch.no_grad():
                outputs = list(self._session(*inputs))
        return outputs[0].float(), outputs[1:]

    def generate(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                 eos_token_id: Sequence[int] | int, pad_token_id: int, **_: Any) -> torch.Tensor:
        from tunelab.inference.decoding import empty_cache, greedy_generate

        stops = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        cache = empty_cache(input_ids.shape[0], self.layers, self.kv_heads, self.head_dim)
        return greedy_generate(self.step, input_ids.cpu(), attention_mask.cpu(), cache, max_new_tokens=max_new_tokens,
                               stop_ids=stops, pad_id=pad_token_id)

    def __call__(self, *args: Any, **inputs: Any) -> torch.Tensor:
        raise ModelError(f"{self.path}: an exported decoder computes next-token logits for generation only; "
                         "teacher-forced scores (perplexity) need the run directory")


def load_exported_decoder(export_dir: Path, kind: GraphFormat, spec: dict[str, int], threads: int = 0) -> ExportedDecoder:
    """The one-step decoder graph of an export directory, in its runtime (`spec`: export.json's `decoder`)."""
    path = Path(export_dir) / MODEL_FILES[kind]
    if not path.is_file():
        raise ModelError(f"{export_dir}: {MODEL_FILES[kind]} is missing; export the run again with tunelab export")
    return ExportedDecoder(path, kind, spec, threads)


def load_exported_model(export_dir: Path, kind: GraphFormat, takes_images: bool, threads: int = 0) -> ExportedModel:
    """The model file of an export directory, in its runtime."""
    path = Path(export_dir) / MODEL_FILES[kind]
    if not path.is_file():
        raise ModelError(f"{export_dir}: {MODEL_FILES[kind]} is missing; export the run again with tunelab export")
    return ExportedModel(path, kind, text_or_image_inputs(takes_images), threads)
