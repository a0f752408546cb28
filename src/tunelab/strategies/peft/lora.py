"""LoRA (Hu et al. 2021) with rsLoRA scaling and DoRA, on Linear, Conv1d/2d, Embedding and HF Conv1D.

y = W x + s * B A dropout(x), s = alpha / r (alpha / sqrt(r) with rsLoRA); B starts at zero so the adapted
model equals the base. Parameter names follow peft (`<module>.lora_A.weight`, `.lora_B.weight`,
`.lora_magnitude_vector`, `.lora_embedding_A/B`) so the saved file is peft's format without renaming.

This file is the method (its section, its rules, how it adapts a model) and imports no torch; the layer it
inserts is in `lora_layers.py`, imported when a model is adapted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from tunelab.config.schema import StrategyConfig
from tunelab.errors import ConfigError
from tunelab.optional import require
from tunelab.strategies.peft.base import (PeftSection, Adaptation, PeftMethod, blocks_allowed, head_names, match_name,
                                          replace_module)

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel
    from tunelab.strategies.peft.layer import PeftLayer

__all__ = ["LoraSection", "LoraMethod", "check_quantize_device", "quantized_base"]

# the module types LoraLayer adapts (lora_layers.LORA_TYPES, which names them in its refusal)
ModuleType = Literal["Linear", "Conv1d", "Conv2d", "Embedding", "Conv1D"]


class LoraSection(PeftSection):
    """LoRA: W x + (alpha / r) * B A dropout(x), B zero-initialised so training starts from the base model."""

    rank: int = Field(8, ge=1, le=4096, description="r, the rank of the update B A.")
    alpha: float = Field(16.0, gt=0.0, description="Scaling numerator: scale = alpha / r (alpha / sqrt(r) with rslora).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the input of A.")
    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"],
                                      description="Module names as peft matches them (full name or its dotted suffix); "
                                                  "glob patterns (*, ?) match the full name.")
    target_types: list[ModuleType] = Field(default_factory=list, description="Also adapt every module of these types.")
    rslora: bool = Field(False, description="rank-stabilised scaling alpha / sqrt(r) (Kalajdzievski 2023).")
    dora: bool = Field(False, description="DoRA: learn a magnitude per output row (Liu et al. 2024); Linear layers only.")
    quantize: Optional[Literal["nf4", "fp4"]] = Field(
        None, description="QLoRA: store the base model's Linear layers in 4 bits (bitsandbytes, CUDA only); null: as loaded.")
    double_quant: bool = Field(True, description="QLoRA: quantize the 4-bit blocks' scales too (about 0.4 bits a weight less).")
    compute_dtype: Literal["bf16", "fp16", "fp32"] = Field("bf16", description="QLoRA: the dtype 4-bit weights compute in.")
    foreign_names: ClassVar[dict[str, str]] = {  # peft's LoraConfig and Axolotl's flat lora_* keys
        "r": "rank", "lora_r": "rank", "lora_alpha": "alpha", "lora_dropout": "dropout", "use_rslora": "rslora",
        "use_dora": "dora", "lora_target_modules": "target_modules", "lora_target_linear": "target_types"}

    @model_validator(mode="after")
    def _targets(self) -> "LoraSection":
        if not self.target_modules and not self.target_types:
            raise ValueError("give lora.target_modules (names such as [query, value]) or lora.target_types (such as [Linear])")
        if self.quantize and self.dora:
            raise ValueError("dora: not with quantize (DoRA's magnitude needs the full-precision weight at every step); "
                             "set dora: false or quantize: null")
        return self


_QUANTIZE_ON_CPU = ("4-bit base weights are for CUDA GPUs, where they let a model too large for the GPU's memory "
                    "train; bitsandbytes' CPU path dequantizes every weight at every call (benchmarks/"
                    "qlora_cpu_cost.py: a MiniLM LoRA step 1.07-1.6x slower than on the bf16 base), for weights a "
                    "CPU's memory holds anyway, so tunelab refuses it rather than run it slowly. On a CPU: LoRA on the "
                    "full-precision base (remove strategy.lora.quantize), in bf16 with train.precision: bf16 where "
                    "the CPU has bf16 units. A run trained with quantize on a GPU loads on a CPU (predict, serve, "
                    "export) with its base's weights rounded as in training, as plain weights.")


def quantized_base(config: StrategyConfig) -> Optional[str]:
    """The 4-bit format of a QLoRA run's base (`strategy.lora.quantize`), or None for every other run. Read, not
    validated: the catalog asks while a section that broke its own rules is still a raw mapping."""
    if config.name != LoraMethod.name:
        return None
    section = (config.model_extra or {}).get(LoraMethod.section)
    return section.get("quantize") if isinstance(section, dict) else getattr(section, "quantize", None)


def _head_modules(model: TaskModel) -> set[str]:
    """Paths of the modules holding the head's parameters: never adapted, never quantized."""
    return {n.rsplit(".", 1)[0] for n in head_names(model)}


