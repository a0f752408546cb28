"""The typed run configuration: one document describes a whole run.

Every section forbids unknown keys so that a typo (`learning_rate` for `lr`) is an error with a did-you-mean instead
of a silently ignored setting. Cross-field rules within a section live in model validators; rules that need to know a
task or a strategy live with it (`check_config`) and are collected with these by `tunelab.catalog`, so that all
problems are reported together with their key paths. This module imports nothing of tunelab: validating a config
needs no model code.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer,
                      model_validator)

__all__ = ["RunConfig", "ModelConfig", "DataConfig", "HeadConfig", "LossConfig", "StrategyConfig", "OptimConfig",
           "ScheduleConfig", "TrainConfig", "EarlyStoppingConfig", "GenerationConfig", "TrackingConfig", "MlflowConfig",
           "ForgettingConfig", "TaskEntry", "MixingConfig", "PreferenceConfig"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which pre-trained backbone to start from."""

    name: str = Field("minilm", description="Built-in name (minilm) or a local Hugging Face model directory.")
    trust_remote_code: bool = Field(False, description="Run model code shipped with the checkpoint. Never implied.")
    pretrained: bool = Field(True, description="false: the same architecture from random initialisation (image "
                                               "models), the baseline that measures what pre-training brings.")
    init_from: Optional[str] = Field(None, description="An earlier run directory of the same backbone whose "
                                     "embeddings and blocks this run starts from (its head is not used): the next "
                                     "task of a sequence, `tunelab continual`'s step.")
    num_blocks: Optional[int] = Field(None, ge=1, description="Keep only the first N blocks of the backbone's "
                                      "LayerStack (a smaller, faster student, e.g. 3 of MiniLM's 6); the saved model's "
                                      "config says N layers. Default: all.")


class AugmentConfig(_Section):
    """Training-time augmentation, never applied to validation, test or prediction: images (`enabled` and the
    geometry) for image_classification; token dropout, swaps and span masking for text classification,
    multilabel and regression (any of them above 0 turns text augmentation on)."""

    enabled: bool = False
    crop_scale: tuple[float, float] = Field((0.7, 1.0), description="Random resized crop: share of the area kept.")
    hflip: bool = Field(False, description="Random horizontal flip (off by default: wrong for digits and text).")
    rotation: float = Field(10.0, ge=0.0, le=180.0, description="Random rotation within +- this many degrees.")
    token_dropout: float = Field(0.0, ge=0.0, le=0.5, description="text: share of each example's tokens deleted.")
    swap: float = Field(0.0, ge=0.0, le=0.5, description="text: share of tokens swapped with their right neighbour.")
    span_mask: float = Field(0.0, ge=0.0, le=0.5, description="text: share of tokens replaced by the mask token, "
                                                              "in spans of span_length.")
    span_length: int = Field(3, ge=1, le=32, description="text: tokens per masked span.")

    @property
    def text_enabled(self) -> bool:
        return self.token_dropout > 0 or self.swap > 0 or self.span_mask > 0

    @model_validator(mode="after")
    def _scale_range(self) -> "AugmentConfig":
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"data.augment.crop_scale must satisfy 0 < min <= max <= 1, got {list(self.crop_scale)}")
        return self


