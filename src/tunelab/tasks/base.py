"""What a task must provide: how to read and encode examples, build its model, compute its loss, turn
outputs into predictions, and which metrics apply.

Tasks never touch a backbone's internals: they get outputs (`(B, C)` per example, or per token) and
return losses, predictions and metric dicts, so every strategy works with every task. The sequence
tasks (classification, multilabel, regression) share :class:`SequenceTask`'s defaults; a task with
other inputs (token tags, images, prompts) overrides `read`, `encode` and `build_model`.

Importing a task imports no torch (nor numpy): validating a config asks the task for its rules, names and
metrics only, and must not cost a PyTorch import. A task's methods import what they compute with (torch,
the data encoding, the metrics, the models) inside themselves; its loss modules live in `tasks/losses.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional, Protocol, Union

from tunelab.config.schema import DataConfig, GenerationConfig, HeadConfig, LossConfig, ModelConfig, RunConfig
from tunelab.data.records import LabelKind, Record
from tunelab.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from tunelab.data.encoding import Batch, EncodedSplit
    from tunelab.models.task_model import TaskModel

__all__ = ["Task", "TaskBase", "Predictions", "Outputs", "SequenceTask", "NativeModel"]

# a 2-D output `(N, C)` for per-example tasks; a list of `(T_i, C)` (padding removed) for per-token tasks
Outputs = Union["torch.Tensor", list["torch.Tensor"]]
# the Hugging Face auto class a `head: native` model is built with
NativeModel = Literal["sequence", "token"]


@dataclass
class Predictions:
    """Model outputs turned into what a user reads: one prediction and its scores per example."""

    values: list[Any]                    # class name, tuple of class names, float, or tuple of word tags
    scores: Optional[np.ndarray]         # (N, C) probabilities, (N, 1) regression values; None for tag sequences
    raw: Any = field(repr=False)         # integer ids / 0-1 matrix / floats / tag-id lists, for metrics


class Task(Protocol):
    """Everything a caller may ask of a task. Callers use these names only (no `getattr` probing): a new
    task is one file that provides them (mostly by subclassing :class:`TaskBase`) plus one registry line."""

    name: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    hf_problem_type: ClassVar[str]
    default_metric: ClassVar[str]
    supports_cache: ClassVar[bool]  # False: the activation cache is not offered (the run says so)
    label_kind: ClassVar[LabelKind]  # what the data layer parses, maps and stratifies by
    generative: ClassVar[bool]       # writes text: the test split is also scored by generation
    peft_task_type: ClassVar[str]    # peft's task_type when a native-head adapter is saved in peft's format
    takes_images: ClassVar[bool]     # reads images, not text: data.image_size / data.augment apply
    saves_backbone: ClassVar[bool]   # continued pre-training: model/ is a plain backbone (PEFT updates merged)
    soft_targets: ClassVar[Optional[str]]  # strategy.distill: "softmax" / "sigmoid" of the logits; None: refused
    needs_reference: ClassVar[bool]  # targets hold the base model's outputs, computed by the run before training

    def check_config(self, config: "RunConfig") -> list[str]: ...

    def num_outputs(self, label_names: list[str]) -> int: ...

    def read(self, path: str | Path, config: DataConfig, *, require_labels: bool = True) -> list[Record]: ...

    def load_preprocessor(self, model_dir: Path, config: "RunConfig") -> Any: ...

    def encode(self, records: list[Record], tokenizer: Any, max_length: int, label_names: list[str], *,
               with_targets: bool = True, train: bool = False) -> EncodedSplit: ...

    def settle_head(self, head: HeadConfig, strategy: str, model_dir: Path) -> HeadConfig: ...

    def build_model(self, model_cfg: ModelConfig, head_cfg: HeadConfig, label_names: list[str],
                    model_dir: Optional[Path] = None) -> "TaskModel": ...

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> torch.nn.Module: ...

    def reduce_outputs(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor: ...

    def predict(self, outputs: Outputs, label_names: list[str], split: EncodedSplit) -> Predictions: ...

    def metrics(self, split: EncodedSplit, predictions: Predictions, label_names: list[str]) -> dict[str, Any]: ...

    def score_columns(self, label_names: list[str]) -> list[str]: ...

    def generate(self, model: "TaskModel", split: EncodedSplit, tokenizer: Any, config: GenerationConfig, *,
                 device: torch.device, batch_size: int, autocast: Any = None) -> tuple[list[str], list[bool]]: ...

    def generation_metrics(self, records: list[Record], texts: list[str], stopped: list[bool]) -> dict[str, float]: ...

    def show(self, value: Any) -> str: ...


_FOCAL_TASKS = ("classification", "image_classification", "multilabel")  # loss.name: focal


class TaskBase:
    """Defaults of the Task protocol for a task that classifies or scores (not generative): class
    probabilities as score columns, outputs kept as the model returns them, and the config rules every task
    shares. A task overrides what differs, and widens `check_config` with its own rules."""

    generative: ClassVar[bool] = False
    peft_task_type: ClassVar[str] = "SEQ_CLS"
    takes_label_smoothing: ClassVar[bool] = False
    takes_class_weights: ClassVar[bool] = True
    takes_images: ClassVar[bool] = False   # data.image_size / data.augment / model.pretrained: false apply
    takes_thresholds: ClassVar[bool] = False  # thresholds.tune: tune_thresholds / with_thresholds
    saves_backbone: ClassVar[bool] = False
    soft_targets: ClassVar[Optional[str]] = None  # strategy.distill: how logits become the teacher's soft targets
    needs_reference: ClassVar[bool] = False  # preference: the reference's log-probs (orchestration/preference.py)
    name: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]

    def settle_head(self, head: HeadConfig, strategy: str, model_dir: Path) -> HeadConfig:
        """`head` with nothing left on `auto`: the native head, mean pooling, no normalisation; a task whose
        head pools a sequence widens it (SequenceTask). Settled heads come back unchanged."""
        return head.with_defaults()

    def check_config(self, config: "RunConfig") -> list[str]:
        """Rules that need to know the task; each line names its key and the fix."""
        errors = []
        metric = config.early_stopping.metric
        if metric is not None and metric not in self.metric_names and metric != "loss":
            errors.append(f"early_stopping.metric {metric!r} is not computed for task {self.name}; "
                          f"choose one of: loss, {', '.join(self.metric_names)}")
        if not self.takes_label_smoothing and config.loss.label_smoothing > 0:
            errors.append("loss.label_smoothing applies to tasks classification and preference (conservative DPO) only")
        if not self.takes_class_weights and config.loss.class_weights != "none":
            errors.append(f"loss.class_weights has no meaning for task {self.name}")
        return errors + self._imbalance_problems(config) + self._image_problems(config)

    def _imbalance_problems(self, config: "RunConfig") -> list[str]:
        """focal loss and class-balanced sampling: where a task's targets have classes to balance."""
        errors, loss = [], config.loss
        if loss.name == "focal" and self.name not in _FOCAL_TASKS:
            errors.append(f"loss.name: focal applies to tasks {', '.join(_FOCAL_TASKS)}, not {self.name}")
        if loss.name == "focal" and loss.label_smoothing > 0:
            errors.append("loss.label_smoothing: not with loss.name: focal (choose one)")
        if loss.focal_alpha is not None and not (loss.name == "focal" and self.name == "multilabel"):
            errors.append("loss.focal_alpha: multilabel focal loss only; single-label classes take loss.class_weights")
        if config.thresholds.tune and not self.takes_thresholds:
            errors.append(f"thresholds.tune: binary classification and multilabel only, not task {self.name}")
        if config.data.sampler != "none" and self.label_kind != "class":
            errors.append(f"data.sampler: {config.data.sampler} draws by class, and task {self.name} has no single "
                          "class per example; use loss.class_weights")
        return errors

    def _image_problems(self, config: "RunConfig") -> list[str]:
        errors = []
        if not self.takes_images and (config.data.image_size is not None or config.data.augment.enabled):
            errors.append(f"data.image_size / data.augment.enabled apply to task image_classification, not "
                          f"{self.name}; remove them")
        if config.data.augment.text_enabled and (self.takes_images or getattr(self, "per_token", True)):
            errors.append("data.augment.token_dropout / swap / span_mask apply to text classification, multilabel and "
                          f"regression, not task {self.name} (they would move tokens away from their targets); "
                          "remove them")
        if self.takes_images and config.model.num_blocks is not None:
            errors.append("model.num_blocks: keeps the first blocks of a transformer (text models); an image model's "
                          "blocks change width, so its head would not fit; remove it or choose a smaller image model")
        if not self.takes_images and not config.model.pretrained:
            errors.append("model.pretrained: false (random initialisation) is implemented for image models only; "
                          "remove it or use task image_classification")
        return errors

    def reduce_outputs(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-batch outputs as kept for prediction: unchanged unless a task's are too large to keep."""
        return outputs

    def score_columns(self, label_names: list[str]) -> list[str]:
        """Names of the columns of `Predictions.scores` in a predictions table (one probability per class)."""
        return [f"prob_{name}" for name in label_names]

    def generate(self, model: "TaskModel", split: EncodedSplit, tokenizer: Any, config: GenerationConfig, *,
                 device: torch.device, batch_size: int, autocast: Any = None) -> tuple[list[str], list[bool]]:
        raise ConfigError(f"task: {self.name} does not generate text; generation is for task instruction_tuning")

    def generation_metrics(self, records: list[Record], texts: list[str], stopped: list[bool]) -> dict[str, float]:
        raise ConfigError(f"task: {self.name} does not generate text; generation is for task instruction_tuning")

    def show(self, value: Any) -> str:
        """How a label or prediction reads in a CSV cell."""
        return "|".join(value) if isinstance(value, tuple) else str(value)



class SequenceTask(TaskBase):
    """Defaults for tasks with one text in and one label out: tabular readers, plain tokenisation,
    `AutoModelForSequenceClassification` for the native head, a pooled head otherwise."""

    supports_cache: ClassVar[bool] = True
    native_model: ClassVar[NativeModel] = "sequence"
    per_token: ClassVar[bool] = False
    hf_problem_type: ClassVar[str]

    def num_outputs(self, label_names: list[str]) -> int:
        return len(label_names)

    def settle_head(self, head: HeadConfig, strategy: str, model_dir: Path) -> HeadConfig:
        """Feature extraction (`strategy: head`, the backbone frozen) on a backbone that declares its pooling
        reads the features as they were trained to be read: `auto` becomes a linear head over that pooling and
        normalisation (all-MiniLM: L2-normalised mean, about 2 points of BBC News accuracy over the native
        pooler on [CLS]). Fine-tuning, and a per-token task (nothing pools), keep the native head, which loads
        with transformers alone."""
        from tunelab.models.pooling import declared_pooling

        declared = declared_pooling(model_dir) if "auto" in (head.type, head.pooling) or head.normalize is None \
            else None
        if declared is not None and not self.per_token and (head.type != "auto" or strategy == "head"):
            head = head.model_copy(update={
                "type": "linear" if head.type == "auto" else head.type,
                "pooling": declared.pooling if head.pooling == "auto" else head.pooling,
                "normalize": declared.normalize if head.normalize is None else head.normalize})
        return super().settle_head(head, strategy, model_dir)

    def targets(self, records: list[Record], label_names: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def read(self, path: str | Path, config: DataConfig, *, require_labels: bool = True) -> list[Record]:
        from tunelab.data.readers import read_records

        return read_records(path, text_column=config.text_column, label_column=config.label_column,
                            label_kind=self.label_kind, label_delimiter=config.label_delimiter,
                            require_labels=require_labels)

    def load_preprocessor(self, model_dir: Path, config: "RunConfig") -> Any:
        """The tokenizer (text) or image preprocessor saved with the model; `encode` receives it."""
        from tunelab.models.loading import load_tokenizer

        return load_tokenizer(model_dir, config.model.trust_remote_code)

    def encode(self, records: list[Record], tokenizer: Any, max_length: int, label_names: list[str], *,
               with_targets: bool = True, train: bool = False) -> EncodedSplit:
        from tunelab.data.encoding import EncodedSplit, encode_texts

        ids = encode_texts([r.text for r in records], tokenizer, max_length) if records else []
        targets = self.targets(records, label_names) if with_targets and records else None
        return EncodedSplit(input_ids=ids, targets=targets, records=records)

    def build_model(self, model_cfg: ModelConfig, head_cfg: HeadConfig, label_names: list[str],
                    model_dir: Optional[Path] = None) -> "TaskModel":
        from tunelab.models.loading import build_task_model, resolve_model_dir

        model_dir = model_dir or resolve_model_dir(model_cfg.name)
        # a run's head is settled for its strategy already (Prepared); a direct caller's `auto` gets the defaults
        head_cfg = self.settle_head(head_cfg, "", model_dir)
        return build_task_model(model_cfg, head_cfg, problem_type=self.hf_problem_type, label_names=label_names,
                                num_outputs=self.num_outputs(label_names), model_dir=model_dir,
                                native=self.native_model, per_token=self.per_token)

    def build_head(self, head_cfg: HeadConfig, label_names: list[str], hidden: int) -> "torch.nn.Module":
        """A fresh tunelab head of this task over a backbone's `hidden`-wide states: what `build_model` puts on
        the backbone, built alone (another task's head on a shared backbone, tasks/multitask.py)."""
        from tunelab.models.loading import build_head

        return build_head(head_cfg.with_defaults(), hidden, self.num_outputs(label_names), per_token=self.per_token)
