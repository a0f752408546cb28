"""What every parameter-efficient method shares: inserted layers that declare their own parameters, the
record of what a method did to a model, and the compile step that turns it into a Plan.

A method never edits model code: it wraps modules from outside (`replace_module`) or adds hooks, and
every module it adds is a :class:`~tunelab.strategies.peft.layer.PeftLayer` that names its parameters.
Trainability, saving, merging and counting read those declarations (`Adaptation.params`); nothing guesses
from substrings.

Importing this module (and a method's file) imports no torch: validating a config reads every method's
section and rules, and that must not cost a PyTorch import. A method's layers live in `<method>_layers.py`
(torch), which its `_apply` imports when a model is adapted.
"""

from __future__ import annotations

import contextlib
import fnmatch
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Optional

from pydantic import BaseModel, ConfigDict, Field

from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.errors import ConfigError, ModelError
from tunelab.strategies.depth import depth_lr_multipliers
from tunelab.strategies.plan import Plan, build_param_groups

if TYPE_CHECKING:
    from torch import nn

    from tunelab.models.task_model import TaskModel
    from tunelab.strategies.peft.layer import PeftLayer

__all__ = ["PeftSection", "Adaptation", "PeftMethod", "adaptation_of", "replace_module", "unwrap_merged", "merge_adapter",
           "adapter_off", "match_name", "head_names", "blocks_allowed"]


class PeftSection(BaseModel):
    """A method's config section (`strategy.<section>`), declared in the method's own file.

    Each `lr` is the learning rate of the method's parameters and of the head (times
    `strategy.head_lr_multiplier`); `null` means the method's own default, because PEFT parameters want a
    learning rate about ten times that of full fine-tuning and `optim.lr` is tuned for the latter.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # The names peft, Axolotl or AdapterHub give this section's keys (`r` -> `rank`): a user copying a config
    # from there is told tunelab's name, under `strategy.<section>` and as a flat key under `strategy:`.
    foreign_names: ClassVar[dict[str, str]] = {}

    lr: Optional[float] = Field(None, gt=0.0, lt=1.0, description="LR of the method's parameters and the head; null: method default.")


@dataclass
class Adaptation:
    """What a method did to one TaskModel: inserted layers by path, every declared parameter name (full
    names in the TaskModel, including existing ones a method trains such as BitFit's biases), and hooks."""

    method: str
    layers: dict[str, PeftLayer]
    params: frozenset[str]
    hooks: list[Any] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)   # method facts the saver needs (targets, k, ...)


_ADAPTATIONS: "weakref.WeakKeyDictionary[TaskModel, Adaptation]" = weakref.WeakKeyDictionary()


def adaptation_of(model: TaskModel) -> Optional[Adaptation]:
    """The adaptation applied to `model`, if any (models do not know about PEFT; this table does)."""
    return _ADAPTATIONS.get(model)


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, leaf, new)


def unwrap_merged(model: TaskModel) -> None:
    """Replace every merged wrapper by its (now merged) base layer: the model becomes a plain model again,
    with the base architecture's parameter names, ready for `save_pretrained`."""
    adaptation = adaptation_of(model)
    if adaptation is None:
        return
    for path, layer in adaptation.layers.items():
        if not layer.merged:
            raise ModelError(f"{path}: merge the layer before unwrapping it")
        replace_module(model, path, layer.base_layer)
    _ADAPTATIONS.pop(model, None)


def merge_adapter(model: TaskModel) -> None:
    """Fold every layer of the model's (mergeable) adapter into its base weights and unwrap them, in place: the
    model is a plain model of the base architecture afterwards (export --merge; a continued pre-training run's
    saved backbone)."""
    import torch

    adaptation = adaptation_of(model)
    if adaptation is None:
        return
    with torch.no_grad():
        for layer in adaptation.layers.values():
            layer.merge()
    unwrap_merged(model)


@contextlib.contextmanager
def adapter_off(model: TaskModel) -> Iterator[TaskModel]:
    """`model` as its base for the duration: every inserted layer swapped for the base layer it wraps, then put
    back (a model without an adapter is unchanged). A preference run's reference is the base this way. Refused for
    methods whose modules wrap no base layer (prompt and prefix tuning); BitFit trains the base's own biases, so its
    "off" is the model before training."""
    adaptation = adaptation_of(model)
    layers = dict(adaptation.layers) if adaptation is not None else {}
    if adaptation is not None and (adaptation.hooks or any(not hasattr(l, "base_layer") for l in layers.values())):
        raise ModelError(f"{adaptation.method} adds modules or hooks that wrap no base layer, so it cannot be switched "
                         "off for a pass; use lora, ia3 or another method that wraps layers")
    for path, layer in layers.items():
        replace_module(model, path, layer.base_layer)
    try:
        yield model
    finally:
        for path, layer in layers.items():
            replace_module(model, path, layer)


def match_name(name: str, patterns: list[str]) -> bool:
    """peft's rule (the full name equals the pattern or ends with `.pattern`), plus globs on the full name."""
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            if fnmatch.fnmatchcase(name, pattern):
                return True
        elif name == pattern or name.endswith("." + pattern):
            return True
    return False