class DataConfig(_Section):
    """Where examples come from and how they are split and tokenised."""

    builtin: Optional[str] = Field(None, description="A built-in data set (bbc-news) instead of files.")
    train: Optional[str] = None
    validation: Optional[str] = None
    test: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    label_delimiter: Optional[str] = Field(None, description="Multi-label: separator inside a string label.")
    id_column: Optional[str] = Field(None, description="A column of example ids; checked to be unique within each file.")
    validation_split: float = Field(0.1, ge=0.0, lt=1.0, description="Share of train held out when no validation file.")
    test_split: float = Field(0.2, ge=0.0, lt=1.0, description="Share of train held out when no test file.")
    max_length: int = Field(256, ge=8, le=8192, description="Tokens per example after truncation.")
    limit: Optional[int] = Field(None, ge=10, description="Use at most this many examples (stratified), for quick runs.")
    split_seed: Optional[int] = Field(None, description="Seed of the limit / validation / test / fraction draws; "
                                                         "default: train.seed. Fixed by compare, so seeds vary "
                                                         "the training, not the split.")
    train_fraction: float = Field(1.0, gt=0.0, le=1.0, description="Train on this stratified share of the training "
                                                                    "split (nested: 0.1 lies inside 0.3).")
    image_size: Optional[int] = Field(None, ge=16, le=1024, description="image tasks: side of the square input; "
                                                                         "default: the backbone's own (224).")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    sampler: Literal["none", "balanced", "sqrt"] = Field(
        "none", description="Training batches drawn with replacement, each example weighted 1/n of its class "
                            "(balanced) or 1/sqrt(n) (sqrt): an epoch keeps the split's size; deterministic per "
                            "seed and epoch, so resumable. Single-label tasks.")

    @model_validator(mode="after")
    def _one_source(self) -> "DataConfig":
        if self.builtin is None and self.train is None:
            raise ValueError("give either data.train (a CSV/JSONL/Parquet file) or data.builtin (bbc-news)")
        if self.builtin is not None and self.train is not None:
            raise ValueError("data.builtin and data.train are exclusive: keep one of them")
        held_out = (0 if self.validation else self.validation_split) + (0 if self.test else self.test_split)
        if held_out >= 0.9:
            raise ValueError(f"validation_split + test_split hold out {held_out:.2f} of the data; keep it below 0.9")
        return self