def check_quantize_device(config: StrategyConfig, device_type: str) -> None:
    """Refuse a 4-bit base on anything but CUDA, before the model is built: the run's device is known only once
    `train.device: auto` is resolved."""
    quantize = quantized_base(config)
    if not quantize:
        return
    if device_type != "cuda":
        raise ConfigError(f"strategy.lora.quantize: {quantize} (QLoRA), and this run's device is {device_type}. "
                          f"{_QUANTIZE_ON_CPU}")
    require("strategy.lora.quantize (4-bit base weights, QLoRA)", "bitsandbytes", error=ConfigError)


class LoraMethod(PeftMethod):
    name = "lora"
    title = "LoRA"
    section = "lora"
    Section = LoraSection
    default_lr = 1e-3  # measured: BBC/MiniLM r=8 q+v, 3 epochs: 0.9596 test acc at 5e-4, 0.9685 at 1e-3
    peft_type = "LORA"
    mergeable = True

    def targets(self, model: TaskModel, config: StrategyConfig) -> list[str]:
        """Full module paths to adapt: inside the network, outside the head, within the allowed blocks."""
        from tunelab.strategies.peft.lora_layers import layer_kind

        settings = self.settings(config)
        heads = _head_modules(model)
        allowed = blocks_allowed(model, config)
        found = []
        for path, module in model.network.named_modules(prefix="network"):
            kind = layer_kind(module)
            if kind is None or any(h == path or h.startswith(path + ".") for h in heads):
                continue
            relative = path[len("network."):]
            if (match_name(relative, settings.target_modules) or kind in settings.target_types) and allowed(path):
                found.append(path)
        return found

    def for_loading(self, model: TaskModel, config: StrategyConfig) -> StrategyConfig:
        """A QLoRA run's adapter goes onto the base its training saw, as plain weights: each Linear of the base is
        rounded through the same 4-bit format once (bitsandbytes' quantize and dequantize, on any device) and stays
        an ordinary Linear, so predict, serve, export and merge run at full-precision speed on a CPU and compute the
        function that was trained and scored."""
        settings = self.settings(config)
        if not settings.quantize:
            return config
        from tunelab.strategies.peft.quantize_layers import round_linears

        round_linears(model, _head_modules(model), quant_type=settings.quantize, double_quant=settings.double_quant)
        return config.model_copy(update={self.section: settings.model_copy(update={"quantize": None})})

    def _quantize_base(self, model: TaskModel, config: StrategyConfig) -> list[str]:
        """QLoRA: every Linear of the base outside the head in 4 bits, before LoRA wraps the targets."""
        from tunelab.strategies.peft.quantize_layers import quantize_linears

        s = self.settings(config)
        return quantize_linears(model, _head_modules(model), quant_type=s.quantize, double_quant=s.double_quant,
                                compute_dtype=s.compute_dtype)

    def _apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        from tunelab.strategies.peft.lora_layers import LoraLayer, layer_kind

        s = self.settings(config)
        quantized = self._quantize_base(model, config) if s.quantize else []
        paths = self.targets(model, config)
        if not paths:
            kinds = sorted({k for _, m in model.network.named_modules() if (k := layer_kind(m))})
            example = next((n for n, m in model.network.named_modules() if layer_kind(m)), "?")
            raise ConfigError(f"strategy.lora.target_modules: {s.target_modules} (types {s.target_types}) match no "
                              f"module of the base model; its adaptable modules are of types {kinds} with names like "
                              f"{example}: name some in target_modules or their type in target_types")
        layers: dict[str, PeftLayer] = {}
        for path in paths:
            layer = LoraLayer(model.get_submodule(path), rank=s.rank, alpha=s.alpha, dropout=s.dropout,
                              rslora=s.rslora, dora=s.dora)
            layer.to(model.get_submodule(path).weight.device)
            replace_module(model, path, layer)
            layers[path] = layer
        params = frozenset(f"{p}.{n}" for p, layer in layers.items() for n in layer.declared_names())
        return Adaptation(method=self.name, layers=layers, params=params,
                          info={"targets": paths, "quantized": quantized})

    def peft_config(self, model: TaskModel, config: StrategyConfig, adaptation: Adaptation) -> dict[str, Any]:
        s = self.settings(config)
        kinds = {layer.kind for layer in adaptation.layers.values()}
        return {
            "r": s.rank, "lora_alpha": s.alpha, "lora_dropout": s.dropout, "use_rslora": s.rslora, "use_dora": s.dora,
            # the exact module names adapted: peft matches a list entry against the full name first
            "target_modules": [p[len("network."):] for p in adaptation.info["targets"]],
            "fan_in_fan_out": kinds == {"Conv1D"}, "bias": "none", "init_lora_weights": True,
        }