def head_names(model: TaskModel) -> list[str]:
    """Parameters of the head (everything above the block stack, minus what a PEFT method added): they
    always train."""
    stack = model.layer_stack
    adaptation = adaptation_of(model)
    own = adaptation.params if adaptation is not None else frozenset()
    return [n for n, _ in model.named_parameters() if stack.group_of(n) == stack.head_group and n not in own]


def blocks_allowed(model: TaskModel, config: StrategyConfig) -> Callable[[str], bool]:
    """With `strategy.freeze_blocks: k`, a method adapts only modules in blocks >= k (none in the embeddings)."""
    from tunelab.models.layerstack import EMBEDDING_GROUP

    k = config.freeze_blocks
    stack = model.layer_stack
    if k is not None and k > stack.num_blocks:
        raise ConfigError(f"strategy.freeze_blocks: the model has {stack.num_blocks} blocks, got {k}; use 0..{stack.num_blocks}")

    def allowed(full_name: str) -> bool:
        if k is None:
            return True
        group = stack.group_of(full_name + ".")
        return group != EMBEDDING_GROUP and (group >= k)
    return allowed


class PeftMethod:
    """A parameter-efficient method. Subclasses set the class facts and implement `_apply`."""

    name: ClassVar[str]
    title: ClassVar[str] = ""                   # its name in messages ("LoRA options live ..."); "": `name`
    section: ClassVar[str]                      # the key of its section under `strategy:`
    Section: ClassVar[type[PeftSection]]        # that section's schema, declared with the method
    default_lr: ClassVar[float]
    peft_type: ClassVar[Optional[str]] = None   # peft's PeftType when saved in peft's format
    mergeable: ClassVar[bool] = False
    starts_equal: ClassVar[bool] = True         # the adapted model equals the base before training
    supports_freeze_blocks: ClassVar[bool] = True
    peft_prefix: ClassVar[str] = "base_model.model."   # peft's key prefix for modules of the HF model

    def peft_key(self, path: str, suffix: str) -> str:
        """peft's saved key of a parameter of the inserted layer at `path` (`network.` + HF module path)."""
        return f"{self.peft_prefix}{path[len('network.'):]}.{suffix}"

    def settings(self, config: StrategyConfig) -> Any:
        """The method's section: as the catalog resolved it, or validated here from the raw mapping (a
        StrategyConfig built in code may carry a dict or nothing)."""
        value = (config.model_extra or {}).get(self.section)
        return value if isinstance(value, self.Section) else self.Section.model_validate(value or {})

    def check_config(self, config: StrategyConfig) -> list[str]:
        """Config-time rules, one line each with the key path and the fix."""
        errors = []
        if config.freeze_patterns:
            errors.append(f"strategy.freeze_patterns applies to strategy partial; with {self.name} "
                          "the base is frozen already (use freeze_blocks to adapt only the upper blocks)")
        if config.freeze_blocks is not None and not self.supports_freeze_blocks:
            errors.append(f"strategy.freeze_blocks has no meaning for {self.name}, which acts on the input "
                          "sequence rather than on blocks; remove it")
        return errors

    def apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        """Insert the method into `model` (in place) and record what was done."""
        if adaptation_of(model) is not None:
            raise ModelError(f"this model already carries {adaptation_of(model).method}; build a fresh model for {self.name}")
        adaptation = self._apply(model, config)
        if not adaptation.params:
            raise ConfigError(f"strategy.{self.section}: {self.name} found nothing to adapt in this model; "
                              "check the target module names (see `named_modules()` of the base)")
        _ADAPTATIONS[model] = adaptation
        return adaptation

    def _apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        raise NotImplementedError

    def for_loading(self, model: TaskModel, config: StrategyConfig) -> StrategyConfig:
        """Ready the fresh base `model` for a saved adapter and say what to apply to it: most methods, as trained
        (LoRA rounds a 4-bit run's base here)."""
        return config

    def peft_config(self, model: TaskModel, config: StrategyConfig, adaptation: Adaptation) -> dict[str, Any]:
        """Fields of peft's adapter_config.json specific to this method (peft-format methods only)."""
        raise NotImplementedError

    def compile(self, config: StrategyConfig, model: TaskModel, optim: OptimConfig, epochs: int) -> Plan:
        """Apply the method, then train its declared parameters and the head, at the method's LR with
        layer-wise decay and the head multiplier applied as for every other strategy."""
        head = head_names(model)
        adaptation = self.apply(model, config)
        trainable = frozenset(adaptation.params) | frozenset(head)
        lr = self.settings(config).lr or self.default_lr
        multipliers = depth_lr_multipliers(model, config)
        head_set = set(head)
        lr_of = {n: lr * (config.head_lr_multiplier if n in head_set else multipliers[n]) for n in trainable}
        groups = build_param_groups(model, trainable, lr_of, optim.weight_decay)
        return Plan(strategy=self.name, trainable=trainable, groups=groups, inserted=dict(adaptation.layers),
                    keep_norm_statistics=True)