class HeadConfig(_Section):
    """The task head on top of the backbone.

    `native` uses the Hugging Face architecture's own sequence-classification head (for BERT: pooler on
    [CLS] + linear), so the saved model loads with AutoModelForSequenceClassification as is. `linear` and
    `mlp` are tunelab heads with a choice of pooling, saved next to the backbone. `auto` (the default) is
    `native`, except for feature extraction (`strategy: head`) on a backbone that says how it was trained to
    pool (a sentence-transformers directory's `modules.json` + `1_Pooling/config.json`): the frozen features
    are then read the way they were trained to be read, a linear head over that pooling (and its
    normalisation). The task settles `auto` once per run; config.yaml records what ran.
    """

    type: Literal["auto", "native", "linear", "mlp"] = "auto"
    pooling: Literal["auto", "cls", "mean"] = Field("auto", description="auto: as the backbone declares, else mean")
    normalize: Optional[bool] = Field(None, description="L2-normalise the pooled features; None: as the backbone declares")

    def with_defaults(self) -> "HeadConfig":
        """Nothing left on `auto`: the native head, mean pooling, no normalisation (what a head settles to when
        the backbone declares nothing; Task.settle_head decides before this)."""
        return self.model_copy(update={"type": "native" if self.type == "auto" else self.type,
                                       "pooling": "mean" if self.pooling == "auto" else self.pooling,
                                       "normalize": bool(self.normalize)})
    hidden_size: int = Field(256, ge=1, description="mlp: width of the hidden layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class LossConfig(_Section):
    name: Literal["cross_entropy", "focal"] = Field(
        "cross_entropy", description="focal: (1 - p_t)^focal_gamma weighs down the examples the model already gets "
                                     "right (Lin et al. 2017), for imbalanced classes: classification, "
                                     "image_classification, multilabel.")
    focal_gamma: float = Field(2.0, ge=0.0, le=10.0, description="focal: 0 is cross-entropy.")
    focal_alpha: Optional[float] = Field(None, gt=0.0, lt=1.0, description="multilabel focal: the weight of a "
                                         "positive (1 - alpha of a negative); single-label: class_weights.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="classification; preference: conservative DPO's "
                                   "share of pairs assumed mislabelled (Mitchell 2023), below 0.5")
    class_weights: Union[Literal["none", "balanced"], dict[str, float]] = Field(
        "none", description="balanced: inverse class frequency; or {label: weight} (unnamed labels weigh 1); "
                            "under focal they are its alpha per class.")
    regression: Literal["mse", "huber"] = "mse"

    @field_validator("class_weights")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if isinstance(value, dict) and any(not w > 0 for w in value.values()):
            raise ValueError("every class weight must be > 0")
        return value


class StrategyConfig(_Section):
    """Which parameters train and at what learning rate; compiled into a Plan."""

    name: str = Field("full", description="A registered strategy: full, head, partial, gradual, ...")
    freeze_blocks: Optional[int] = Field(None, ge=0, description="partial: freeze embeddings and blocks [0, k).")
    freeze_embeddings: bool = Field(True, description="partial: also freeze the embeddings.")
    freeze_patterns: list[str] = Field(default_factory=list, description="partial: glob patterns of parameter names to freeze.")
    unfreeze_every: int = Field(1, ge=1, description="gradual: epochs between unfreezing one more block.")
    layerwise_lr_decay: float = Field(1.0, gt=0.0, le=1.0, description="LR of a block = lr * decay^(distance from the head).")
    head_lr_multiplier: float = Field(1.0, gt=0.0, description="LR of the head = lr * this.")
    # A PEFT method's section (`strategy.lora: {...}`) is declared with the method (strategies/peft/*.py), so it
    # is an extra key here; the catalog validates it with the method's schema and refuses any other extra key.
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    def __getattr__(self, name: str) -> object:
        """A method section that was not given reads as None (`strategy.ia3` under lora), as an optional
        field would; a given one is what the catalog resolved."""
        try:
            return super().__getattr__(name)  # type: ignore[misc]
        except AttributeError:
            if name.startswith("_"):
                raise
            return None


class OptimConfig(_Section):
    lr: float = Field(5e-5, gt=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0, lt=1.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)


class ScheduleConfig(_Section):
    name: Literal["constant", "linear", "cosine", "slanted_triangular"] = "linear"
    warmup_ratio: Optional[float] = Field(None, ge=0.0, lt=1.0)
    warmup_steps: Optional[int] = Field(None, ge=0)
    stlr_ratio: float = Field(32.0, ge=1.0, description="slanted_triangular: how much smaller the lowest LR is.")

    @model_validator(mode="after")
    def _one_warmup(self) -> "ScheduleConfig":
        if self.warmup_ratio is not None and self.warmup_steps is not None:
            raise ValueError("give schedule.warmup_ratio or schedule.warmup_steps, not both")
        return self


class TrainConfig(_Section):
    epochs: int = Field(3, ge=1, le=1000)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: Optional[int] = Field(None, ge=1, description="default: 2 x batch_size")
    grad_accum_steps: int = Field(1, ge=1)
    max_grad_norm: Optional[float] = Field(1.0, gt=0.0, description="null disables clipping")
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast where the device has bf16 units (a GPU with bf16, a CPU with "
                    "AVX512-BF16 or AMX), fp32 elsewhere; bf16 on a CPU without them runs fp32.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: Optional[int] = Field(None, ge=1, description="torch threads; default: the cores available")
    cache: Literal["auto", "off"] = Field(
        "auto", description="auto: compute frozen embeddings + blocks [0, k) once and train the rest from the stored "
                            "activations (same result as recomputing); off: recompute every step.")
    cache_dtype: Literal["fp32", "bf16"] = Field("fp32", description="Storage of cached activations; bf16 halves the disk and I/O.")
    cache_dir: Optional[str] = Field(None, description="Activation cache folder, shared by runs; default "
                                                        "$TUNELAB_CACHE/activations or ~/.cache/tunelab/activations.")
    compile: bool = Field(False, description="torch.compile each block (dynamic shapes); off by default: "
                                              "on CPU the compile time outweighs the gain for short runs.")
    checkpoint_every_steps: Optional[int] = Field(
        None, ge=1, description="also checkpoint every N optimizer steps (a checkpoint is always written at epoch end)")
    keep_checkpoints: int = Field(2, ge=1, description="keep the last K checkpoints, plus the best one")
    max_bad_steps: int = Field(5, ge=1, description="stop after this many consecutive steps with NaN/Inf loss or gradients")
    distributed: Literal["auto", "ddp", "fsdp", "off"] = Field(
        "auto", description="auto / ddp: under torchrun with more than one process, DistributedDataParallel (gloo on "
                            "CPU, nccl on CUDA), batch_size staying the global batch; fsdp: FSDP's FULL_SHARD "
                            "(parameters, gradients and optimizer state sharded; full and PEFT strategies); "
                            "off: every process trains alone.")

    @property
    def evaluation_batch_size(self) -> int:
        """The one default for every pass without gradients (validation, test, prediction, generation,
        serving): twice the training batch, which fits because no activations are kept for backward."""
        return self.eval_batch_size or 2 * self.batch_size


class EarlyStoppingConfig(_Section):
    metric: Optional[str] = Field(None, description="validation metric to select the best epoch; default: the task's "
                                                    "(macro_f1, mse, entity_f1, loss, ...)")
    patience: Optional[int] = Field(None, ge=1, description="epochs without improvement; null: never stop early")
    mode: Literal["auto", "max", "min"] = "auto"
    restore_best: bool = True


class GenerationConfig(_Section):
    """Generation with decoder LMs (task instruction_tuning): test-split scoring and `tunelab generate`."""

    max_new_tokens: int = Field(48, ge=1, le=4096, description="Greedy decoding stops here if no end-of-turn came.")
    compare_base: bool = Field(True, description="Also score the model before training on the test split "
                                                 "(base_exact_match, base_rouge_l): what fine-tuning changed.")


class PreferenceConfig(_Section):
    """Preference tuning with DPO (task preference): how far the tuned model may move from the reference."""

    beta: float = Field(0.1, gt=0.0, le=10.0, description="DPO's beta: a reply's reward is beta * (log pi - log ref)")


class MlflowConfig(_Section):
    """An MLflow run per training run (a parent run per compare / tune, its rows nested under it)."""

    tracking_uri: str = Field("file:./mlruns", description="Any MLflow tracking URI: a local file store "
                              "(file:./mlruns, relative to the current folder), sqlite:///mlflow.db, http://host:5000.")
    experiment: str = Field("tunelab", min_length=1, description="Experiment name; created when it does not exist.")
    run_name: Optional[str] = Field(None, description="Name of the MLflow run; default: the run directory's name.")


class TrackingConfig(_Section):
    """Experiment trackers fed from the trainer's callbacks (optional extras: pip install 'tunelab[tracking]').
    Only rank 0 writes."""

    tensorboard: bool = Field(False, description="Write TensorBoard event files to <run dir>/tensorboard/.")
    mlflow: Optional[MlflowConfig] = Field(None, description="Log params, metrics and artifacts to MLflow; "
                                                             "`true` takes the defaults.")

    @field_validator("mlflow", mode="before")
    @classmethod
    def _mlflow_shorthand(cls, value: object) -> object:
        if value is True:
            return {}
        return None if value is False else value

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.mlflow is not None


class ForgettingConfig(_Section):
    """The forgetting meter: what a fine-tune cost the pre-trained model, measured after every run (weight drift
    and representation drift per LayerStack block, and a retention measure that fits the backbone), written to
    test_metrics.json under `forgetting`."""

    measure: bool = Field(True, description="false: skip the meter (it costs a forward pass of the base and the "
                                            "tuned model over the reference examples).")
    reference: Optional[str] = Field(None, description="A file of reference inputs (read like data.train, labels "
                                                       "not needed); default: a seeded sample of the test inputs.")
    max_examples: int = Field(256, ge=8, le=4096, description="At most this many reference examples.")


class ThresholdConfig(_Section):
    """Decision thresholds of binary classification and multilabel (evaluation/thresholds.py)."""

    tune: bool = Field(False, description="After training, choose on the validation split the threshold that "
                                          "maximises F1 of the rarer class (binary) or of every class (multilabel); "
                                          "saved as thresholds.json and used for the test scores, predict and serve.")


class TaskEntry(_Section):
    """One task of a multi-task run (`tasks:`): the name of its head, its task and data, and optionally its own
    head and loss (default: the run's top-level `head:` / `loss:`)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                      description="The head's name (letters, digits, _ and -): metric prefixes, predict --head.")
    task: str = Field("classification", description="classification, multilabel or regression.")
    data: DataConfig
    head: Optional[HeadConfig] = None
    loss: Optional[LossConfig] = None


class MixingConfig(_Section):
    """Which task each training batch of a multi-task run comes from (data/mixing.py)."""

    name: Literal["proportional", "temperature"] = Field("proportional", description="proportional: each task's "
                                                         "examples once an epoch; temperature: shares ~ n^(1/T).")
    temperature: float = Field(2.0, ge=1.0, le=100.0, description="T: 1 about proportional, larger nearer equal.")


_PER_TASK = ("task", "data", "head", "loss", "generation", "thresholds")  # per task (tasks[i]) in a multi-task run


class RunConfig(_Section):
    """A whole run. `tunelab validate` checks one of these; the resolved form is saved in every run."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    task: str = Field("classification", description="A registered task (tasks/registry.py): classification, "
                      "multilabel, regression, token_classification, ...")
    data: Optional[DataConfig] = Field(None, description="Required, unless `tasks:` gives several tasks with their data.")
    tasks: Optional[list[TaskEntry]] = Field(None, min_length=1, description="A multi-task run: one backbone, a head "
                                             "per task, instead of task + data.")
    mixing: Optional[MixingConfig] = Field(None, description="tasks: how batches are drawn from the tasks.")
    head: HeadConfig = Field(default_factory=HeadConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    forgetting: ForgettingConfig = Field(default_factory=ForgettingConfig)
    thresholds: ThresholdConfig = Field(default_factory=ThresholdConfig)
    output: str = "runs/latest"
    report: bool = Field(True, description="false: skip report.html (~1 s of plots); `tunelab report RUN` draws it")

    @property
    def split_seed(self) -> int:
        """The seed the data is drawn and split with (data.split_seed, default train.seed)."""
        return self.train.seed if self.data.split_seed is None else self.data.split_seed

    @field_validator("model", mode="before")
    @classmethod
    def _model_shorthand(cls, value: object) -> object:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_task_or_tasks(self) -> "RunConfig":
        if self.tasks is None:
            if self.data is None:
                raise ValueError("data: required key is missing; add it (or `tasks:`, a list of tasks with their "
                                 "data each, for a multi-task run)")
            if self.mixing is not None:
                raise ValueError("mixing: applies to a multi-task run (tasks:); remove it")
            return self
        given = [key for key in ("task", "data") if key in self.model_fields_set]
        if given:
            raise ValueError(f"{' and '.join(given)}: a multi-task config gives each task its own under tasks[i]; "
                             "remove the top-level " + " and ".join(given))
        names = [entry.name for entry in self.tasks]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"tasks: each task needs its own name; {', '.join(map(repr, twice))} is given twice")
        return self

    def task_config(self, name: str) -> "RunConfig":
        """The single-task config of the task `name` of a multi-task run: its task, data, head and loss with the
        run's other sections; what its data is prepared with and its head is loaded with."""
        entry = next(e for e in self.tasks or [] if e.name == name)
        return self.model_copy(update={"task": entry.task, "data": entry.data, "head": entry.head or self.head,
                                       "loss": entry.loss or self.loss, "tasks": None, "mixing": None})

    @model_serializer(mode="wrap")
    def _saved_form(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A single-task config's saved form is as it always was (no `tasks`, `mixing`); a multi-task config's
        leaves out the per-task sections it does not use."""
        dumped = handler(self)
        drop = ("tasks", "mixing") if self.tasks is None else _PER_TASK
        return {k: v for k, v in dumped.items() if k not in drop}
