"""Config sections of the parameter-efficient methods (`strategy.lora`, `strategy.adapter`, ...).

They live with the rest of the config types so that validating a config never imports torch; the
methods themselves (`tunelab.strategies.peft.*`) name the section they read through `section`.
Each `lr` is the learning rate of the method's parameters and of the head (times
`strategy.head_lr_multiplier`); `null` means the method's own default, because PEFT parameters want a
learning rate about ten times that of full fine-tuning and `optim.lr` is tuned for the latter.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["LoraSection", "AdapterSection", "PromptSection", "PrefixSection", "IA3Section", "BitFitSection"]

ModuleType = Literal["Linear", "Conv1d", "Conv2d", "Embedding", "Conv1D"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    lr: Optional[float] = Field(None, gt=0.0, lt=1.0, description="LR of the method's parameters and the head; null: method default.")


class LoraSection(_Section):
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

    @model_validator(mode="after")
    def _targets(self) -> "LoraSection":
        if not self.target_modules and not self.target_types:
            raise ValueError("give lora.target_modules (names such as [query, value]) or lora.target_types (such as [Linear])")
        return self


class AdapterSection(_Section):
    """Bottleneck adapters: h + up(act(down(h))), `up` zero-initialised so the model starts equal to the base.

    Targets are block-relative module names (inside each block of the LayerStack): the output projection of
    attention and of the feed-forward block, before their residual connection and LayerNorm.
    """

    bottleneck: Optional[int] = Field(None, ge=1, description="Bottleneck width; default hidden / reduction_factor.")
    reduction_factor: int = Field(16, ge=1, description="Bottleneck = hidden size / this, when bottleneck is not given.")
    activation: Literal["relu", "gelu", "tanh"] = "relu"
    residual: bool = Field(True, description="Add the adapter's input back (the identity path that makes zero-init exact).")
    attention_module: str = Field("attention.output.dense", description="houlsby: block-relative name of the attention output projection.")
    ffn_module: str = Field("output.dense", description="Block-relative name of the feed-forward output projection.")


class PromptSection(_Section):
    """Prompt tuning: k trainable soft tokens prepended to the input embeddings (Lester et al. 2021)."""

    num_tokens: int = Field(20, ge=1, le=512, description="k, the number of soft tokens.")
    init: Literal["random", "words"] = Field("random", description="random, or the embeddings of init_words (repeated to k).")
    init_words: Optional[str] = Field(None, description="init: words: text whose token embeddings start the prompt.")

    @model_validator(mode="after")
    def _words(self) -> "PromptSection":
        if self.init == "words" and not (self.init_words or "").strip():
            raise ValueError("prompt.init is words but prompt.init_words is empty; give some words (e.g. the class names)")
        if self.init == "random" and self.init_words:
            raise ValueError("prompt.init_words is set but prompt.init is random; set prompt.init: words or drop init_words")
        return self


class PrefixSection(_Section):
    """Prefix tuning: k trainable key/value vectors prepended at every attention layer (Li & Liang 2021)."""

    num_tokens: int = Field(20, ge=1, le=512, description="k, prefix length per layer.")
    reparameterize: bool = Field(True, description="Produce the prefixes with an MLP over k embeddings (stabler training).")
    hidden_size: int = Field(128, ge=1, description="reparameterize: hidden width of the MLP.")


class IA3Section(_Section):
    """IA3: learned per-channel scaling of keys, values and feed-forward activations (Liu et al. 2022), ones-init."""

    target_modules: list[str] = Field(default_factory=lambda: ["key", "value", "output.dense"],
                                      description="Modules whose output (or input, for feedforward_modules) is scaled.")
    feedforward_modules: list[str] = Field(default_factory=lambda: ["output.dense"],
                                           description="Subset of the targets whose input is scaled (feed-forward activations).")


class BitFitSection(_Section):
    """BitFit: only the bias terms train (Ben Zaken et al. 2022), plus the head."""
