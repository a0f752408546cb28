"""Prefix tuning (Li & Liang 2021): k trainable key/value vectors prepended at every attention layer.

Each block's self-attention (found as the module with `query`, `key`, `value` Linear layers, as in BERT,
RoBERTa and MiniLM) is wrapped: queries attend over [prefix keys; keys] with the mask extended by k
always-visible positions. With `reparameterize`, the prefixes come from an MLP over k embeddings, shared
by all layers (the original paper's stabiliser). Saved in tunelab's format. The layers are in
`prefix_layers.py` (torch), imported when a model is adapted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from tunelab.config.schema import StrategyConfig
from tunelab.strategies.peft.base import PeftSection, Adaptation, PeftMethod, replace_module

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel
    from tunelab.strategies.peft.layer import PeftLayer

__all__ = ["PrefixSection", "PrefixTuningMethod"]


class PrefixSection(PeftSection):
    """Prefix tuning: k trainable key/value vectors prepended at every attention layer (Li & Liang 2021)."""

    num_tokens: int = Field(20, ge=1, le=512, description="k, prefix length per layer.")
    reparameterize: bool = Field(True, description="Produce the prefixes with an MLP over k embeddings (stabler training).")
    hidden_size: int = Field(128, ge=1, description="reparameterize: hidden width of the MLP.")
    foreign_names: ClassVar[dict[str, str]] = {  # peft's PrefixTuningConfig
        "num_virtual_tokens": "num_tokens", "prefix_projection": "reparameterize", "encoder_hidden_size": "hidden_size"}


class PrefixTuningMethod(PeftMethod):
    name = "prefix_tuning"
    title = "prefix tuning"
    section = "prefix"
    Section = PrefixSection
    default_lr = 5e-3
    starts_equal = False
    supports_freeze_blocks = False

    def _apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        from tunelab.strategies.peft.prefix_layers import PrefixAttention, PrefixEncoder, self_attention_path

        s = self.settings(config)
        stack = model.layer_stack
        first_block = model.get_submodule(stack.block_prefix(0)[:-1])
        inner = self_attention_path(first_block)
        attn = first_block.get_submodule(inner)
        hidden = attn.num_attention_heads * attn.attention_head_size
        encoder = PrefixEncoder(s.num_tokens, stack.num_blocks, hidden, s.reparameterize, s.hidden_size)
        encoder.to(attn.query.weight.device)
        model.add_module("peft_prefix", encoder)
        layers: dict[str, PeftLayer] = {"peft_prefix": encoder}
        for index in range(stack.num_blocks):
            path = f"{stack.block_prefix(index)}{inner}"
            layers[path] = PrefixAttention(model.get_submodule(path), encoder, index)
            replace_module(model, path, layers[path])
        params = frozenset(f"peft_prefix.{n}" for n in encoder.declared_names())
        return Adaptation(method=self.name, layers=layers, params=params)
